"""Video decoding: :func:`load_video` returns the sampled frames of a file as a :class:`VideoClip`.

Only the chosen frames are decoded: the frame index comes from demuxing (:mod:`vision.frame_table`), the
indices from :mod:`vision.sampling`, and the decoders seek to the keyframe before each frame. decord is the
primary decoder; PyAV reads what decord cannot (and everything when decord is not installed). The clip says
which one read it.

Notation:
    t: frames returned.
    h, w: frame height and width in pixels.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from vision.container import MediaError, check_file, require
from vision.frame_table import FrameTable, read_frame_table
from vision.sampling import rate_indices, uniform_indices, window_range

if TYPE_CHECKING:
    import numpy as np

BACKENDS = ("auto", "decord", "pyav")


@dataclass
class VideoClip:
    """Frames sampled from a video (or one image) and where they came from.

    Attributes:
        frames: uint8 ``[t, h, w, 3]`` RGB frames.
        timestamps: float64 ``[t]`` presentation times of the frames, seconds since the container start.
        indices: int64 ``[t]`` frame numbers in the source (presentation order).
        fps: average frame rate of the source (NaN for an image).
        duration: seconds of video in the whole source (0 for an image).
        path: the file read.
        start: start of the time span the sampling covered, in seconds (audio from the same span matches).
        end: end of that span, in seconds.
        backend: what decoded the frames: ``"decord"``, ``"pyav"`` or ``"pil"``.
        num_source_frames: frames in the whole source.
    """

    frames: torch.Tensor
    timestamps: torch.Tensor
    indices: torch.Tensor
    fps: float
    duration: float
    path: str
    start: float
    end: float
    backend: str
    num_source_frames: int


def load_video(path: str | os.PathLike, num_frames: int = 16, fps: float | None = None, start: float | None = None,
               end: float | None = None, max_frames: int | None = None,
               backend: Literal["auto", "decord", "pyav"] = "auto", max_resolution: int | None = None) -> VideoClip:
    """Decode ``num_frames`` frames spread uniformly over a video, or frames at a given rate.

    Uniform sampling (default) takes the segment midpoints of VideoLLaMA2's ``frame_sample`` over the frames
    inside ``[start, end)``; it always returns ``num_frames`` frames (repeating frames of very short videos).
    With ``fps`` the frames on screen at ``fps`` evenly spaced instants are taken, at most ``max_frames``.

    Args:
        path: video file (any container FFmpeg reads).
        num_frames: frames for uniform sampling.
        fps: sample at this rate instead of uniformly.
        start: window start in seconds (default 0).
        end: window end in seconds (default: the end of the video; later values are clipped to it).
        max_frames: cap for ``fps`` sampling (default ``num_frames``).
        backend: ``"decord"``, ``"pyav"``, or ``"auto"`` (decord, then PyAV when decord fails or is missing).
        max_resolution: scale frames down while decoding so their longer side is at most this many pixels.

    Raises:
        FileNotFoundError: the path does not exist.
        MediaError: the file is unusable (the message names it and the problem).
        ValueError: an argument is out of range.
    """
    _check_arguments(num_frames, fps, max_frames, backend, max_resolution)
    table = read_frame_table(path)
    start, end = _window(table, start, end)
    if fps is None:
        window = window_range(table.timestamps, start, end)
        indices = [window[i] for i in uniform_indices(len(window), num_frames)]
    else:
        indices = rate_indices(table.timestamps, start, end, fps, max_frames or num_frames)
    return decode_frames(table, indices, start=start, end=end, backend=backend, max_resolution=max_resolution)


def decode_frames(table: FrameTable, indices: list[int], *, start: float, end: float,
                  backend: Literal["auto", "decord", "pyav"] = "auto", max_resolution: int | None = None) -> VideoClip:
    """Decode chosen frames of ``table.path`` into a clip (the step after sampling; presets call it directly).

    Args:
        table: the file's frame table from :func:`vision.frame_table.read_frame_table`.
        indices: frame numbers in presentation order; repeats are decoded once and copied.
        start: start of the sampled span in seconds, reported on the clip.
        end: end of the sampled span in seconds, reported on the clip.
        backend: as in :func:`load_video`.
        max_resolution: as in :func:`load_video`.
    """
    unique = sorted(set(indices))
    size = _output_size(table, max_resolution)
    arrays, used = _decode(table, unique, size, backend)
    position = {index: row for row, index in enumerate(unique)}
    rows = torch.tensor([position[index] for index in indices], dtype=torch.long)
    return VideoClip(frames=torch.from_numpy(arrays)[rows], indices=torch.tensor(indices, dtype=torch.long),
                     timestamps=torch.tensor([table.timestamps[i] for i in indices], dtype=torch.float64),
                     fps=table.fps, duration=table.duration, path=table.path, start=start, end=end, backend=used,
                     num_source_frames=table.num_frames)


def load_image(path: str | os.PathLike) -> VideoClip:
    """Read an image file (anything Pillow opens) as a one-frame clip with ``backend="pil"``."""
    import numpy as np

    path = check_file(path)
    image_module = require("PIL.Image", "pillow")
    try:
        with image_module.open(path) as image:
            array = np.array(image.convert("RGB"))
    except OSError as error:  # PIL.UnidentifiedImageError and truncated-data errors are OSErrors
        raise MediaError(path, f"not a readable image ({error})") from error
    return VideoClip(frames=torch.from_numpy(array)[None], timestamps=torch.zeros(1, dtype=torch.float64),
                     indices=torch.zeros(1, dtype=torch.long), fps=math.nan, duration=0.0, path=str(path),
                     start=0.0, end=0.0, backend="pil", num_source_frames=1)


def _check_arguments(num_frames, fps, max_frames, backend, max_resolution) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames={num_frames!r}: must be an integer >= 1")
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps={fps!r}: must be a positive number of frames per second, or None for uniform sampling")
    if max_frames is not None and (fps is None or not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max_frames={max_frames!r}: must be an integer >= 1 and is used only with fps=; "
                         "for uniform sampling set num_frames")
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: choose one of {BACKENDS}")
    if max_resolution is not None and (not isinstance(max_resolution, int) or max_resolution < 2):
        raise ValueError(f"max_resolution={max_resolution!r}: must be an integer >= 2 (pixels) or None")


def _window(table: FrameTable, start: float | None, end: float | None) -> tuple[float, float]:
    """The sampled span ``[start, end)`` in seconds, with ``end`` clipped to the video's end."""
    start = 0.0 if start is None else float(start)
    end = table.duration if end is None else min(float(end), table.duration)
    if not start >= 0:
        raise ValueError(f"start={start}: must be >= 0 seconds")
    if start >= table.duration:
        raise ValueError(f"start={start}: the video {table.path} lasts only {table.duration:.3f}s")
    if not end > start:
        raise ValueError(f"end={end}: must be after start={start} seconds")
    return start, end


