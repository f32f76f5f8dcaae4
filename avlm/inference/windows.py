"""Long videos window by window: time windows planned on a video's decoded timeline, one request per window.

The window rule (``--segment L --overlap O``, step ``L - O``): with ``t0`` the first frame's presentation time,
window ``k`` nominally spans ``[t0 + k (L - O), t0 + k (L - O) + L)``. Both ends are moved to frame times: a
window starts at the first frame shown at or after its nominal start and ends where the first frame at or after its
nominal end begins, or at the end of the video. So:

- ``start`` and ``end`` are presentation times read from the file's frame index (variable frame rate included), the
  windows' frames are exactly those shown in ``[start, end)``, and without overlap each window ends where the next
  one starts: the windows cover ``[t0, duration)`` exactly;
- the last window is shorter when the video ends; nothing lies beyond the video's duration;
- a frame held on screen across nominal boundaries (a still in a variable-frame-rate file) stays in the window it
  starts in, which then lasts longer than ``L``; nominal windows in which no frame starts are skipped, and windows
  are numbered ``0, 1, ...`` in time order;
- a file whose frames stop more than :data:`ENDS_EARLY` seconds before the duration its header states (a truncated
  file) gets windows up to its last frame and one more window entry, with an ``error``, for the missing stretch.

A window is a :class:`~avlm.inference.requests.Request` with the video path and ``start``/``end``: the unit of work
that runners (and distributed runners) schedule, resume and report, independently of the other windows.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from avlm.inference.requests import Request
from avlm.inference.runner import default_num_workers, run_requests
from avlm.modeling.model import AVLMForCausalLM
from avlm.processing.processor import Processor
from vision.frame_table import read_frame_table

ENDS_EARLY = 1.0
"""Seconds between the last frame's end and the stated duration above which a file counts as ending early."""
_TOLERANCE = 1e-6  # seconds: frame times computed from integer timestamps may differ from a boundary by rounding


@dataclass(frozen=True)
class Window:
    """One planned window of a video.

    Attributes:
        segment: its number in the video, from 0 in time order.
        start: presentation time of its first frame, seconds.
        end: where it ends: the next window's first frame time, or the end of the video.
        error: set for the stretch of a file that ends early (no frames to read there).
    """

    segment: int
    start: float
    end: float
    error: str | None = None

    def record(self, video: str) -> dict[str, Any]:
        """Its base output record ``{"video", "segment", "start", "end"}`` (``error`` added when set)."""
        record = {"video": video, "segment": self.segment, "start": round(self.start, 6), "end": round(self.end, 6)}
        return record if self.error is None else {**record, "error": self.error}


@dataclass
class WindowResult:
    """The answer for one window (Python API).

    Attributes:
        segment, start, end: as in :class:`Window`.
        text: the caption or answer (None on error).
        error: why the window could not be answered (names the file and the window), None on success.
        num_frames: frames given to the model.
        has_audio: whether the window's audio went in.
    """

    segment: int
    start: float
    end: float
    text: str | None
    error: str | None = None
    num_frames: int = 0
    has_audio: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def check_window_options(segment: float, overlap: float = 0.0) -> None:
    """Raise ValueError unless ``segment > 0`` and ``0 <= overlap < segment``."""
    if not segment > 0:
        raise ValueError(f"--segment {segment}: must be a positive number of seconds")
    if not 0 <= overlap < segment:
        raise ValueError(f"--overlap {overlap}: must be >= 0 and less than --segment {segment} seconds")


def plan_windows(timestamps: Sequence[float], duration: float, segment: float, overlap: float = 0.0) -> list[Window]:
    """Windows of ``segment`` seconds, ``overlap`` seconds apart from the next, on frames shown at ``timestamps``.

    Args:
        timestamps: increasing presentation times of every frame, seconds.
        duration: where the video ends, seconds (>= the last timestamp).
        segment: nominal window length.
        overlap: seconds shared by consecutive nominal windows.
    """
    check_window_options(segment, overlap)
    windows: list[Window] = []
    for nominal in _nominal_starts(timestamps[0], duration, segment - overlap):
        start = _snap(timestamps, nominal, duration)
        end = _snap(timestamps, nominal + segment, duration)
        if end > start and (not windows or start > windows[-1].start):
            windows.append(Window(len(windows), start, end))
        if end >= duration:
            break
    return windows


def plan_video(path: str | os.PathLike, segment: float, overlap: float = 0.0) -> list[Window]:
    """Read ``path``'s frame index (demuxing, no decoding) and plan its windows (see the module docstring).

    Raises:
        FileNotFoundError, MediaError: the file cannot be read (no frames at all, not a video, ...).
    """
    table = read_frame_table(path)
    frames_end = table.timestamps[-1] + 1 / table.fps
    if table.duration - frames_end <= ENDS_EARLY:
        return plan_windows(table.timestamps, table.duration, segment, overlap)
    windows = plan_windows(table.timestamps, frames_end, segment, overlap)
    problem = (f"{table.path}: no video frames after {frames_end:.3f} s although the file states a duration of "
               f"{table.duration:.3f} s (truncated or damaged file?)")
    return [*windows, Window(len(windows), frames_end, table.duration, error=problem)]


def window_requests(video: str, windows: Sequence[Window], question: str, audio: Any) -> list[Request]:
    """One request per readable window (``error`` entries have none)."""
    return [Request(question, video, audio, start=window.start, end=window.end)
            for window in windows if window.error is None]


def answer_windows(model: AVLMForCausalLM, processor: Processor, video: str | os.PathLike, question: str, *,
                   segment: float, overlap: float = 0.0, frames_per_segment: int | None = None, audio: Any,
                   batch_size: int, num_workers: int | None, generate_kwargs: dict[str, Any]) -> list[WindowResult]:
    """Plan the windows of one video and answer ``question`` for each (the Python API's ``segment=``).

    ``num_workers`` None: one decoding worker per core but one, at most one per window but one.

    Raises:
        FileNotFoundError, MediaError: the file cannot be read at all (a window that cannot be read gives a
            :class:`WindowResult` with ``error``).
    """
    if frames_per_segment is not None:
        processor = copy.copy(processor)
        processor.config = dataclasses.replace(processor.config, num_frames=frames_per_segment)
    video = os.fspath(video)
    windows = plan_video(video, segment, overlap)
    readable = [window for window in windows if window.error is None]
    results = {window.segment: WindowResult(window.segment, window.start, window.end, None, window.error)
               for window in windows}
    requests = window_requests(video, readable, question, audio)
    if num_workers is None:
        num_workers = min(default_num_workers(), max(len(requests) - 1, 0))
    for batch in run_requests(model, processor, requests, batch_size=batch_size, num_workers=num_workers,
                              generate_kwargs=generate_kwargs):
        for result in batch:
            window = readable[result.index]
            results[window.segment] = WindowResult(window.segment, window.start, window.end, result.text,
                                                   result.error, result.num_frames, result.has_audio)
    return [results[window.segment] for window in windows]


def _nominal_starts(first: float, duration: float, step: float):
    k = 0
    while first + k * step < duration:
        yield first + k * step
        k += 1


def _snap(timestamps: Sequence[float], instant: float, duration: float) -> float:
    """The first frame time at or after ``instant``, or ``duration`` when no frame starts after it."""
    index = bisect.bisect_left(timestamps, instant - _TOLERANCE)
    return timestamps[index] if index < len(timestamps) else duration
