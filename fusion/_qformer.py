"""A small BERT-style Q-Former layer (private to ``fusion.memory_bank_connector``).

Notation:
    b: batch
    q: queries
    k: keys (memory plus current step)
    d: query width (``hidden_dim``); ``e`` the key/value input width

As in BLIP-2 / MA-LMM's Q-Former: post-LayerNorm residual blocks, self-attention among the queries, cross-attention
to the frame tokens on every ``cross_attention_every``-th layer, then a GELU feed-forward block.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention ``[b, q, d]`` x ``[b, k, e]`` -> ``[b, q, d]`` (no mask: every key is visible)."""

    def __init__(self, hidden_dim: int, key_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.q_proj = nn.Linear(hidden_dim, hidden_dim)
        self.k_proj = nn.Linear(key_dim, hidden_dim)
        self.v_proj = nn.Linear(key_dim, hidden_dim)
        self.o_proj = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, queries: Tensor, keys: Tensor) -> Tensor:
        q, k, v = (rearrange(proj(x), "b s (h e) -> b h s e", h=self.num_heads)
                   for proj, x in ((self.q_proj, queries), (self.k_proj, keys), (self.v_proj, keys)))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.o_proj(rearrange(out, "b h q e -> b q (h e)"))


class QFormerLayer(nn.Module):
    """``h = LN(h + SelfAttn(h, [memory ; h]))``; ``h = LN(h + CrossAttn(h, frames))`` (if ``cross_attention``);
    ``h = LN(h + FFN(h))``.

    Args:
        hidden_dim: query width.
        frame_dim: width of the frame tokens (cross-attention keys and values).
        num_heads: attention heads (divide ``hidden_dim``).
        ffn_dim: inner width of the feed-forward block.
        cross_attention: whether this layer reads the frames.
        dropout: residual and attention dropout (training only).
    """

    def __init__(self, hidden_dim: int, frame_dim: int, num_heads: int, ffn_dim: int, cross_attention: bool,
                 dropout: float) -> None:
        super().__init__()
        self.self_attention = Attention(hidden_dim, hidden_dim, num_heads, dropout)
        self.self_norm = nn.LayerNorm(hidden_dim, eps=1e-12)  # BERT's eps
        self.cross_attention = Attention(hidden_dim, frame_dim, num_heads, dropout) if cross_attention else None
        self.cross_norm = nn.LayerNorm(hidden_dim, eps=1e-12) if cross_attention else None
        self.ffn = nn.Sequential(nn.Linear(hidden_dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, hidden_dim))
        self.ffn_norm = nn.LayerNorm(hidden_dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: Tensor, self_context: Tensor, frames: Tensor) -> Tensor:
        """One layer.

        Args:
            hidden: ``[b, q, d]`` the queries' states (this layer's input).
            self_context: ``[b, k, d]`` self-attention keys/values: the query memory bank then ``hidden``.
            frames: ``[b, k', e]`` cross-attention keys/values: the visual memory bank then the current frame.
        """
        hidden = self.self_norm(hidden + self.dropout(self.self_attention(hidden, self_context)))
        if self.cross_attention is not None:
            hidden = self.cross_norm(hidden + self.dropout(self.cross_attention(hidden, frames)))
        return self.ffn_norm(hidden + self.dropout(self.ffn(hidden)))
