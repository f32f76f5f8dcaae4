"""Image preprocessing for the vision encoders: uint8 frames -> normalised ``[t, 3, S, S]`` float tensors.

Batched torch on any device. The resampler reproduces Pillow's ``Image.resize`` on 8-bit RGB bit for bit
(same filter coefficients, same 22-bit fixed-point arithmetic, horizontal pass then vertical pass with a
uint8 intermediate), which is what the Hugging Face SigLIP/CLIP processors and VideoLLaMA2 run.

Notation:
    t: frames.
    h, w: input frame height and width.
    S: output side (``config.size``).
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from einops import rearrange

from vision.container import require

_PRECISION_BITS = 22  # Pillow's Resample.c: 32 - 8 - 2
_RESAMPLE_CODES = {3: "bicubic", 2: "bilinear"}  # Hugging Face / PIL resample ids


@dataclass(frozen=True)
class ImageProcessorConfig:
    """How frames become encoder input; mirrors a Hugging Face ``preprocessor_config.json``."""

    size: int = 384  # output side S: frames come out [t, 3, S, S]
    mode: Literal["resize", "pad", "crop"] = "resize"
    """"resize": squash to S x S (SigLIP); "crop": resize the shortest side to shortest_edge, then center-crop
    S x S (CLIP); "pad": pad to a square with the mean colour (VideoLLaMA2 training), then as "crop"."""
    shortest_edge: int | None = None  # "crop" mode: shortest side before the crop; None means S
    resample: Literal["bicubic", "bilinear"] = "bicubic"  # Pillow filter
    rescale_factor: float = 1 / 255  # uint8 -> [0, 1]
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # per-channel mean subtracted after rescaling
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)  # per-channel std divided by after that

    def __post_init__(self) -> None:
        errors = []
        if not isinstance(self.size, int) or self.size < 1:
            errors.append(f"size={self.size!r}: must be a positive integer (pixels)")
        if self.mode not in ("resize", "pad", "crop"):
            errors.append(f"mode={self.mode!r}: choose 'resize', 'pad' or 'crop'")
        if self.shortest_edge is not None and (not isinstance(self.size, int) or self.shortest_edge < self.size):
            errors.append(f"shortest_edge={self.shortest_edge!r}: must be >= size={self.size} (it is cropped to size)")
        if self.resample not in _RESAMPLE_CODES.values():
            errors.append(f"resample={self.resample!r}: choose one of {sorted(_RESAMPLE_CODES.values())}")
        if not self.rescale_factor > 0:
            errors.append(f"rescale_factor={self.rescale_factor!r}: must be > 0")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            errors.append(f"image_mean={self.image_mean}, image_std={self.image_std}: need 3 values each, std > 0")
        if errors:
            raise ValueError("invalid ImageProcessorConfig: " + "; ".join(errors))

    @property
    def pad_colour(self) -> tuple[int, int, int]:
        """Fill colour of "pad" mode, as VideoLLaMA2 computes it: ``int(mean * 255)`` per channel."""
        return tuple(int(x * 255) for x in self.image_mean)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, mode: Literal["resize", "pad", "crop"] | None = None
                        ) -> ImageProcessorConfig:
        """Read ``folder/preprocessor_config.json`` (SiglipImageProcessor or CLIPImageProcessor layout).

        Args:
            folder: model folder holding ``preprocessor_config.json``.
            mode: override the geometry the file implies, e.g. ``"pad"`` for VideoLLaMA2 training.
        """
        file = Path(folder) / "preprocessor_config.json"
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no such file (expected a Hugging Face image processor config)")
        raw = json.loads(file.read_text())
        problems = [f"{flag}=false" for flag in ("do_resize", "do_rescale", "do_normalize")
                    if raw.get(flag) is False]  # absent means the processor's default, true
        size = raw.get("size", {})
        crop = raw.get("crop_size") if raw.get("do_center_crop") else None
        if "shortest_edge" in size and crop is not None and crop.get("height") == crop.get("width"):
            geometry = {"mode": "crop", "size": crop["height"], "shortest_edge": size["shortest_edge"]}
        elif "height" in size and size.get("height") == size.get("width") and crop is None:
            geometry = {"mode": "resize", "size": size["height"]}
        else:
            geometry = {}
            problems.append(f"size={size}, crop_size={crop} (only square outputs are supported)")
        if raw.get("resample", 3) not in _RESAMPLE_CODES:
            problems.append(f"resample={raw['resample']} (supported: {_RESAMPLE_CODES})")
        if problems:
            raise ValueError(f"{file}: unsupported image processor settings: {'; '.join(problems)}")
        if mode is not None:
            geometry["mode"] = mode
        return cls(**geometry, resample=_RESAMPLE_CODES[raw.get("resample", 3)],
                   rescale_factor=float(raw.get("rescale_factor", 1 / 255)),
                   image_mean=tuple(raw["image_mean"]), image_std=tuple(raw["image_std"]))


SIGLIP = ImageProcessorConfig(size=384, mode="resize", image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5))
CLIP = ImageProcessorConfig(size=336, mode="crop", image_mean=(0.48145466, 0.4578275, 0.40821073),
                            image_std=(0.26862954, 0.26130258, 0.27577711))


def preprocess_frames(frames: torch.Tensor, config: ImageProcessorConfig) -> torch.Tensor:
    """Turn RGB frames into encoder input.

    Args:
        frames: uint8 ``[t, h, w, 3]`` (an image is ``t = 1``), on any device.
        config: geometry and normalisation.

    Returns:
        float32 ``[t, 3, S, S]`` on the device of ``frames``.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected a uint8 tensor [t, h, w, 3], got {frames.dtype} {tuple(frames.shape)}")
    size = config.size
    if config.mode == "pad":
        frames = pad_to_square(frames, config.pad_colour)
    if config.mode == "resize":
        frames = resize(frames, size, size, config.resample)
    else:  # "crop", and "pad" continues like the processor on the padded square (a plain resize to S x S)
        height, width = frames.shape[1:3]
        short, long = sorted((height, width))
        edge = config.shortest_edge or size
        scaled = (edge, int(edge * long / short))  # Hugging Face get_resize_output_image_size
        new_height, new_width = scaled if height <= width else scaled[::-1]
        frames = resize(frames, new_height, new_width, config.resample)
        top, left = (new_height - size) // 2, (new_width - size) // 2
        frames = frames[:, top:top + size, left:left + size]
    pixels = (rearrange(frames, "t h w c -> t c h w").double() * config.rescale_factor).float()
    mean = torch.tensor(config.image_mean, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(config.image_std, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    return (pixels - mean) / std


def pad_to_square(frames: torch.Tensor, colour: tuple[int, int, int]) -> torch.Tensor:
    """VideoLLaMA2 ``expand2square``: centre uint8 ``[t, h, w, 3]`` frames on a square canvas of ``colour``."""
    t, height, width, _ = frames.shape
    if height == width:
        return frames
    side = max(height, width)
    canvas = torch.tensor(colour, dtype=torch.uint8, device=frames.device).expand(t, side, side, 3).clone()
    top, left = (side - height) // 2, (side - width) // 2
    canvas[:, top:top + height, left:left + width] = frames
    return canvas


def resize(frames: torch.Tensor, height: int, width: int, resample: str = "bicubic") -> torch.Tensor:
    """Resize uint8 ``[t, h, w, 3]`` frames exactly as Pillow's ``Image.resize((width, height), resample)``.

    CPU tensors go through Pillow itself (the reference, and the fastest CPU path); tensors on other devices
    through :func:`resize_torch`, which reproduces it bit for bit.
    """
    if frames.device.type != "cpu":
        return resize_torch(frames, height, width, resample)
    import numpy as np

    image_module = require("PIL.Image", "pillow")
    filters = {"bicubic": image_module.Resampling.BICUBIC, "bilinear": image_module.Resampling.BILINEAR}
    arrays = [np.asarray(image_module.fromarray(frame).resize((width, height), filters[resample]))
              for frame in frames.contiguous().numpy()]
    return torch.from_numpy(np.stack(arrays))


def resize_torch(frames: torch.Tensor, height: int, width: int, resample: str = "bicubic") -> torch.Tensor:
    """Pillow 13's 8-bit resize in batched torch: the same taps and fixed-point passes, on any device.

    Pillow runs the vertical pass first when it removes more than twice as many rows as the horizontal pass
    removes columns (``in_h - height > 2 * (in_w - width)``), else the horizontal pass first; the rounding of
    the uint8 intermediate makes the order visible. (Rule measured against Pillow 13.0.0; a test guards it.)
    """
    in_height, in_width = frames.shape[1:3]
    passes = [(2, width), (1, height)]
    if height < in_height and in_height - height > 2 * (in_width - width):
        passes.reverse()
    for axis, size in passes:
        if size != frames.shape[axis]:
            frames = _resample_axis(frames, axis, size, resample)
    return frames


def _resample_axis(frames: torch.Tensor, axis: int, out_size: int, resample: str) -> torch.Tensor:
    """One Pillow pass along ``axis``: int32 fixed-point taps, rounded and clipped back to uint8."""
    index, weight = _taps(frames.shape[axis], out_size, resample)
    index, weight = index.to(frames.device), weight.to(frames.device)
    pixels = frames.to(torch.int32)
    shape = [1, 1, 1, 1]
    shape[axis] = out_size
    total = torch.full((), 1 << (_PRECISION_BITS - 1), dtype=torch.int32, device=frames.device)
    for tap in range(index.shape[1]):
        total = total + pixels.index_select(axis, index[:, tap]) * weight[:, tap].view(shape)
    return (total >> _PRECISION_BITS).clamp(0, 255).to(torch.uint8)


def _bicubic(x: float) -> float:
    a, x = -0.5, abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _triangle(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


_FILTERS = {"bicubic": (_bicubic, 2.0), "bilinear": (_triangle, 1.0)}


@functools.lru_cache(maxsize=64)
def _taps(in_size: int, out_size: int, resample: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc``: (source index, int32 weight), ``[out, k]`` each.

    Unused taps point at pixel 0 with weight 0.
    """
    function, support = _FILTERS[resample]
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support *= filter_scale
    inverse = 1.0 / filter_scale
    width = int(math.ceil(support)) * 2 + 1
    index = torch.zeros(out_size, width, dtype=torch.long)
    weight = torch.zeros(out_size, width, dtype=torch.int32)
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - first
        taps = [function((x + first - center + 0.5) * inverse) for x in range(count)]
        total = 0.0
        for tap in taps:
            total += tap
        for x, tap in enumerate(taps):
            tap = tap / total if total != 0.0 else tap
            index[out, x] = first + x
            weight[out, x] = int(tap * (1 << _PRECISION_BITS) + (0.5 if tap >= 0 else -0.5))
    return index, weight
