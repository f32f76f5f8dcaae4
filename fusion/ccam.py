"""Video-CCAM projector: learned queries cross-attend to frame tokens through a causal cross-attention mask.

Notation:
    b: batch
    t: frames (``t_max`` when padded; ``t_b`` valid frames of sample b)
    n: tokens per frame (patches)
    q: learned queries (``num_queries``; the output token count, independent of t)
    d: width (``input_dim`` in, ``hidden_dim`` inside, ``output_dim`` out)

The queries are split into ordered groups, one per frame: query i belongs to group ``g(i) = floor(i * t_b / q)``
(rule ``"floor"``) and may attend only to the tokens of frames ``0..g(i)``. Every query sees frame 0 and the last
group sees every frame, so no attention row is empty; with one frame the mask is all-visible (the image case).
Temporal order comes only from the mask: there is no temporal position embedding, which is what lets a model
trained on 16 frames run on 96. The mask is built per sample from its own frame count; padded frames are never
visible. Spec: seed_systems.md §1.8 (QQ-MM/Video-CCAM v1.2 ``projector_config``; the block layout, the norm
placement and the rounding rule are not pinned by reference weights yet, hence the toggles).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn


@dataclass
class CCAMConfig:
    """Projector config. With ``input_dim=1152, output_dim=3584`` the defaults give Video-CCAM-7B-v1.2 exactly
    (hidden 1024, 1024 queries, 16 heads, SwiGLU 4096); the width defaults scale down with a small ``input_dim`` so
    that test-size connectors stay test-size."""

    input_dim: int = 1152  # width of the frame tokens (keys/values input)
    output_dim: int = 3584  # LLM width
    hidden_dim: int | None = None  # query and attention width; None: min(1024, input_dim)
    num_queries: int = 1024  # output tokens whatever the frame count
    num_heads: int | None = None  # None: gcd(hidden_dim, 16), i.e. 16 whenever hidden_dim is a multiple of 16
    num_key_value_heads: int | None = None  # None: num_heads; fewer gives grouped-query attention
    ffn_dim: int | None = None  # SwiGLU inner width; None: 4 * hidden_dim
    attention_bias: bool = True  # biases on the q/k/v/o projections
    mlp_bias: bool = True  # biases on the SwiGLU and output projections
    layer_norm_eps: float = 1e-5
    dropout: float = 0.1  # residual dropout (training only)
    attention_dropout: float = 0.1  # dropout on attention probabilities (training only)
    causal: bool = True  # False: plain cross-attention over all valid frames (the ablation)
    query_to_frame: Literal["floor", "ceil"] = "floor"  # g(i) = floor(i t / q), or ceil((i + 1) t / q) - 1
    query_norm: bool = True  # LayerNorm on the queries before attention
    key_value_norm: bool = True  # LayerNorm on the frame tokens before the k/v projections
    final_norm: bool = True  # LayerNorm before the output projection

    def __post_init__(self) -> None:
        if isinstance(self.input_dim, int) and self.input_dim > 0:
            self.hidden_dim = min(1024, self.input_dim) if self.hidden_dim is None else self.hidden_dim
        if isinstance(self.hidden_dim, int) and self.hidden_dim > 0:
            self.num_heads = math.gcd(self.hidden_dim, 16) if self.num_heads is None else self.num_heads
            self.ffn_dim = 4 * self.hidden_dim if self.ffn_dim is None else self.ffn_dim
        self.num_key_value_heads = self.num_heads if self.num_key_value_heads is None else self.num_key_value_heads
        errors = [
            f"{name} must be a positive int; got {getattr(self, name)!r}"
            for name in ("input_dim", "output_dim", "hidden_dim", "num_queries", "num_heads",
                         "num_key_value_heads", "ffn_dim")
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int)
            or getattr(self, name) < 1
        ]
        if not errors:
            if self.hidden_dim % self.num_heads:
                errors.append(f"hidden_dim {self.hidden_dim} must be divisible by num_heads {self.num_heads}")
            if self.num_heads % self.num_key_value_heads:
                errors.append(f"num_heads {self.num_heads} must be a multiple of num_key_value_heads "
                              f"{self.num_key_value_heads}")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                errors.append(f"{name} must be in [0, 1); got {getattr(self, name)!r}")
        if self.query_to_frame not in ("floor", "ceil"):
            errors.append(f"query_to_frame must be 'floor' or 'ceil'; got {self.query_to_frame!r}")
        if errors:
            raise ValueError("invalid CCAMConfig: " + "; ".join(errors))


def query_groups(num_queries: int, num_frames: Tensor, rule: Literal["floor", "ceil"] = "floor") -> Tensor:
    """Frame group of every query, per sample: the last frame each query may see.

    Args:
        num_queries: q.
        num_frames: LongTensor ``[b]`` of valid frame counts (>= 1).
        rule: ``"floor"``: ``g(i) = floor(i t / q)``; ``"ceil"``: ``g(i) = ceil((i + 1) t / q) - 1``.

    Returns:
        LongTensor ``[b, q]`` with values in ``[0, t_b)``.
    """
    index = torch.arange(num_queries, device=num_frames.device)
    frames = num_frames[:, None]
    if rule == "floor":
        return index * frames // num_queries
    return ((index + 1) * frames + num_queries - 1) // num_queries - 1


def ccam_mask(num_queries: int, frame_valid: Tensor, num_patches: int, causal: bool = True,
              rule: Literal["floor", "ceil"] = "floor") -> Tensor:
    """Boolean cross-attention mask (True = may attend) from a prefix-valid frame mask.

    Args:
        num_queries: q.
        frame_valid: bool ``[b, t]``, True for real frames, all real frames first.
        num_patches: n, tokens per frame.
        causal: False makes every valid frame visible to every query.
        rule: the query-to-frame rule of :func:`query_groups`.

    Returns:
        bool ``[b, q, t * n]``, keys ordered frame-major (``t n``).
    """
    frame_index = torch.arange(frame_valid.shape[1], device=frame_valid.device)
    visible = repeat(frame_valid, "b t -> b q t", q=num_queries)
    if causal:
        groups = query_groups(num_queries, frame_valid.sum(1), rule)
        visible = visible & (frame_index[None, None, :] <= groups[:, :, None])
    return repeat(visible, "b q t -> b q (t n)", n=num_patches)


class CCAMProjector(nn.Module):
    """Causal cross-attention projector: ``[b, t, n, input_dim] -> [b, num_queries, output_dim]``.

    ``h = Q0 + Drop(XAttn(LN_q(Q0), LN_kv(X); M_b))``; ``h = h + Drop(SwiGLU(LN(h)))``; ``y = W_out(LN_out(h))``.
    Queries never attend to each other, so query i depends only on frames ``0..g(i)``.

    Args:
        input_dim: width of the frame tokens.
        output_dim: LLM width.
        **options: any other :class:`CCAMConfig` field.
    """

    def __init__(self, input_dim: int, output_dim: int, **options) -> None:
        super().__init__()
        unknown = sorted(set(options) - {field.name for field in dataclasses.fields(CCAMConfig)})
        if unknown:
            valid = sorted(field.name for field in dataclasses.fields(CCAMConfig))
            raise TypeError(f"unknown CCAMProjector options {unknown}; valid options: {valid}")
        self.config = config = CCAMConfig(input_dim=input_dim, output_dim=output_dim, **options)
        hidden, head_dim = config.hidden_dim, config.hidden_dim // config.num_heads

        def norm(enabled: bool) -> nn.Module:
            return nn.LayerNorm(hidden, eps=config.layer_norm_eps) if enabled else nn.Identity()

        self.queries = nn.Parameter(torch.empty(config.num_queries, hidden))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.query_norm = norm(config.query_norm)
        self.key_value_norm = (nn.LayerNorm(input_dim, eps=config.layer_norm_eps) if config.key_value_norm
                               else nn.Identity())
        self.q_proj = nn.Linear(hidden, hidden, bias=config.attention_bias)
        self.k_proj = nn.Linear(input_dim, config.num_key_value_heads * head_dim, bias=config.attention_bias)
        self.v_proj = nn.Linear(input_dim, config.num_key_value_heads * head_dim, bias=config.attention_bias)
        self.o_proj = nn.Linear(hidden, hidden, bias=config.attention_bias)
        self.ffn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.gate_proj = nn.Linear(hidden, config.ffn_dim, bias=config.mlp_bias)
        self.up_proj = nn.Linear(hidden, config.ffn_dim, bias=config.mlp_bias)
        self.down_proj = nn.Linear(config.ffn_dim, hidden, bias=config.mlp_bias)
        self.output_norm = norm(config.final_norm)
        self.output_proj = nn.Linear(hidden, output_dim, bias=config.mlp_bias)
        self.dropout = nn.Dropout(config.dropout)

    @classmethod
    def from_config(cls, config: CCAMConfig) -> CCAMProjector:
        """Random-init projector from a config."""
        return cls(**dataclasses.asdict(config))

    def num_output_tokens(self, num_frames: int, num_patches: int) -> int:
        """Always ``num_queries``, whatever the frame and patch counts."""
        return self.config.num_queries

    def forward(self, x: Tensor, frame_valid: Tensor | None = None) -> Tensor:
        """Project padded frame tokens.

        Args:
            x: ``[b, t, n, input_dim]``.
            frame_valid: optional bool ``[b, t]``, True for real frames, all real frames first (at least one per
                sample); None means every frame is real. Padded frames never influence the output.

        Returns:
            ``[b, num_queries, output_dim]``.
        """
        if x.dim() != 4 or x.shape[-1] != self.config.input_dim:
            raise ValueError(f"x must be [b, t, n, {self.config.input_dim}]; got shape {tuple(x.shape)}")
        batch, frames, patches, _ = x.shape
        frame_valid = self._check_frame_valid(frame_valid, batch, frames, x.device)
        mask = ccam_mask(self.config.num_queries, frame_valid, patches, self.config.causal, self.config.query_to_frame)
        queries = repeat(self.queries, "q d -> b q d", b=batch)
        hidden = queries + self.dropout(self._attend(self.query_norm(queries), rearrange(x, "b t n d -> b (t n) d"),
                                                     mask))
        normed = self.ffn_norm(hidden)
        hidden = hidden + self.dropout(self.down_proj(F.silu(self.gate_proj(normed)) * self.up_proj(normed)))
        return self.output_proj(self.output_norm(hidden))

    def forward_packed(self, features: Tensor, split_sizes: list[int]) -> Tensor:
        """The reference calling convention: all frames of all videos concatenated.

        Args:
            features: ``[sum(split_sizes), n, input_dim]``.
            split_sizes: frames per video, each >= 1.

        Returns:
            ``[len(split_sizes), num_queries, output_dim]``.
        """
        if any(size < 1 for size in split_sizes) or sum(split_sizes) != features.shape[0]:
            raise ValueError(f"split_sizes {split_sizes} must be >= 1 each and sum to features.shape[0] "
                             f"= {features.shape[0]}")
        videos = torch.nn.utils.rnn.pad_sequence(list(features.split(split_sizes)), batch_first=True)
        counts = torch.tensor(split_sizes, device=features.device)
        frame_valid = torch.arange(videos.shape[1], device=features.device)[None, :] < counts[:, None]
        return self.forward(videos, frame_valid)

    def _attend(self, queries: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
        config = self.config
        tokens = self.key_value_norm(tokens)
        q = rearrange(self.q_proj(queries), "b q (h e) -> b h q e", h=config.num_heads)
        k = rearrange(self.k_proj(tokens), "b k (h e) -> b h k e", h=config.num_key_value_heads)
        v = rearrange(self.v_proj(tokens), "b k (h e) -> b h k e", h=config.num_key_value_heads)
        if config.num_key_value_heads != config.num_heads:
            groups = config.num_heads // config.num_key_value_heads
            k, v = (repeat(tensor, "b h k e -> b (h g) k e", g=groups) for tensor in (k, v))
        dropout = config.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], dropout_p=dropout)
        return self.o_proj(rearrange(out, "b h q e -> b q (h e)"))

    @staticmethod
    def _check_frame_valid(frame_valid: Tensor | None, batch: int, frames: int, device: torch.device) -> Tensor:
        if frame_valid is None:
            return torch.ones(batch, frames, dtype=torch.bool, device=device)
        if frame_valid.dtype != torch.bool or tuple(frame_valid.shape) != (batch, frames):
            raise ValueError(f"frame_valid must be bool [b, t] = [{batch}, {frames}]; got {frame_valid.dtype} "
                             f"{tuple(frame_valid.shape)}")
        counts = frame_valid.sum(1)
        prefix = torch.arange(frames, device=device)[None, :] < counts[:, None]
        if not torch.equal(prefix, frame_valid.to(device)) or bool((counts == 0).any()):
            raise ValueError("frame_valid must mark a non-empty prefix of real frames per sample (padding at the "
                             f"end); got valid counts {counts.tolist()} with gaps")
        return frame_valid.to(device)
