"""One branch per modality: which batch fields it reads, how its items are grouped through the encoder, the connector.

Notation:
    b_v / b_a: video / audio items in the batch, t: frames, n: encoder tokens per frame (or per audio clip),
    d: encoder width, D: LLM width, H, W: frame size, f: audio feature frames, m: mel bins.

A branch holds no weights: the model's ``encoders[modality]`` and ``connectors[modality]`` are passed to it (they stay
where the state-dict layout, LoRA targets, the trainable policy and FSDP wrapping expect them). It turns the batch's
fields of its modality into one block of LLM tokens per item::

    video: video_pixels [b_v, t_max, 3, H, W], video_frame_counts [b_v] -> b_v x [n_i', D]
    audio: audio_features [b_a, f_max, m], audio_lengths [b_a]            -> b_a x [n_i, D]

``AVLMForCausalLM.embed_multimodal`` loops over :data:`BRANCHES`; nothing else walks the modalities.

Two kinds of video parts change how frames travel; each says so with a class attribute, and every other encoder and
connector takes the default path (all frames in one encoder call, then the connector per group), unchanged:

- an encoder with ``mixes_frames = True`` (BT-Adapter: a frame's tokens depend on the other frames of its video) is
  called once per group of equal frame count, one video per row;
- a connector with ``streams = True`` (the MA-LMM memory bank) is fed ``connector.chunk_frames`` frames at a time,
  each chunk encoded just before the connector reads it, with ``connector.new_state()`` carried from chunk to chunk;
  peak memory then does not grow with the frame count (the encoder never holds more than one chunk).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from avlm.constants import MEDIA_FIELDS
from avlm.modeling.splice import item_counts


@dataclass
class BranchInputs:
    """A modality's values ``[items, longest, ...]``, their real lengths ``[items]`` (None: all ``longest``) and the
    batch row of each item ``[items]`` (None: the rows of the placeholders, in order)."""

    values: torch.Tensor
    lengths: torch.Tensor | None = None
    sample_index: torch.Tensor | None = None


class Branch:
    """Base class: read the modality's inputs from a batch, encode, connect; subclasses implement the two steps."""

    modality: str

    def inputs(self, media: Mapping[str, torch.Tensor | None]) -> BranchInputs | None:
        """The batch fields of this modality (:data:`avlm.constants.MEDIA_FIELDS`), or None when it has no item."""
        values, lengths, index = MEDIA_FIELDS[self.modality]
        if media.get(values) is None:
            return None
        return BranchInputs(media[values], media.get(lengths), media.get(index))

    def tokens(self, encoder: nn.Module, connector: nn.Module, inputs: BranchInputs) -> list[torch.Tensor]:
        """encode -> connect: one ``[n_i, D]`` block per item. A frozen encoder runs without autograd."""
        with _autograd_if_trained(encoder):
            features = self.encode(encoder, inputs)
        return self.connect(connector, features)

    def encode(self, encoder: nn.Module, inputs: BranchInputs) -> list[torch.Tensor]:
        raise NotImplementedError

    def connect(self, connector: nn.Module, features: list[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError

    def dummy(self, encoder: nn.Module) -> BranchInputs:
        """A one-item input of zeros (sharded training runs every branch on every rank: ``run_all_branches``)."""
        raise NotImplementedError


class VideoBranch(Branch):
    """All frames of the batch through the vision encoder in one call; the connector per group of equal frame count
    (frame-mixing encoders and streaming connectors: see the module docstring)."""

    modality = "video"

    def tokens(self, encoder: nn.Module, connector: nn.Module, inputs: BranchInputs) -> list[torch.Tensor]:
        """encode -> connect, or :meth:`stream` for a streaming connector."""
        if getattr(connector, "streams", False):  # only streaming connectors declare it
            return self.stream(encoder, connector, inputs)
        return super().tokens(encoder, connector, inputs)

    def encode(self, encoder: nn.Module, inputs: BranchInputs) -> list[torch.Tensor]:
        """[b_v, t, 3, H, W] -> b_v x [t_i, n, d]."""
        pixels = inputs.values
        counts = item_counts(inputs.lengths, pixels.shape[0], pixels.shape[1], "video_frame_counts")
        if getattr(encoder, "mixes_frames", False):  # only frame-mixing encoders declare it
            out: list[torch.Tensor | None] = [None] * len(counts)
            for frames, members in _equal_count_groups(counts.tolist()):
                for i, item in zip(members, encoder(pixels[members, :frames].to(_dtype(encoder))), strict=True):
                    out[i] = item
            return out  # type: ignore[return-value]  (every item belongs to one group)
        valid = torch.arange(pixels.shape[1], device=pixels.device)[None] < counts.to(pixels.device)[:, None]
        frames = pixels[valid].to(_dtype(encoder))
        tokens = encoder(rearrange(frames, "t c h w -> 1 t c h w"))
        return list(rearrange(tokens, "1 t n d -> t n d").split(counts.tolist()))

    def connect(self, connector: nn.Module, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """b_v x [t_i, n, d] -> b_v x [n_i', D]: one connector call per distinct frame count."""
        out: list[torch.Tensor | None] = [None] * len(features)
        for _, members in _equal_count_groups([len(video) for video in features]):
            tokens = connector(torch.stack([features[i] for i in members]))
            for i, item in zip(members, tokens, strict=True):
                out[i] = item
        return out  # type: ignore[return-value]  (every item belongs to one group)

    def stream(self, encoder: nn.Module, connector: nn.Module, inputs: BranchInputs) -> list[torch.Tensor]:
        """Per group of equal frame count, ``connector.chunk_frames`` frames at a time: [g, c, 3, H, W] -> encoder
        -> ``connector(features, state)``; the last chunk's tokens, b_v x [n', D]. A frame-mixing encoder sees each
        chunk as one clip."""
        pixels = inputs.values
        counts = item_counts(inputs.lengths, pixels.shape[0], pixels.shape[1], "video_frame_counts")
        out: list[torch.Tensor | None] = [None] * len(counts)
        for frames, members in _equal_count_groups(counts.tolist()):
            state = connector.new_state()
            for start in range(0, frames, connector.chunk_frames):
                chunk = pixels[members, start:min(start + connector.chunk_frames, frames)]
                with _autograd_if_trained(encoder):
                    features = encoder(chunk.to(_dtype(encoder)))
                tokens = connector(features, state)
            for i, item in zip(members, tokens, strict=True):
                out[i] = item
        return out  # type: ignore[return-value]  (every item belongs to one group)

    def dummy(self, encoder: nn.Module) -> BranchInputs:
        """Two black frames at the encoder's input size (two: the temporal stride of STC)."""
        side = encoder.image_processor.size
        return BranchInputs(torch.zeros(1, 2, 3, side, side, device=_device(encoder)))


class AudioBranch(Branch):
    """The audio encoder once per group of equal-length clips (never padded); the projector over every clip at once."""

    modality = "audio"
    min_frames = 16
    """Feature frames of the dummy clip (one BEATs patch)."""

    def encode(self, encoder: nn.Module, inputs: BranchInputs) -> list[torch.Tensor]:
        """[b_a, f, m], [b_a] -> b_a x [n_i, d].

        Clips of one call are never padded, so a clip's tokens do not depend on what it is batched with (BEATs'
        reference padding rule would let padded frames reach valid tokens). Official VideoLLaMA2 audio is always
        30 s long: one call.
        """
        features = inputs.values
        lengths = item_counts(inputs.lengths, features.shape[0], features.shape[1], "audio_lengths")
        features = features.to(_dtype(encoder))
        out: list[torch.Tensor | None] = [None] * len(features)
        for length in sorted(set(lengths.tolist())):
            members = [i for i, value in enumerate(lengths.tolist()) if value == length]
            full = torch.full((len(members),), length, dtype=torch.long, device=features.device)
            tokens, counts = encoder(features[members, :length], full)
            for i, item, count in zip(members, tokens, counts.tolist(), strict=True):
                out[i] = item[:count]
        return out  # type: ignore[return-value]

    def connect(self, connector: nn.Module, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Token-wise projector: b_a x [n_i, d] -> b_a x [n_i, D]."""
        projected = connector(rearrange(torch.cat(features), "n d -> 1 n d"))
        return list(rearrange(projected, "1 n d -> n d").split([len(clip) for clip in features]))

    def dummy(self, encoder: nn.Module) -> BranchInputs:
        return BranchInputs(torch.zeros(1, self.min_frames, encoder.num_mel_bins, device=_device(encoder)))


BRANCHES: dict[str, Branch] = {"video": VideoBranch(), "audio": AudioBranch()}
"""Modality -> its branch (the keys are :data:`avlm.constants.MODALITIES`)."""


def _autograd_if_trained(encoder: nn.Module) -> AbstractContextManager:
    """Autograd for an encoder with a trainable parameter; a frozen encoder runs under ``torch.no_grad()``."""
    trains = torch.is_grad_enabled() and any(parameter.requires_grad for parameter in encoder.parameters())
    return nullcontext() if trains else torch.no_grad()


def _equal_count_groups(counts: list[int]) -> list[tuple[int, list[int]]]:
    """``(count, item indices)`` per distinct count, in increasing count order."""
    return [(count, [i for i, value in enumerate(counts) if value == count]) for count in sorted(set(counts))]


def _dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
