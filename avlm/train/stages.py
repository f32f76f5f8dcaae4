"""The training forward pass as timed stages, and the every-rank-runs-every-encoder rule for sharded training.

:class:`TrainingForward` wraps the model for accelerate (DDP / FSDP wrap *it*, so gradient synchronisation works as
with the model's own forward) and calls the model's stage methods one by one: ``encode_video`` / ``encode_audio``
(the "vision" / "audio" times), ``connect_video`` / ``connect_audio`` ("connectors"), then ``merge`` and the LLM with
the loss ("llm_forward"). Stage times are wall-clock seconds, with a device synchronisation first on CUDA only.

Missing modalities. With ``run_all_encoders`` a batch without any video (or audio) still sends a dummy input of
zeros through that encoder and connector, and adds ``0 * sum(outputs)`` to the loss. Every rank then touches every
parameter in the same order each step: FSDP / ZeRO-3 gather the same shards on all ranks (no hang) and DDP sees no
unused parameters. The loss value and the gradients are unchanged.

Loss scaling. The model sums the token losses of the micro-batch and divides by ``num_items``, the labelled tokens of
the whole global batch (all micro-batches of the step on all ranks), times ``world_size`` (DDP averages gradients
over ranks): the step's gradient is then the token mean over the global batch, whatever the split into processes
and micro-batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from avlm.media import MediaConfig

STAGES = ("vision", "audio", "connectors", "llm_forward")


class TrainingForward(nn.Module):
    """``forward(batch, num_items, world_size) -> loss``; ``times`` holds the last call's stage seconds and
    ``tokens`` its LLM tokens (text + media, without padding).

    Args:
        model: an ``AVLMForCausalLM``.
        media: the processor's media settings (shape of the dummy inputs).
        run_all_encoders: run every encoder + connector every call (see the module docstring).
        pack: run the LLM on the packed real tokens (``AVLMForCausalLM.forward(pack=True)``).
    """

    def __init__(self, model: nn.Module, media: MediaConfig, run_all_encoders: bool = False,
                 pack: bool = False) -> None:
        super().__init__()
        self.model = model
        self.media = media
        self.run_all_encoders = run_all_encoders
        self.pack = pack
        self.times: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.tokens = 0

    def forward(self, batch: dict[str, Any], num_items: torch.Tensor, world_size: int = 1) -> torch.Tensor:
        """Loss of one micro-batch: summed token loss / ``num_items`` x ``world_size`` (a scalar tensor)."""
        self.times = dict.fromkeys(STAGES, 0.0)
        media: dict[str, list[torch.Tensor]] = {}
        zero_terms: list[torch.Tensor] = []
        for modality in self.model.encoders:
            inputs = _media_inputs(batch, modality)
            if inputs is None and not self.run_all_encoders:
                continue
            tokens = self._run_modality(modality, inputs if inputs is not None else self._dummy(modality))
            if inputs is None:
                zero_terms.append(torch.stack([item.sum() for item in tokens]).sum() * 0.0)
            else:
                media[modality] = tokens
        with self._timed("llm_forward"):
            index = {m: batch.get(f"{m}_sample_index") for m in ("video", "audio")}
            merged = self.model.merge(batch["input_ids"], batch["attention_mask"], batch["labels"], media, index)
            self.tokens = _llm_tokens(batch, media)
            out = self.model(inputs_embeds=merged.inputs_embeds, attention_mask=merged.attention_mask,
                             position_ids=merged.position_ids, labels=merged.labels, num_items_in_batch=num_items,
                             pack=self.pack)
        loss = out.loss * world_size
        if zero_terms:
            loss = loss + sum(zero_terms)
        if not loss.requires_grad:  # the batch touched no trained part (e.g. text-only while only audio trains)
            loss = loss + sum(parameter.sum() * 0.0 for parameter in self.parameters() if parameter.requires_grad)
        return loss

    def _run_modality(self, modality: str, inputs: tuple[torch.Tensor, torch.Tensor | None]) -> list[torch.Tensor]:
        encoder = self.model.encoders[modality]
        trains = any(parameter.requires_grad for parameter in encoder.parameters())
        encode, connect = ((self.model.encode_video, self.model.connect_video) if modality == "video"
                           else (self.model.encode_audio, self.model.connect_audio))
        with self._timed("vision" if modality == "video" else "audio"), (nullcontext() if trains else torch.no_grad()):
            features = encode(*inputs)
        with self._timed("connectors"):
            return connect(features)

    def _dummy(self, modality: str) -> tuple[torch.Tensor, None]:
        """A one-item input of zeros in the collator's layout for ``modality``."""
        device = self.model.get_input_embeddings().weight.device
        if modality == "video":
            side = self.media.image_processor.size
            return torch.zeros(1, self.media.num_frames, 3, side, side, device=device), None
        return torch.zeros(1, self.media.min_audio_frames, self.media.n_mels, device=device), None

    @contextmanager
    def _timed(self, stage: str):
        sync = _synchronizer(self.model.get_input_embeddings().weight.device)
        sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            sync()
            self.times[stage] += time.perf_counter() - start


def _media_inputs(batch: dict[str, Any], modality: str) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    values, lengths = {"video": ("video_pixels", "video_frame_counts"),
                       "audio": ("audio_features", "audio_lengths")}[modality]
    if batch.get(values) is None:
        return None
    return batch[values], batch.get(lengths)


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _llm_tokens(batch: dict[str, Any], media: dict[str, list[torch.Tensor]]) -> int:
    """Text tokens without padding, each placeholder replaced by its media tokens: from shapes and the CPU copy of the
    attention mask (no device synchronisation)."""
    mask = batch.get("attention_mask_cpu", batch["attention_mask"])
    items = [item for modality_items in media.values() for item in modality_items]
    return int(mask.sum()) - len(items) + sum(item.shape[0] for item in items)


def labelled_tokens(batch: dict[str, Any]) -> int:
    """Tokens the loss is taken on: labelled positions after the one-token shift (``labels[:, 1:]``)."""
    return int((batch["labels"][:, 1:] != -100).sum())


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of the batch moved to ``device`` (the modality mask too); other entries as they are."""
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            moved[key] = value.to(device, non_blocking=True)
        elif key == "modality_mask":
            moved[key] = {m: mask.to(device) for m, mask in value.items()}
        else:
            moved[key] = value
    return moved
