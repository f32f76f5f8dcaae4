"""An official VideoLLaMA2-AV folder gets the official preprocessing from avlm.assembly.load_processor, end to end."""

from __future__ import annotations

import media
import pytest
import torch
from test_fixtures import official_tiny_case

from avlm.assembly import load_model, load_processor
from avlm.processing.media import _videollama2_audio

CASE = official_tiny_case()
pytestmark = pytest.mark.skipif(CASE is None, reason="no videollama2_av_tiny fixture (set AVLM_FIXTURES)")


@pytest.fixture(scope="module")
def case():
    return CASE


def test_official_processor_settings(case):
    description, io, folder = case
    processor = load_processor(folder)
    assert processor.config.preprocessing == "videollama2"
    assert processor.placeholder_token_ids == {"image": -200, "video": -201, "audio": -202}
    assert processor.config.num_frames == io["av.pixel_values"].shape[0]


def test_official_preprocessing_and_generation_end_to_end(case):
    description, io, folder = case
    processor = load_processor(folder)
    question = description["samples"]["av"]["question"]
    sample = processor.sample(question, video=io["av.frames_uint8"], audio=None)
    assert torch.equal(sample["input_ids"], io["av.input_ids"][0])
    assert (sample["video"] - io["av.pixel_values"]).abs().max() <= description["tolerance"]["av.pixel_values"][
        "max_abs_diff"]
    fbank = _videollama2_audio(io["av.waveform_int16"].float() / 32768, from_video=True)
    assert (fbank - io["av.fbank"][0].float()).abs().max() <= description["tolerance"]["av.fbank"]["max_abs_diff"]
    model = load_model(folder)
    ids = sample["input_ids"][None]
    new = model.generate(ids, torch.ones_like(ids), video_pixels=sample["video"][None], audio_features=fbank[None],
                         do_sample=False, max_new_tokens=io["av.generated_ids"].shape[1])
    assert torch.equal(new, io["av.generated_ids"])


def test_official_audio_file_path(case, tmp_path):
    description, io, folder = case
    processor = load_processor(folder)
    path = media.write_wav(tmp_path / "a.wav", io["a.waveform_int16"].numpy()[None] / 32768, 16000)
    sample = processor.sample(description["samples"]["a"]["question"], audio=path)
    assert torch.equal(sample["input_ids"], io["a.input_ids"][0])
    limit = description["tolerance"]["a.fbank"]["max_abs_diff"]
    assert (sample["audio"] - io["a.fbank"][0].float()).abs().max() <= limit
