"""``mlp2x_gelu``: VideoLLaMA2's audio projector (and a generic token-wise MLP).

Notation: b batch, n tokens, d input width, D output width.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class MLPProjector(nn.Sequential):
    """Token-wise ``Linear(d, D) -> GELU(erf) -> Linear(D, D)`` (``depth`` linears): [b, n, d] -> [b, n, D].

    Keys ``0.weight``, ``0.bias``, ``2.weight``, ``2.bias`` (VideoLLaMA2's ``mm_projector_a``).
    """

    def __init__(self, input_dim: int, output_dim: int, depth: int = 2):
        if depth < 1:
            raise ValueError(f"depth must be >= 1 linear layer, got {depth}")
        layers: list[nn.Module] = [nn.Linear(input_dim, output_dim)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(output_dim, output_dim)]
        super().__init__(*layers)
        self.input_dim, self.output_dim = input_dim, output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[b, n, d] -> [b, n, D]; frame tokens [b, t, n, d] are flattened to [b, t*n, D]."""
        if x.dim() == 4:
            x = rearrange(x, "b t n d -> b (t n) d")
        return super().forward(x)

    def num_output_tokens(self, num_frames: int, num_patches: int) -> int:
        """Token-wise: one output per input token (``num_frames * num_patches``)."""
        return num_frames * num_patches
