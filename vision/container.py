"""Container probing shared by the video and audio loaders.

Every media reader in avlm calls :func:`probe` first. It answers, from the container header alone (no
decoding), what streams a file has, and turns every way a file can be unreadable into one
:class:`MediaError` whose message names the file and the problem in plain words.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


class MediaError(ValueError):
    """A media file exists but cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def require(module: str, install: str) -> ModuleType:
    """Import an optional heavy dependency, or raise ImportError saying how to install it.

    Args:
        module: importable module name, e.g. ``"decord"``.
        install: the pip requirement that provides it, e.g. ``"decord==0.6.0"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{module} is needed here but is not importable ({error}); "
                          f"install it with: pip install '{install}'") from error


@dataclass(frozen=True)
class VideoStreamInfo:
    codec: str
    width: int
    height: int
    fps: float  # average frame rate; NaN when the container does not say
    num_frames: int  # from the header; 0 when unknown
    duration: float  # seconds; NaN when unknown


@dataclass(frozen=True)
class AudioStreamInfo:
    codec: str
    sample_rate: int
    channels: int
    duration: float  # seconds; NaN when unknown


@dataclass(frozen=True)
class MediaInfo:
    """What a container holds, read from its header."""

    path: str
    container: str
    duration: float  # seconds, longest stream; NaN when unknown
    size_bytes: int
    video: VideoStreamInfo | None
    audio: AudioStreamInfo | None

    @property
    def has_video(self) -> bool:
        return self.video is not None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None


def check_file(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after the checks that need no decoder.

    Raises:
        FileNotFoundError: the path does not exist.
        MediaError: the path is a directory or an empty file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise MediaError(path, "is a directory, not a media file")
    if path.stat().st_size == 0:
        raise MediaError(path, "is an empty (0-byte) file")
    return path


def _seconds(value: int | None, time_base) -> float:
    if value is None or time_base is None:
        return math.nan
    return float(value * time_base)


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read the container header of ``path`` and describe its first video and audio streams.

    Raises:
        FileNotFoundError: the path does not exist.
        MediaError: empty file, not a media container, or a damaged header.
    """
    path = check_file(path)
    av = require("av", "av>=14")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as error:
        raise MediaError(path, f"not a readable media file (FFmpeg says: {error.strerror or error})") from error
    with container:
        video = audio = None
        if container.streams.video:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            video = VideoStreamInfo(
                codec=stream.codec_context.name,
                width=int(stream.codec_context.width),
                height=int(stream.codec_context.height),
                fps=float(rate) if rate else math.nan,
                num_frames=int(stream.frames or 0),
                duration=_seconds(stream.duration, stream.time_base),
            )
        if container.streams.audio:
            stream = container.streams.audio[0]
            audio = AudioStreamInfo(
                codec=stream.codec_context.name,
                sample_rate=int(stream.codec_context.sample_rate or 0),
                channels=int(stream.codec_context.channels or 0),
                duration=_seconds(stream.duration, stream.time_base),
            )
        total = container.duration / 1_000_000 if container.duration else math.nan
        if video is None and audio is None:
            raise MediaError(path, f"the {container.format.name} container holds no video or audio stream")
        return MediaInfo(path=str(path), container=container.format.name, duration=total,
                         size_bytes=path.stat().st_size, video=video, audio=audio)