def _output_size(table: FrameTable, max_resolution: int | None) -> tuple[int, int] | None:
    """``(width, height)`` to scale to, or None to keep the source size."""
    if max_resolution is None or max(table.width, table.height) <= max_resolution:
        return None
    scale = max_resolution / max(table.width, table.height)
    return max(1, round(table.width * scale)), max(1, round(table.height * scale))


def _decode(table: FrameTable, indices: list[int], size, backend: str) -> tuple[np.ndarray, str]:
    if backend in ("auto", "decord"):
        try:
            return _decode_decord(table, indices, size), "decord"
        except ImportError:
            if backend == "decord":
                raise
        except _DecordFailure as failure:
            if backend == "decord":
                raise MediaError(table.path, f"decord cannot read its {table.codec} video ({failure}); "
                                             "try backend='pyav'") from failure
    return _decode_pyav(table, indices, size), "pyav"


class _DecordFailure(Exception):
    """decord refused the file or disagrees with the container index."""


def _decode_decord(table: FrameTable, indices: list[int], size) -> np.ndarray:
    import numpy as np

    decord = require("decord", "decord==0.6.0")
    options = {} if size is None else {"width": size[0], "height": size[1]}
    try:
        reader = decord.VideoReader(table.path, ctx=decord.cpu(0), num_threads=0, **options)  # 0: FFmpeg threads
        if len(reader) != table.num_frames:
            raise _DecordFailure(f"it counts {len(reader)} frames where the container lists {table.num_frames}")
        times = reader.get_frame_timestamp([0, *indices])[:, 0]
        expected = np.array([table.timestamps[i] for i in (0, *indices)])
        if np.abs((times - times[0]) - (expected - expected[0])).max() > 0.5 / table.fps:
            raise _DecordFailure("its frame times differ from the container's presentation times")
        return reader.get_batch(indices).asnumpy()
    except (RuntimeError, decord.DECORDError) as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        message = re.sub(r"\[[\d:]+\] \S+:\d+: ", "", lines[-1] if lines else type(error).__name__)  # log prefixes
        raise _DecordFailure(message) from error


def _decode_pyav(table: FrameTable, indices: list[int], size) -> np.ndarray:
    """Decode the sorted ``indices``, seeking only when a keyframe lies between the decoder and the next frame."""
    import numpy as np

    av = require("av", "av>=14")
    options = {} if size is None else {"width": size[0], "height": size[1]}
    arrays = []
    try:
        with av.open(table.path, metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            decoded, last = None, None
            for index in indices:
                target = table.pts[index]
                if decoded is None or last >= target or table.keyframes_before(target)[0] > last:
                    decoded, frame = _seek_to(container, stream, table, target)
                else:
                    frame = _first_at_or_after(decoded, target)
                if frame is None or frame.pts != target:
                    raise MediaError(table.path, f"frame {index} at {table.timestamps[index]:.3f}s cannot be decoded")
                last = frame.pts
                arrays.append(frame.to_ndarray(format="rgb24", **options))
    except av.error.FFmpegError as error:
        raise MediaError(table.path, f"damaged video data, PyAV cannot decode it ({error.strerror or error})"
                         ) from error
    return np.stack(arrays)


def _first_at_or_after(decoded, target: int):
    return next((frame for frame in decoded if frame.pts is not None and frame.pts >= target), None)


def _seek_to(container, stream, table: FrameTable, target: int):
    """Seek to the nearest keyframe whose decoding reaches ``target``; returns (decoder, frame at target or None)."""
    for key in table.keyframes_before(target):
        container.seek(key, stream=stream)
        decoded = container.decode(stream)
        first = _first_at_or_after(decoded, -math.inf)
        if first is not None and first.pts <= target:
            return decoded, first if first.pts == target else _first_at_or_after(decoded, target)
    return None, None
