"""Batch collation: dynamic padding of the text, padded media stacks, and an explicit per-sample modality mask.

Notation: ``b`` samples in the batch, ``L`` longest text, ``b_v`` / ``b_a`` samples with video / audio, ``t`` frames,
``f`` audio feature frames, ``m`` mel bins (or any feature width), ``H, W`` frame size.

Sample (what ``ConversationDataset.__getitem__`` returns)::

    {"input_ids": LongTensor [L_i], "labels": LongTensor [L_i], "id": str, "media_error": str | None,
     "video": FloatTensor [t_i, 3, H, W] (optional), "audio": FloatTensor [f_i, m] (optional)}

Batch (a :class:`Batch`; it also reads like the dict it replaced: ``batch["input_ids"]``, ``"video_pixels" in batch``)::

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

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from avlm.constants import IGNORE_INDEX, MEDIA_FIELDS, MODEL_INPUT_NAMES

SAMPLE_KEYS = frozenset({"input_ids", "labels", "id", "media_error", *MEDIA_FIELDS})


@dataclass
class Batch(Mapping):
    """A collated batch (layout in the module docstring). Media fields are None when no sample has the modality.

    ``model_inputs()`` gives the keyword arguments of ``AVLMForCausalLM.forward`` / ``generate``; ``to(device)``
    moves every tensor. As a read-only mapping it holds the fields that are not None.
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    modality_mask: dict[str, torch.Tensor]
    ids: list[str]
    media_errors: int = 0
    video_pixels: torch.Tensor | None = None
    video_frame_counts: torch.Tensor | None = None
    video_sample_index: torch.Tensor | None = None
    audio_features: torch.Tensor | None = None
    audio_lengths: torch.Tensor | None = None
    audio_sample_index: torch.Tensor | None = None
    attention_mask_cpu: torch.Tensor | None = field(default=None, repr=False)
    """The attention mask before ``to(device)`` (token counts without a device synchronisation)."""

    def model_inputs(self, labels: bool = True) -> dict[str, torch.Tensor]:
        """The model's keyword arguments present in this batch (``labels=False``: without labels, for generate)."""
        return {name: self[name] for name in MODEL_INPUT_NAMES if name in self and (labels or name != "labels")}

    def to(self, device: torch.device | str, media_dtype: torch.dtype | None = None) -> Batch:
        """A copy with every tensor on ``device`` (float media in ``media_dtype`` when given); the CPU attention mask
        is kept as ``attention_mask_cpu``."""
        moved: dict[str, Any] = {"attention_mask_cpu": self.attention_mask}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name == "attention_mask_cpu":
                continue
            if isinstance(value, torch.Tensor):
                dtype = media_dtype if media_dtype is not None and value.is_floating_point() else value.dtype
                moved[item.name] = value.to(device=device, dtype=dtype, non_blocking=True)
            elif item.name == "modality_mask":
                moved[item.name] = {m: mask.to(device) for m, mask in value.items()}
            else:
                moved[item.name] = value
        return Batch(**moved)

    def __getitem__(self, key: str) -> Any:
        if key not in self._present():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._present())

    def __len__(self) -> int:
        return len(self._present())

    def _present(self) -> list[str]:
        return [item.name for item in dataclasses.fields(self) if getattr(self, item.name) is not None]


def collate(
    samples: Sequence[Mapping[str, Any]],
    pad_token_id: int,
    padding_side: Literal["right", "left"] = "right",
) -> Batch:
    """Pad and stack samples into one batch (layout in the module docstring).

    Args:
        samples: dataset samples.
        pad_token_id: id written into padded ``input_ids`` positions.
        padding_side: ``"right"`` for training; ``"left"`` for batched generation.

    Returns:
        The :class:`Batch`.

    Raises:
        ValueError: empty batch, a bad ``padding_side``, unknown sample keys, or media whose trailing shapes differ.
    """
    if not samples:
        raise ValueError("collate got an empty list of samples")
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    for sample in samples:
        extra = set(sample) - SAMPLE_KEYS
        if extra:
            raise ValueError(f"sample {sample.get('id')!r} has unknown keys {sorted(extra)}; expected "
                             f"{sorted(SAMPLE_KEYS)}")
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
    for modality, (values_key, lengths_key, index_key) in MEDIA_FIELDS.items():
        rows = [index for index, sample in enumerate(samples) if sample.get(modality) is not None]
        batch["modality_mask"][modality] = torch.tensor([s.get(modality) is not None for s in samples])
        if rows:
            tensors = [samples[index][modality] for index in rows]
            batch[values_key], batch[lengths_key] = _pad_media(modality, tensors, [samples[i].get("id") for i in rows])
            batch[index_key] = torch.tensor(rows, dtype=torch.long)
    batch["ids"] = [str(s.get("id")) for s in samples]
    batch["media_errors"] = sum(s.get("media_error") is not None for s in samples)
    return Batch(**batch)


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
