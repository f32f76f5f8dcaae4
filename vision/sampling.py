"""Frame sampling: which source frames a clip keeps.

Pure index arithmetic on a list of presentation timestamps; no decoding happens here.

Notation:
    N: frames in the source (presentation order), ``timestamps[i]`` is frame i's time in seconds.
    t: frames returned.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence


def uniform_indices(num_source_frames: int, num_frames: int) -> list[int]:
    """``num_frames`` indices into ``num_source_frames`` frames at segment midpoints (VideoLLaMA2 ``frame_sample``).

    The span ``[0, num_source_frames - 1]`` is cut into ``num_frames`` equal segments and the middle of each
    is rounded half to even, exactly as ``np.round(mid + 1e-6)`` in the reference. When the source has fewer
    frames than asked for, indices repeat; the result always has ``num_frames`` entries.

    Args:
        num_source_frames: frames available (>= 1).
        num_frames: frames to pick (>= 1).
    """
    if num_source_frames < 1:
        raise ValueError(f"num_source_frames={num_source_frames}: need at least one frame to sample from")
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames}: must be >= 1")
    segment = float(num_source_frames - 1) / num_frames
    return [int(round((segment * i + segment * (i + 1)) / 2 + 1e-6)) for i in range(num_frames)]


def window_range(timestamps: Sequence[float], start: float, end: float) -> range:
    """Indices of the frames shown inside ``[start, end)`` (a frame belongs to the time it starts at).

    Args:
        timestamps: increasing presentation times in seconds, one per source frame.
        start: window start in seconds.
        end: window end in seconds (> start).

    Raises:
        ValueError: no frame starts inside the window.
    """
    first = bisect.bisect_left(timestamps, start)
    stop = bisect.bisect_left(timestamps, end)
    if stop <= first:
        # A window shorter than one frame still shows the frame on screen at its start.
        shown = bisect.bisect_right(timestamps, start) - 1
        if shown < 0 or shown >= len(timestamps):
            raise ValueError(f"the window start={start:.3f}s end={end:.3f}s contains no frame "
                             f"(frames span {timestamps[0]:.3f}s to {timestamps[-1]:.3f}s); widen start/end")
        return range(shown, shown + 1)
    return range(first, stop)


def rate_indices(timestamps: Sequence[float], start: float, end: float, fps: float, max_frames: int) -> list[int]:
    """Indices of the frames on screen at ``fps`` evenly spaced instants of ``[start, end)``, at most ``max_frames``.

    Instants are ``start + (k + 0.5) / fps`` (the middle of each 1/fps slot; at least one instant, the window
    middle, for windows shorter than one slot). Each instant takes the frame on screen then. When more than
    ``max_frames`` instants fit, ``max_frames`` of them are kept by :func:`uniform_indices`, so the frames still
    cover the whole window. A frame picked twice (``fps`` above the source rate) is kept once.

    Args:
        timestamps: increasing presentation times in seconds, one per source frame.
        start: window start in seconds.
        end: window end in seconds (> start).
        fps: sampling rate in frames per second (> 0).
        max_frames: cap on the number of frames (>= 1).
    """
    if not fps > 0 or math.isinf(fps):
        raise ValueError(f"fps={fps}: must be a positive, finite number of frames per second")
    if max_frames < 1:
        raise ValueError(f"max_frames={max_frames}: must be >= 1")
    slots = (end - start) * fps
    instants = [start + (k + 0.5) / fps for k in range(math.ceil(slots)) if k + 0.5 < slots] or [(start + end) / 2]
    if len(instants) > max_frames:
        instants = [instants[i] for i in uniform_indices(len(instants), max_frames)]
    picked: list[int] = []
    for instant in instants:
        index = max(0, bisect.bisect_right(timestamps, instant) - 1)
        if not picked or picked[-1] != index:
            picked.append(index)
    return picked
