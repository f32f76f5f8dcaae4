"""Batch collation: dynamic padding of the text, padded media stacks, and an explicit per-sample modality mask.

Notation: ``b`` samples in the batch, ``L`` longest text, ``b_v`` / ``b_a`` samples with video / audio, ``t`` frames,
``f`` audio feature frames, ``m`` mel bins (or any feature width), ``H, W`` frame size.

Sample (what ``ConversationDataset.__getitem__`` returns)::

    {"input_ids": LongTensor [L_i], "labels": LongTensor [L_i], "id": str, "media_error": str | None,
     "video": FloatTensor [t_i, 3, H, W] (optional), "audio": FloatTensor [f_i, m] (optional)}

Batch::

    input_ids       LongTensor [b, L]            padded with pad_token_id
    labels          LongTensor [b, L]            padded with IGNORE_INDEX (-100)
    attention_mask  LongTensor [b, L]            1 on tokens, 0 on padding
    video_pixels        FloatTensor [b_v, t_max, 3, H, W]  frames zero-padded at the end   (only if b_v > 0)
    video_frame_counts  LongTensor [b_v]                   real frames per video           (only if b_v > 0)
    video_sample_index  LongTensor [b_v]                   batch row of each video          (only if b_v > 0)
    audio_features      FloatTensor [b_a, f_max, m]        feature frames zero-padded      (only if b_a > 0)
    audio_lengths       LongTensor [b_a]                   real feature frames per clip    (only if b_a > 0)
    audio_sample_index  LongTensor [b_a]                   batch row of each clip          (only if b_a > 0)
    modality_mask   {"video": BoolTensor [b], "audio": BoolTensor [b]}  which rows have each modality (always)
    ids             list[str]
    media_errors    int                          samples whose audio failed to decode and was dropped
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

from avlm.data.conversation import IGNORE_INDEX

MEDIA_FIELDS = {"video": ("video_pixels", "video_frame_counts"), "audio": ("audio_features", "audio_lengths")}


def collate(
    samples: Sequence[Mapping[str, Any]],
    pad_token_id: int,
    padding_side: Literal["right", "left"] = "right",
) -> dict[str, Any]:
    """Pad and stack samples into one batch (layout in the module docstring).

    Args:
        samples: dataset samples.
        pad_token_id: id written into padded ``input_ids`` positions.
        padding_side: ``"right"`` for training; ``"left"`` for batched generation.

    Returns:
        The batch dict.

    Raises:
        ValueError: empty batch, a bad ``padding_side``, unknown sample keys, or media whose trailing shapes differ.
    """
    if not samples:
        raise ValueError("collate got an empty list of samples")
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    known = {"input_ids", "labels", "id", "media_error", *MEDIA_FIELDS}
    for sample in samples:
        extra = set(sample) - known
        if extra:
            raise ValueError(f"sample {sample.get('id')!r} has unknown keys {sorted(extra)}; expected {sorted(known)}")
    batch: dict[str, Any] = {
        "input_ids": _pad_text([s["input_ids"] for s in samples], pad_token_id, padding_side),
        "labels": _pad_text([s["labels"] for s in samples], IGNORE_INDEX, padding_side),
    }
    lengths = torch.tensor([len(s["input_ids"]) for s in samples])
    positions = torch.arange(batch["input_ids"].shape[1]).unsqueeze(0)
    if padding_side == "left":
        positions = positions.flip(1)
    batch["attention_mask"] = (positions < lengths.unsqueeze(1)).long()
    batch["modality_mask"] = {}
    for modality, (values_key, lengths_key) in MEDIA_FIELDS.items():
        rows = [index for index, sample in enumerate(samples) if sample.get(modality) is not None]
        batch["modality_mask"][modality] = torch.tensor([s.get(modality) is not None for s in samples])
        if rows:
            tensors = [samples[index][modality] for index in rows]
            batch[values_key], batch[lengths_key] = _pad_media(modality, tensors, [samples[i].get("id") for i in rows])
            batch[f"{modality}_sample_index"] = torch.tensor(rows, dtype=torch.long)
    batch["ids"] = [str(s.get("id")) for s in samples]
    batch["media_errors"] = sum(s.get("media_error") is not None for s in samples)
    return batch


def _pad_text(sequences: list[torch.Tensor], value: int, side: str) -> torch.Tensor:
    longest = max(len(sequence) for sequence in sequences)
    out = torch.full((len(sequences), longest), value, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if side == "right":
            out[row, : len(sequence)] = sequence
        else:
            out[row, longest - len(sequence):] = sequence
    return out


def _pad_media(modality: str, tensors: list[torch.Tensor], ids: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n_i, *rest]`` tensors -> zero-padded ``[len, n_max, *rest]`` and ``lengths [len]``."""
    rest = tensors[0].shape[1:]
    for tensor, sample_id in zip(tensors, ids, strict=True):
        if tensor.dim() < 2 or tensor.shape[1:] != rest:
            shapes = {str(i): tuple(t.shape) for t, i in zip(tensors, ids, strict=True)}
            raise ValueError(f"{modality} of sample {sample_id!r} has shape {tuple(tensor.shape)}; every {modality} "
                             f"in a batch must share the trailing shape (got {shapes}); resize them in the processor")
    lengths = torch.tensor([len(tensor) for tensor in tensors], dtype=torch.long)
    out = tensors[0].new_zeros((len(tensors), int(lengths.max()), *rest))
    for row, tensor in enumerate(tensors):
        out[row, : len(tensor)] = tensor
    return out, lengths
