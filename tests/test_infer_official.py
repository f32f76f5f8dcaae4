"""The inference API on an official VideoLLaMA2-AV folder (the tiny fixture): greedy by default although the folder's
generation_config samples, the processor's reference tokens, and batched answers equal one-by-one answers."""

from __future__ import annotations

import media
import pytest
import torch
from infer_support import one_torch_thread
from test_fixtures import official_tiny_case

import avlm

CASE = official_tiny_case()
pytestmark = pytest.mark.skipif(CASE is None, reason="no videollama2_av_tiny fixture (set AVLM_FIXTURES)")


@pytest.fixture(scope="module")
def case():
    description, io, folder = CASE
    with one_torch_thread():
        yield description, io, avlm.load(folder, device="cpu")


def test_greedy_by_default_and_the_reference_prompt(case) -> None:
    description, io, model = case
    assert model.model.generation_config.do_sample is True  # the official folder samples by default
    question = description["samples"]["v"]["question"]
    answers = set()
    for seed in (0, 1):
        answers.add(model.ask(question, video=io["v.frames_uint8"], max_new_tokens=8, seed=seed))
    sample = model.processor.sample(question, video=io["v.frames_uint8"])
    assert torch.equal(sample["input_ids"], io["v.input_ids"][0])
    ids = sample["input_ids"][None]
    tokens = model.model.generate(ids, torch.ones_like(ids), video_pixels=sample["video"][None], do_sample=False,
                                  max_new_tokens=8)
    assert answers == {model.processor.tokenizer.decode(tokens[0], skip_special_tokens=True).strip()}


def test_batched_equals_one_by_one(case, tmp_path) -> None:
    description, io, model = case
    wav = media.write_wav(tmp_path / "a.wav", io["a.waveform_int16"].numpy()[None] / 32768, 16000)
    items = [{"video": io["v.frames_uint8"], "question": description["samples"]["v"]["question"]},
             {"audio": str(wav), "question": description["samples"]["a"]["question"]},
             {"video": io["av.frames_uint8"], "question": description["samples"]["av"]["question"]}]
    batched = model.ask_many(items, batch_size=3, num_workers=0, max_new_tokens=6)
    assert [r.has_audio for r in batched] == [False, True, False]
    assert [r.text for r in batched] == [model.ask(**item, max_new_tokens=6) for item in items]
