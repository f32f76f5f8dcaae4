"""VideoLLaMA2's spatial-temporal convolution connectors: ``stc_connector`` (v2.0) and ``stc_connector_v35`` (2.1, AV).

Notation:
    b: batch, t: frames, h, w: patch grid (n = h*w tokens per frame), d: encoder width, D: LLM width,
    t', h', w': sizes after the 2x2x2 sampler.

Pipeline: RegStage ``s1`` (per frame, d -> D) -> Conv3d ``sampler`` 2x2x2 stride 2 + SiLU -> RegStage ``s2`` (per
frame, D -> D) -> tokens (t', row, col) -> MLP ``readout``. Key names are the reference's (``s1.b1.conv1.conv.weight``,
``sampler.0.weight``, ``readout.0.weight``, ...). Convolutions run channels-last.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from fusion._blocks import RegStage


class STCConnector(nn.Module):
    """Spatial-temporal convolution connector: frame tokens [b, t, n, d] -> LLM tokens [b, t'*h'*w', D].

    Args:
        input_dim: encoder width d.
        output_dim: LLM width D.
        downsample: sampler kernel = stride (t, h, w).
        depth: bottleneck blocks per RegStage.
        mlp_depth: linear layers of the readout MLP.
        sampler_padding: zero padding of the sampler on every side (1 for ``stc_connector``, 0 for ``_v35``).
    """

    def __init__(self, input_dim: int, output_dim: int, downsample: tuple[int, int, int] = (2, 2, 2), depth: int = 4,
                 mlp_depth: int = 2, sampler_padding: int = 1):
        super().__init__()
        if depth < 1 or mlp_depth < 1:
            raise ValueError(f"depth and mlp_depth must be >= 1, got depth={depth}, mlp_depth={mlp_depth}")
        self.input_dim, self.output_dim = input_dim, output_dim
        self.downsample, self.sampler_padding = tuple(downsample), sampler_padding
        self.s1 = RegStage(depth, input_dim, output_dim)
        self.sampler = nn.Sequential(nn.Conv3d(output_dim, output_dim, self.downsample, stride=self.downsample,
                                               padding=sampler_padding), nn.SiLU())
        self.s2 = RegStage(depth, output_dim, output_dim)
        readout: list[nn.Module] = [nn.Linear(output_dim, output_dim)]
        for _ in range(mlp_depth - 1):
            readout += [nn.GELU(), nn.Linear(output_dim, output_dim)]
        self.readout = nn.Sequential(*readout)

    def _sampled_size(self, size: int, axis: int) -> int:
        return (size + 2 * self.sampler_padding - self.downsample[axis]) // self.downsample[axis] + 1

    def num_output_tokens(self, num_frames: int, num_patches: int, grid: tuple[int, int] | None = None) -> int:
        """t' * h' * w' for ``num_frames`` frames of ``num_patches`` tokens (a square grid unless ``grid`` = (h, w))."""
        height, width = grid if grid is not None else (_grid_side(num_patches),) * 2
        return self._sampled_size(num_frames, 0) * self._sampled_size(height, 1) * self._sampled_size(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[b, t, n, d] (square grid, row-major tokens) or [b, t, h, w, d] -> [b, t'*h'*w', D]."""
        if x.dim() == 4:
            side = _grid_side(x.shape[2])
            x = rearrange(x, "b t (h w) d -> b t h w d", h=side, w=side)
        if x.dim() != 5:
            raise ValueError(f"STC connector input must be [b, t, n, d] or [b, t, h, w, d], got {tuple(x.shape)}")
        batch, frames = x.shape[:2]
        if frames + 2 * self.sampler_padding < self.downsample[0]:
            raise ValueError(f"STC connector needs at least {self.downsample[0] - 2 * self.sampler_padding} frames, "
                             f"got {frames}; repeat the frames of short clips (an image is repeated by the caller)")
        x = rearrange(x, "b t h w d -> (b t) d h w").contiguous(memory_format=torch.channels_last)
        x = self.s1(x)
        x = rearrange(x, "(b t) d h w -> b d t h w", b=batch).contiguous(memory_format=torch.channels_last_3d)
        x = self.sampler(x)
        x = rearrange(x, "b d t h w -> (b t) d h w").contiguous(memory_format=torch.channels_last)
        x = self.s2(x)
        x = rearrange(x, "(b t) d h w -> b (t h w) d", b=batch)
        return self.readout(x)


class STCConnectorV35(STCConnector):
    """``stc_connector_v35`` (VideoLLaMA2.1 and the AV checkpoints): the same with sampler padding 0."""

    def __init__(self, input_dim: int, output_dim: int, downsample: tuple[int, int, int] = (2, 2, 2), depth: int = 4,
                 mlp_depth: int = 2, sampler_padding: int = 0):
        super().__init__(input_dim, output_dim, downsample, depth, mlp_depth, sampler_padding)


def _grid_side(num_patches: int) -> int:
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f"frame tokens must form a square grid, got {num_patches} tokens per frame; "
                         "pass [b, t, h, w, d] for a non-square grid")
    return side


__all__ = ["STCConnector", "STCConnectorV35"]
