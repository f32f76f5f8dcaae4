"""Sub-blocks shared by the connectors: channels-last LayerNorm2d and timm-compatible RegNet stages.

The key names match timm's ``RegStage`` / ``Bottleneck`` (``b1.conv1.conv.weight``, ``b1.conv1.bn.weight``, ...)
so VideoLLaMA2 connector weights load strictly, without depending on timm.

Notation: b batch (frames folded in), c channels, h, w grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a [b, c, h, w] map (eps 1e-5, like timm's ``LayerNormAct2d``).

    On a channels-last tensor the permute is a free view, so the norm runs in place of timm's
    permute -> contiguous -> norm -> permute round trip.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class ConvNorm(nn.Module):
    """Conv2d without bias, then LayerNorm2d, then an optional SiLU (keys ``conv.*``, ``bn.*``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, groups: int = 1,
                 activation: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups,
                              bias=False)
        self.bn = LayerNorm2d(out_channels)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.silu(x) if self.activation else x


class SqueezeExcite(nn.Module):
    """Per-channel gate: mean over (h, w) -> 1x1 conv -> SiLU -> 1x1 conv -> sigmoid (keys ``fc1``, ``fc2``)."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(F.silu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * gate.sigmoid()


class Bottleneck(nn.Module):
    """RegNet bottleneck (ratio 1, group size 1, SE 0.25 of the block input width), timm layout.

    conv1 1x1 -> conv2 3x3 depthwise -> SE -> conv3 1x1 (no activation), plus the shortcut (a 1x1 conv + norm
    when the width changes), then SiLU.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = ConvNorm(in_channels, out_channels, 1)
        self.conv2 = ConvNorm(out_channels, out_channels, 3, groups=out_channels)
        self.se = SqueezeExcite(out_channels, int(round(in_channels * 0.25)))
        self.conv3 = ConvNorm(out_channels, out_channels, 1, activation=False)
        self.downsample = ConvNorm(in_channels, out_channels, 1, activation=False) \
            if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.silu(self.conv3(self.se(self.conv2(self.conv1(x)))) + shortcut)


class RegStage(nn.Sequential):
    """``depth`` bottlenecks named ``b1`` ... ``b{depth}``; the first maps in -> out channels."""

    def __init__(self, depth: int, in_channels: int, out_channels: int):
        super().__init__()
        for index in range(depth):
            self.add_module(f"b{index + 1}", Bottleneck(in_channels if index == 0 else out_channels, out_channels))
