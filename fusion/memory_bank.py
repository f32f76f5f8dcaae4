"""MA-LMM memory bank compression (MBC) and a streaming memory bank.

Notation:
    b: batch
    t: time steps (frames) held in the bank
    n: tokens per frame (spatial positions, or queries plus text for a query bank)
    d: width

MBC (MA-LMM, boheumd/MA-LMM ``memory_bank_compress``, commit ffe9fa9) removes exactly one time step per
call. Every (batch, token position) pair chooses its own step independently: ``k = argmax_t cos(m[t], m[t+1])``
(first index on exact ties), then step ``k + 1`` is merged into step ``k`` as a size-weighted mean and the sizes
are added. The bank is therefore a set of running means over contiguous frame spans, and ``sum_t size * memory``
is conserved. After the first merge the bank is no longer frame-aligned across token positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import repeat
from torch import Tensor


def adjacent_similarity(memory: Tensor) -> Tensor:
    """Cosine similarity of every pair of adjacent time steps, computed in float32.

    Args:
        memory: ``[b, t, n, d]``.

    Returns:
        ``[b, t - 1, n]``: ``cos(memory[:, i], memory[:, i + 1])`` over ``d`` (eps 1e-8, as torch's default).
    """
    memory = memory.float()
    return F.cosine_similarity(memory[:, :-1], memory[:, 1:], dim=-1)


def merge_indices(memory: Tensor) -> Tensor:
    """Per (batch, token) index ``k`` of the most similar adjacent pair (k, k + 1); first index on ties.

    Args:
        memory: ``[b, t, n, d]`` with ``t >= 2``.

    Returns:
        LongTensor ``[b, 1, n]``.
    """
    # torch.max over a dimension returns the first index among exact ties (documented for CPU and CUDA).
    return adjacent_similarity(memory).max(dim=1, keepdim=True).indices


def mbc_compress(memory: Tensor, sizes: Tensor, weighted: bool = True) -> tuple[Tensor, Tensor]:
    """Remove one time step from a memory bank by merging the most similar adjacent pair per token.

    Args:
        memory: ``[b, t, n, d]`` floating bank, ``t >= 2``.
        sizes: ``[b, t, n]`` number of raw frames merged into each slot (float; ones for fresh frames).
        weighted: True (the reference code) merges as the size-weighted mean
            ``(s_k m_k + s_{k+1} m_{k+1}) / (s_k + s_{k+1})``; False gives the paper's eq. 7, ``(m_k + m_{k+1}) / 2``.
            Sizes are added in both cases.

    Returns:
        ``(memory [b, t - 1, n, d], sizes [b, t - 1, n])``. Slots before ``k`` are kept and slots after ``k + 1``
        shift down by one; like the reference, every slot is recomputed as ``(size * memory) / size``, so kept
        values may differ from the input in the last bit.
    """
    _check_bank(memory, sizes)
    batch, steps, tokens, width = memory.shape
    merge_at = merge_indices(memory)  # [b, 1, n]
    source = merge_at + 1
    # Destination slots: every step except the merged-away k + 1, in order.
    keep = repeat(torch.arange(steps - 1, device=memory.device), "t -> b t n", b=batch, n=tokens).clone()
    keep[keep > merge_at] += 1

    weights = sizes if weighted else torch.ones_like(sizes)
    kept = memory.gather(1, repeat(keep, "b t n -> b t n d", d=width)) * weights.gather(1, keep).unsqueeze(-1)
    merged = memory.gather(1, repeat(source, "b t n -> b t n d", d=width)) * weights.gather(1, source).unsqueeze(-1)
    kept = kept.scatter_add(1, repeat(merge_at, "b t n -> b t n d", d=width), merged)
    total_weight = weights.gather(1, keep).scatter_add(1, merge_at, weights.gather(1, source))
    new_sizes = sizes.gather(1, keep).scatter_add(1, merge_at, sizes.gather(1, source))
    return (kept / total_weight.unsqueeze(-1)).to(memory.dtype), new_sizes


def _check_bank(memory: Tensor, sizes: Tensor) -> None:
    if memory.dim() != 4:
        raise ValueError(f"memory must be [b, t, n, d]; got shape {tuple(memory.shape)}")
    if tuple(sizes.shape) != tuple(memory.shape[:3]):
        raise ValueError(f"sizes must be [b, t, n] = {tuple(memory.shape[:3])}; got shape {tuple(sizes.shape)}")
    if memory.shape[1] < 2:
        raise ValueError(f"memory needs at least 2 time steps to compress; got t={memory.shape[1]}")
    if not memory.is_floating_point() or not sizes.is_floating_point():
        raise TypeError(f"memory and sizes must be floating point; got {memory.dtype} and {sizes.dtype}")


class MemoryBank:
    """Streaming MA-LMM memory bank: append one frame at a time, compress once whenever it exceeds ``max_length``.

    The stored tensors are detached, so gradients reach only the current step. The bank is emptied only by an
    explicit :meth:`reset` (never inferred from a frame count, which is what leaks memory across videos in the
    reference).

    Args:
        max_length: ``L``, the most time steps kept at rest (``memory_bank_length`` in MA-LMM), >= 1.
        weighted: passed to :func:`mbc_compress`.
    """

    def __init__(self, max_length: int, weighted: bool = True) -> None:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be an int >= 1; got {max_length!r}")
        self.max_length = max_length
        self.weighted = weighted
        self.memory: Tensor | None = None  # [b, t, n, d]
        self.sizes: Tensor | None = None  # [b, t, n], float32

    def __len__(self) -> int:
        return 0 if self.memory is None else self.memory.shape[1]

    def reset(self) -> None:
        """Forget every stored frame (call between videos)."""
        self.memory = None
        self.sizes = None

    def with_frame(self, frame: Tensor) -> Tensor:
        """The attention context for the current step: ``[stored ; frame]`` without storing it.

        Args:
            frame: ``[b, n, d]``; it keeps its autograd graph.

        Returns:
            ``[b, len + 1, n, d]``.
        """
        self._check_frame(frame)
        if self.memory is None:
            return frame.unsqueeze(1)
        return torch.cat([self.memory, frame.unsqueeze(1)], dim=1)

    def append(self, frame: Tensor) -> None:
        """Store ``frame`` (detached) with size 1; if the bank then exceeds ``max_length``, compress once.

        Args:
            frame: ``[b, n, d]``.
        """
        self._check_frame(frame)
        frame = frame.detach().unsqueeze(1)
        # Sizes stay float32 whatever the bank dtype: bf16 cannot count past 256 exactly.
        ones = torch.ones(frame.shape[:3], dtype=torch.float32, device=frame.device)
        if self.memory is None:
            self.memory, self.sizes = frame, ones
        else:
            self.memory = torch.cat([self.memory, frame], dim=1)
            self.sizes = torch.cat([self.sizes, ones], dim=1)
        if self.memory.shape[1] > self.max_length:
            self.memory, self.sizes = mbc_compress(self.memory, self.sizes, weighted=self.weighted)

    def kv(self) -> Tensor:
        """The stored bank flattened for attention keys/values: ``[b, len * n, d]``."""
        if self.memory is None:
            raise ValueError("the memory bank is empty; append a frame first")
        return self.memory.flatten(1, 2)

    def _check_frame(self, frame: Tensor) -> None:
        if frame.dim() != 3:
            raise ValueError(f"frame must be [b, n, d]; got shape {tuple(frame.shape)}")
        if self.memory is not None:
            stored = (self.memory.shape[0], *self.memory.shape[2:])
            if tuple(frame.shape) != stored:
                raise ValueError(
                    f"frame shape {tuple(frame.shape)} does not match the stored bank's [b, n, d] = {stored}; "
                    "call reset() before a new video or batch"
                )
