"""collate: dynamic padding, media stacks with counts and row indices, explicit modality masks on mixed batches."""

from __future__ import annotations

import pytest
import torch

from avlm.data.conversation import IGNORE_INDEX
from avlm.processing.collator import collate

PAD = 0


def sample(name: str, length: int, frames: int | None = None, audio_frames: int | None = None, **extra):
    ids = torch.arange(1, length + 1)
    labels = torch.where(ids > length // 2, ids, torch.full_like(ids, IGNORE_INDEX))
    out = {"input_ids": ids, "labels": labels, "id": name, "media_error": None, **extra}
    if frames is not None:
        out["video"] = torch.full((frames, 3, 4, 4), float(length))
    if audio_frames is not None:
        out["audio"] = torch.full((audio_frames, 5), float(length))
    return out


MIXED = [
    sample("video", 3, frames=2),
    sample("audio", 5, audio_frames=7),
    sample("av", 4, frames=3, audio_frames=4),
    sample("text", 2, media_error="x.mp4: no audio stream"),
]


def test_mixed_batch_right_padding() -> None:
    batch = collate(MIXED, PAD)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 0, 0], [1, 2, 3, 4, 5], [1, 2, 3, 4, 0], [1, 2, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5, [1, 1, 1, 1, 0], [1, 1, 0, 0, 0]]
    assert batch["labels"][0].tolist() == [IGNORE_INDEX, 2, 3, IGNORE_INDEX, IGNORE_INDEX]
    assert batch["modality_mask"]["video"].tolist() == [True, False, True, False]
    assert batch["modality_mask"]["audio"].tolist() == [False, True, True, False]
    assert batch["modality_mask"]["video"].dtype == torch.bool
    assert batch["video_pixels"].shape == (2, 3, 3, 4, 4)
    assert batch["video_frame_counts"].tolist() == [2, 3] and batch["video_sample_index"].tolist() == [0, 2]
    assert (batch["video_pixels"][0, :2] == 3).all() and (batch["video_pixels"][0, 2] == 0).all()
    assert (batch["video_pixels"][1] == 4).all()
    assert batch["audio_features"].shape == (2, 7, 5)
    assert batch["audio_lengths"].tolist() == [7, 4] and batch["audio_sample_index"].tolist() == [1, 2]
    assert (batch["audio_features"][1, 4:] == 0).all() and (batch["audio_features"][1, :4] == 4).all()
    assert batch["ids"] == ["video", "audio", "av", "text"] and batch["media_errors"] == 1


def test_left_padding_for_generation() -> None:
    batch = collate(MIXED[:2], PAD, padding_side="left")
    assert batch["input_ids"].tolist() == [[0, 0, 1, 2, 3], [1, 2, 3, 4, 5]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1, 1], [1] * 5]
    assert batch["labels"][0, :2].tolist() == [IGNORE_INDEX, IGNORE_INDEX]


def test_text_only_batch_has_masks_but_no_media_tensors() -> None:
    batch = collate([sample("a", 2), sample("b", 3)], PAD)
    assert not any(key.startswith(("video_", "audio_")) for key in batch)
    assert batch["modality_mask"]["video"].tolist() == [False, False]
    assert batch["modality_mask"]["audio"].tolist() == [False, False]


def test_errors() -> None:
    with pytest.raises(ValueError, match="empty list"):
        collate([], PAD)
    with pytest.raises(ValueError, match="padding_side must be"):
        collate(MIXED, PAD, padding_side="middle")
    odd = sample("odd", 2)
    odd["video"] = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"video of sample 'odd' has shape \(2, 3, 8, 8\)"):
        collate([MIXED[0], odd], PAD)
    with pytest.raises(ValueError, match=r"unknown keys \['pixel_values'\]"):
        collate([sample("x", 2, pixel_values=torch.zeros(1))], PAD)
