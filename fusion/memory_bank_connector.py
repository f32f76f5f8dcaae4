"""MA-LMM memory-bank video connector: frames stream through a Q-Former with memory banks; q tokens out, whatever t.

Notation:
    b: batch (videos of one frame count)
    t: frames of a call (a whole video, or one chunk of a streamed video)
    n: tokens per frame
    q: learned queries (``num_queries``: the output token count, independent of t)
    L: ``memory_length``, the time steps a bank keeps at rest
    d: width (``input_dim`` in, ``hidden_dim`` inside, ``output_dim`` out)

Per frame s (seed_systems.md §2.3-2.6, boheumd/MA-LMM ``Blip2VicunaInstruct_MALMM``):

1. ``f_s = LN_in(x_s) + PE(s)``, PE a zero-initialised ``nn.Embedding(max_frames, d)`` (``image_pe``);
2. the Q-Former runs its learned queries with cross-attention keys/values ``[visual bank ; f_s]`` (one visual bank
   shared by every cross-attention layer) and, in layer l, self-attention keys/values ``[query bank_l ; h_l]``;
3. ``f_s`` and every layer's input ``h_l`` are appended, detached, to their banks, and a bank longer than L is
   compressed once by MBC (:func:`fusion.memory_bank.mbc_compress`: the most similar adjacent pair merged per
   token position, a size-weighted mean).

The LLM tokens are ``W_out`` (``llm_proj``) of the last step's query states: ``[b, q, output_dim]``. Banks are
detached, so gradients reach only the last frame's step; the steps before it run without autograd (same values and
gradients, less work). Memory is therefore constant in t: at most ``L + 1`` frames of keys, and, when the model
streams (``AVLMForCausalLM``'s video branch encodes ``chunk_frames`` frames per call and passes ``state`` on), at
most a chunk of encoder activations.

Not reproduced: the instruction text fed to MA-LMM's Q-Former (it needs the BERT tokenizer and embeddings; the
queries alone read the frames here) and BERT's word-embedding path. The layer is BERT's (post-LayerNorm, cross-
attention every ``cross_attention_every`` layers, GELU FFN); no InstructBLIP weights load into it yet.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from fusion._qformer import QFormerLayer
from fusion.memory_bank import MemoryBank


@dataclass
class MemoryBankState:
    """The memory of one streamed batch of videos: pass it to every call of a video's chunks, in order."""

    visual: MemoryBank  # [b, <= L, n, input_dim] frame tokens (with their PE)
    queries: list[MemoryBank] | None  # per layer [b, <= L, q, hidden_dim] layer inputs; None without query memory
    frames: int = 0  # frames seen so far (the next frame's PE index)


