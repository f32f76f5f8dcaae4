"""`avlm.load(folder)`: caption paths, VideoClips and raw frames; ask; batched greedy results equal one-by-one ones."""

from __future__ import annotations

import pytest
import torch
from infer_support import tiny_folder, write_clips

import avlm
from audio import load_audio
from vision import MediaError, load_video

GREEDY = {"max_new_tokens": 6, "eos_token_id": None}  # full-length answers: every token is compared


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return avlm.load(tiny_folder(tmp_path_factory), device="cpu")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return write_clips(tmp_path_factory.mktemp("clips"), 3)


def test_caption_paths_clips_and_frames(model, clips, tmp_path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 300)
    clip = load_video(clips[2], num_frames=4)
    results = model.caption([clips[0], bad, clip, clip.frames, str(clips[1])], batch_size=3, **GREEDY)
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert results[1].error.startswith(str(bad)) and results[1].text is None and not results[1].ok
    assert all(r.ok and r.text for r in results[:1] + results[2:])
    assert (results[2].has_audio, results[3].has_audio, results[4].has_audio) == (True, False, False)
    assert results[2].seconds == pytest.approx(clip.end - clip.start) and results[3].seconds is None
    assert results[0].text != results[4].text
    assert model.caption(clips[0], **GREEDY) == results[0].text  # one clip -> str
    with pytest.raises(MediaError, match="bad.mp4"):
        model.caption(bad, **GREEDY)
    assert model.caption([clips[0]], audio=False, **GREEDY)[0].has_audio is False


def test_batched_greedy_equals_one_by_one(model, clips) -> None:
    """Mixed batch: audio and silent clips, 4 and 6 frames, prompts of different lengths (left padding)."""
    frames = torch.randint(0, 256, (6, 20, 30, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    items = [{"video": str(clips[0]), "question": "What is shown?"},
             {"video": clips[1], "question": "Describe the scene and the people in it, in two sentences please."},
             {"video": frames, "question": "Colours?"},
             {"video": str(clips[2]), "audio": None, "question": "Anything else happening here?"},
             {"audio": str(clips[0]), "question": "What sound is this?"}]
    batched = model.ask_many(items, batch_size=len(items), num_workers=0, **GREEDY)
    alone = [model.ask(**item, **GREEDY) for item in items]
    assert [r.text for r in batched] == alone
    assert len(set(alone)) == len(alone)  # the answers do depend on the inputs
    workers = model.ask_many(items, batch_size=2, num_workers=2, **GREEDY)
    assert [r.text for r in workers] == alone
    assert [r.has_audio for r in batched] == [True, False, False, False, True]
    assert [r.num_frames for r in batched] == [4, 4, 6, 4, 0]


def test_ask_with_separate_audio(model, clips) -> None:
    sound = load_audio(clips[0], sample_rate=16000)
    from_clip = model.ask("Who speaks?", video=clips[1], audio=sound, **GREEDY)
    from_wave = model.ask("Who speaks?", video=clips[1], audio=sound.waveform, **GREEDY)
    assert from_clip == from_wave != model.ask("Who speaks?", video=clips[1], audio=None, **GREEDY)
    with pytest.raises(ValueError, match="has no audio stream"):
        model.ask("Who speaks?", video=clips[0], audio=clips[1], **GREEDY)  # an explicit audio must exist
