"""avlm.Processor: chat-template prompts with placeholders, media from paths / clips / tensors, collated batches."""

from __future__ import annotations

import json

import media
import pytest
import torch

from avlm.modeling.configuration import AVLMConfig
from avlm.processing.media import MediaConfig, load_audio_features
from avlm.processing.processor import Processor
from avlm.processing.tokenizer import placeholder_token_ids, train_tiny_tokenizer
from vision.preprocess import ImageProcessorConfig

CONFIG = MediaConfig(num_frames=4, image_frames=2, image_processor=ImageProcessorConfig(size=16),
                     max_audio_seconds=10.0)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tiny_tokenizer()


@pytest.fixture()
def processor(tokenizer) -> Processor:
    return Processor(tokenizer, CONFIG, placeholder_token_ids(tokenizer))


def test_prompt_puts_the_placeholders_at_the_start_of_the_user_turn(processor) -> None:
    expected = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<video><audio>\n"
                "Who plays louder?<|im_end|>\n<|im_start|>assistant\n")
    assert processor.prompt("Who plays louder?", ["audio", "video"]) == expected
    ids = processor.encode_prompt("Who plays louder?", ["video", "audio"])
    assert ids.tolist() == processor.tokenizer(expected, add_special_tokens=False)["input_ids"]
    processor.av_fusion = "concat_at_video"  # official layout: one <video> placeholder for audio-visual input
    assert "user\n<video>\nWho" in processor.prompt("Who plays louder?", ["video", "audio"])


def test_negative_placeholder_ids_join_separately_tokenized_pieces(tokenizer) -> None:
    official = Processor(tokenizer, CONFIG, {"video": -201, "audio": -202, "image": -200}, "concat_at_video")
    ids = official.encode_prompt("What is playing?", ["video", "audio"]).tolist()
    before, after = official.prompt("What is playing?", ["video"]).split("<video>")
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert ids == encode(before) + [-201] + encode(after)


def test_mixed_batch_from_paths_clips_and_tensors(processor, tmp_path) -> None:
    clip_path = media.write_video(tmp_path / "av.mp4", seconds=2.0, fps=10, audio_rate=16000)
    frames = torch.from_numpy(media.moving_square_frames(6, 40, 30))
    waveform = torch.from_numpy(media.tone(0.5, 16000)[0])
    batch = processor(["Who plays?", "What moves?", "What is that sound?", "Hello"],
                      videos=[clip_path, frames, None, None], audios=[clip_path, None, waveform, None])
    assert batch["video_pixels"].shape == (2, 6, 3, 16, 16)  # padded to the longest video
    assert batch["video_frame_counts"].tolist() == [4, 6]  # raw frames are kept as given
    assert batch["video_sample_index"].tolist() == [0, 1] and batch["audio_sample_index"].tolist() == [0, 2]
    assert batch["audio_features"].shape[0] == 2 and batch["audio_features"].shape[2] == 128
    assert batch["audio_lengths"][1] == 1 + (8000 - 400) // 160  # the 0.5 s waveform
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert (mask[:, -1] == 1).all() and (ids[mask == 0] == processor.tokenizer.pad_token_id).all()  # left padded
    for row, modalities in enumerate([("video", "audio"), ("video",), ("audio",), ()]):
        expected = processor.encode_prompt(["Who plays?", "What moves?", "What is that sound?", "Hello"][row],
                                           modalities)
        assert ids[row][mask[row] == 1].tolist() == expected.tolist()


def test_audio_of_a_video_file_covers_the_span_of_its_frames(processor, tmp_path) -> None:
    clip_path = media.write_video(tmp_path / "av.mp4", seconds=3.0, fps=10, audio_rate=16000)
    sample = processor.sample("q", video=clip_path, audio=clip_path)
    separate = load_audio_features(clip_path, CONFIG)  # the whole file
    assert sample["video"].shape == (4, 3, 16, 16)
    assert 0 < len(separate) - len(sample["audio"]) <= 12  # same file, a span ending at the last frame's end


def test_images_become_still_videos_and_frames_stay_uint8_checked(processor, tmp_path) -> None:
    from PIL import Image

    path = tmp_path / "still.png"
    Image.fromarray(media.moving_square_frames(1, 30, 20)[0]).save(path)
    pixels = processor.sample("q", video=path)["video"]
    assert pixels.shape == (2, 3, 16, 16) and torch.equal(pixels[0], pixels[1])
    with pytest.raises(TypeError, match="uint8 frames"):
        processor.sample("q", video=torch.rand(2, 16, 16, 3))


def test_whisper_features_are_log_mel_frames_first() -> None:
    config = MediaConfig(audio_features="whisper_log_mel", n_mels=80, max_audio_seconds=1.0)
    features = load_audio_features(torch.from_numpy(media.tone(0.7, 16000)[0]), config)
    assert features.shape == (70, 80)
    long = load_audio_features(torch.from_numpy(media.tone(1.6, 16000)[0]), config)
    assert long.shape == (100, 80)  # cut to the 1 s window


def test_save_and_load_with_the_model_folder(processor, tmp_path) -> None:
    AVLMConfig(placeholder_token_ids=processor.placeholder_token_ids).save_pretrained(tmp_path)
    processor.system_prompt = "Answer briefly."
    processor.save_pretrained(tmp_path)
    loaded = Processor.from_pretrained(tmp_path)
    assert json.loads((tmp_path / "processor_config.json").read_text())["media"]["num_frames"] == 4
    assert loaded.config == processor.config and loaded.placeholder_token_ids == processor.placeholder_token_ids
    assert loaded.encode_prompt("Hi", ["video"]).tolist() == processor.encode_prompt("Hi", ["video"]).tolist()


def test_load_media_for_training_records(processor, tmp_path) -> None:
    from avlm.data.annotations import Record

    clip_path = media.write_video(tmp_path / "av.mp4", seconds=2.0, fps=10, audio_rate=16000)
    turns = ({"from": "human", "value": "<video>\nq"}, {"from": "gpt", "value": "a"})
    record = Record(id="1", conversations=turns, video=clip_path, audio_from_video=True)
    loaded = processor.load_media(record)
    assert set(loaded) == {"video", "audio"} and loaded["video"].shape == (4, 3, 16, 16)
    assert loaded["audio"].shape[1] == 128


@pytest.mark.parametrize("preprocessing", ["avlm", "videollama2"])
def test_video_backend_setting_reads_the_same_pixels(bigbuckbunny, preprocessing) -> None:
    from avlm.processing.media import load_video_frames

    results = {}
    for backend in ("decord", "pyav"):
        config = MediaConfig(num_frames=4, image_processor=ImageProcessorConfig(size=16), video_backend=backend,
                             preprocessing=preprocessing)
        results[backend] = load_video_frames(bigbuckbunny, config)
    (decord_pixels, decord_span), (pyav_pixels, pyav_span) = results["decord"], results["pyav"]
    assert torch.equal(decord_pixels, pyav_pixels) and decord_span == pyav_span
    with pytest.raises(ValueError, match=r"video_backend='ffmpeg'; choose 'auto', 'decord' or 'pyav'"):
        MediaConfig(video_backend="ffmpeg")