class MemoryBankConnector(nn.Module):
    """MA-LMM's memory-bank Q-Former: ``[b, t, n, input_dim] -> [b, num_queries, output_dim]``.

    Args:
        input_dim: width of the frame tokens.
        output_dim: LLM width.
        num_queries: output tokens whatever the frame count (32 in MA-LMM).
        hidden_dim: Q-Former width; None: ``min(768, input_dim)`` (BERT-base is 768).
        num_layers: Q-Former layers (12 in MA-LMM).
        num_heads: attention heads; None: ``gcd(hidden_dim, 12)`` (12 at BERT-base width).
        ffn_dim: feed-forward width; None: ``4 * hidden_dim``.
        cross_attention_every: layers 0, k, 2k, ... read the frames (2 in BLIP-2 / MA-LMM).
        memory_length: L, time steps each bank keeps (10 for 20-frame QA, 20 for 100-frame LVU, 40 for captions);
            higher keeps more detail and costs attention over ``(L + 1) * n`` keys per step.
        query_memory: keep a query memory bank per layer (MA-LMM's ablation "visual only" is False).
        weighted: MBC merges as the size-weighted mean (the reference code) or the plain mean (the paper's eq. 7).
        max_frames: size of the temporal position table; longer videos are refused (raise it to go longer).
        chunk_frames: frames per vision-encoder call when the model streams a video through this connector;
            peak memory grows with it, not with the video length.
        dropout: residual and attention dropout of the Q-Former (BERT's 0.1).
    """

    streams = True
    """The video branch encodes ``chunk_frames`` frames at a time and passes a :meth:`new_state` between calls."""

    def __init__(self, input_dim: int, output_dim: int, num_queries: int = 32, hidden_dim: int | None = None,
                 num_layers: int = 12, num_heads: int | None = None, ffn_dim: int | None = None,
                 cross_attention_every: int = 2, memory_length: int = 10, query_memory: bool = True,
                 weighted: bool = True, max_frames: int = 1024, chunk_frames: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        hidden_dim = min(768, input_dim) if hidden_dim is None else hidden_dim
        num_heads = math.gcd(hidden_dim, 12) if num_heads is None else num_heads
        ffn_dim = 4 * hidden_dim if ffn_dim is None else ffn_dim
        _check_options(locals())
        self.input_dim, self.output_dim, self.num_queries = input_dim, output_dim, num_queries
        self.memory_length, self.query_memory, self.weighted = memory_length, query_memory, weighted
        self.max_frames, self.chunk_frames = max_frames, chunk_frames
        self.input_norm = nn.LayerNorm(input_dim)  # MA-LMM's ln_vision
        self.time_embedding = nn.Embedding(max_frames, input_dim)
        nn.init.zeros_(self.time_embedding.weight)
        self.queries = nn.Parameter(torch.empty(num_queries, hidden_dim))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.query_norm = nn.LayerNorm(hidden_dim, eps=1e-12)  # the Q-Former embeddings' LayerNorm
        self.layers = nn.ModuleList(
            QFormerLayer(hidden_dim, input_dim, num_heads, ffn_dim, index % cross_attention_every == 0, dropout)
            for index in range(num_layers))
        self.output_proj = nn.Linear(hidden_dim, output_dim)  # MA-LMM's llm_proj

    def num_output_tokens(self, num_frames: int, num_patches: int) -> int:
        """Always ``num_queries``, whatever the frame and patch counts."""
        return self.num_queries

    def new_state(self) -> MemoryBankState:
        """Empty banks for a new batch of videos."""
        banks = [MemoryBank(self.memory_length, self.weighted) for _ in self.layers] if self.query_memory else None
        return MemoryBankState(MemoryBank(self.memory_length, self.weighted), banks)

    def forward(self, x: Tensor, state: MemoryBankState | None = None) -> Tensor:
        """Read frames, one step per frame.

        Args:
            x: ``[b, t, n, input_dim]``, t >= 1.
            state: the memory of the frames before these (from :meth:`new_state`, updated in place); None: ``x`` is
                a whole video.

        Returns:
            ``[b, num_queries, output_dim]`` after the last frame of ``x``.
        """
        if x.dim() != 4 or x.shape[1] < 1 or x.shape[-1] != self.input_dim:
            raise ValueError(f"x must be [b, t >= 1, n, {self.input_dim}]; got shape {tuple(x.shape)}")
        state = self.new_state() if state is None else state
        frames = x.shape[1]
        if state.frames + frames > self.max_frames:
            raise ValueError(f"the video has more than max_frames={self.max_frames} frames ({state.frames} seen, "
                             f"{frames} more); sample fewer frames or build the connector with a larger max_frames")
        for index in range(frames):
            with nullcontext() if index == frames - 1 else torch.no_grad():  # only the last step reaches the loss
                hidden = self._step(x[:, index], state)
        return self.output_proj(hidden)

    def _step(self, frame: Tensor, state: MemoryBankState) -> Tensor:
        """One frame ``[b, n, input_dim]`` against the banks, then stored: the query states ``[b, q, hidden_dim]``."""
        frame = self.input_norm(frame) + self.time_embedding.weight[state.frames]
        visual = rearrange(state.visual.with_frame(frame), "b t n d -> b (t n) d")
        hidden = self.query_norm(repeat(self.queries, "q d -> b q d", b=frame.shape[0]))
        banks = state.queries if state.queries is not None else [None] * len(self.layers)
        for layer, bank in zip(self.layers, banks, strict=True):
            context = hidden if bank is None else rearrange(bank.with_frame(hidden), "b t q d -> b (t q) d")
            if bank is not None:
                bank.append(hidden)
            hidden = layer(hidden, context, visual)
        state.visual.append(frame)
        state.frames += 1
        return hidden


def _check_options(values: dict) -> None:
    """Report every invalid option at once."""
    counts = ("input_dim", "output_dim", "num_queries", "hidden_dim", "num_layers", "num_heads", "ffn_dim",
              "cross_attention_every", "memory_length", "max_frames", "chunk_frames")
    errors = [f"{name} must be a positive int; got {values[name]!r}" for name in counts
              if isinstance(values[name], bool) or not isinstance(values[name], int) or values[name] < 1]
    heads_valid = not any(name in error for error in errors for name in ("hidden_dim", "num_heads"))
    if heads_valid and values["hidden_dim"] % values["num_heads"]:
        errors.append(f"hidden_dim {values['hidden_dim']} must be divisible by num_heads {values['num_heads']}")
    if not 0.0 <= values["dropout"] < 1.0:
        errors.append(f"dropout must be in [0, 1); got {values['dropout']!r}")
    if errors:
        raise ValueError("invalid memory_bank connector options: " + "; ".join(errors))
