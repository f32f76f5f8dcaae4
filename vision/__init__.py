"""vision: video decoding, frame sampling, image preprocessing and vision encoders.

Imports nothing heavy at import time (decord and PyAV are loaded inside the readers).
"""

import inspect
from pathlib import Path
from typing import Any

import torch

from vision.container import MediaError, MediaInfo, probe
from vision.decode import VideoClip, load_image, load_video
from vision.encoders import BTAdapterVisionEncoder, CLIPVisionEncoder, SiglipVisionEncoder
from vision.preprocess import CLIP, SIGLIP, ImageProcessorConfig, preprocess_frames

# Registry of vision encoders: name -> class. One line per entry; see build_vision_encoder.
VISION_ENCODERS: dict[str, type] = {
    "siglip": SiglipVisionEncoder,
    "clip": CLIPVisionEncoder,
    "bt_adapter_clip": BTAdapterVisionEncoder,  # frozen CLIP + BT-Adapter's temporal branch (mixes frames)
}


def encoder_options(encoder_class: type) -> list[str]:
    """The constructor options of a vision encoder class: the keyword parameters of its ``__init__`` after the model
    or config it wraps, followed through ``**options`` into the parent class's ``__init__`` (BT-Adapter's branch)."""
    names: list[str] = []
    for cls in encoder_class.__mro__:
        if "__init__" not in vars(cls):
            continue
        parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]  # self, the wrapped model/config
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return sorted(set(names))


def build_vision_encoder(
    name: str, path: str | Path | None = None, config: Any | None = None, **options: Any
) -> torch.nn.Module:
    """Build a registered vision encoder from a local checkpoint folder or from a config (random init).

    Args:
        name: registry key of ``VISION_ENCODERS`` ("siglip", "clip", "bt_adapter_clip").
        path: local checkpoint folder, loaded strictly with ``from_pretrained``.
        config: transformers config for a random-init encoder (``from_config``); give exactly one of path and config.
        **options: encoder options (``select_layer``, ``chunk_size``, ``attn_implementation``, ``frozen``).

    Returns:
        The encoder: forward [b, t, 3, H, W] -> [b, t, n, d].
    """
    if name not in VISION_ENCODERS:
        raise ValueError(f"unknown vision encoder {name!r}; choose one of {sorted(VISION_ENCODERS)}")
    if (path is None) == (config is None):
        raise ValueError(
            f"build_vision_encoder({name!r}) needs exactly one of path (checkpoint folder) and config (random init), "
            f"got path={path!r}, config={type(config).__name__}; use VISION_ENCODERS[{name!r}].tiny() for tests"
        )
    encoder_class = VISION_ENCODERS[name]
    valid = encoder_options(encoder_class)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown options {unknown} for vision encoder {name!r}; its options are {valid}")
    if path is not None:
        return encoder_class.from_pretrained(path, **options)
    return encoder_class.from_config(config, **options)


__all__ = ["MediaError", "MediaInfo", "probe", "VISION_ENCODERS", "build_vision_encoder", "encoder_options"]
__all__ += ["VideoClip", "load_video", "load_image", "ImageProcessorConfig", "preprocess_frames", "SIGLIP", "CLIP"]
