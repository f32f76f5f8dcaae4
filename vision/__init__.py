"""vision: video decoding, frame sampling, image preprocessing and vision encoders.

Imports nothing heavy at import time (decord and PyAV are loaded inside the readers).
"""

from vision.container import MediaError, MediaInfo, probe

# Registry of vision encoders: name -> class. One line per entry; see build_vision_encoder.
VISION_ENCODERS: dict[str, type] = {}

__all__ = ["MediaError", "MediaInfo", "probe", "VISION_ENCODERS"]
