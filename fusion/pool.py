"""Ablation baselines: ``spatial_pool`` (average-pool each frame to a small grid, then an MLP) and ``linear``.

Notation: b batch, t frames, n = h*w tokens per frame, d encoder width, D LLM width, g pooled grid side.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from fusion.mlp import MLPProjector


class SpatialPoolConnector(nn.Module):
    """Average-pool every frame to ``grid x grid`` tokens (and optionally frames in groups of ``temporal_pool``),
    then a 2-layer GELU MLP: [b, t, n, d] -> [b, (t / temporal_pool) * grid^2, D]."""

    def __init__(self, input_dim: int, output_dim: int, grid: int = 4, temporal_pool: int = 1, mlp_depth: int = 2):
        super().__init__()
        if grid < 1 or temporal_pool < 1:
            raise ValueError(f"grid and temporal_pool must be >= 1, got grid={grid}, temporal_pool={temporal_pool}")
        self.input_dim, self.output_dim = input_dim, output_dim
        self.grid, self.temporal_pool = grid, temporal_pool
        self.mlp = MLPProjector(input_dim, output_dim, depth=mlp_depth)

    def num_output_tokens(self, num_frames: int, num_patches: int) -> int:
        return math.ceil(num_frames / self.temporal_pool) * self.grid * self.grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[b, t, n, d] (square grid) -> [b, t'*g*g, D]."""
        side = math.isqrt(x.shape[2])
        if side * side != x.shape[2]:
            raise ValueError(f"spatial_pool needs a square grid of frame tokens, got {x.shape[2]} tokens per frame")
        maps = rearrange(x, "b t (h w) d -> b d t h w", h=side)
        pooled = F.adaptive_avg_pool3d(maps, (math.ceil(x.shape[1] / self.temporal_pool), self.grid, self.grid))
        return self.mlp(rearrange(pooled, "b d t h w -> b (t h w) d"))


class LinearConnector(nn.Module):
    """One linear projection per token (LLaVA-1.0 style): [b, t, n, d] -> [b, t*n, D]."""

    def __init__(self, input_dim: int, output_dim: int):
        super().__init__()
        self.input_dim, self.output_dim = input_dim, output_dim
        self.proj = nn.Linear(input_dim, output_dim)

    def num_output_tokens(self, num_frames: int, num_patches: int) -> int:
        return num_frames * num_patches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[b, t, n, d] or [b, n, d] -> [b, t*n, D] or [b, n, D]."""
        if x.dim() == 4:
            x = rearrange(x, "b t n d -> b (t n) d")
        return self.proj(x)
