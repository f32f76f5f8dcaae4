"""Frames of successive time windows of one video, decoded in one pass: :class:`WindowReader`.

Captioning a long video window by window with :func:`vision.load_video` would open the file, demux its whole frame
index and start a decoder once per window. A :class:`WindowReader` reads the frame index once and keeps one PyAV
decoder open: each :meth:`WindowReader.read` samples the window's frames as ``load_video`` would (uniform segment
midpoints, or ``fps`` instants) and decodes forward from where the previous window stopped, seeking only when a
keyframe lies between the decoder and the next wanted frame (or when asked for an earlier window). Windows read in
order therefore cost one pass over the container. The frames are those ``load_video(..., start, end)`` returns,
bit for bit (PyAV and decord decode the same frames; see ``tests/test_windows_reader.py``).

A window whose frames cannot be decoded raises :class:`~vision.container.MediaError` for that window only; the
reader seeks afresh for the next one, so the other windows of a damaged file still read.

Notation:
    t: frames returned per window.
    h, w: frame height and width in pixels.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterator, Sequence

import torch

from vision.container import MediaError, require
from vision.decode import VideoClip, _check_arguments, _first_at_or_after, _output_size, _seek_to
from vision.frame_table import FrameTable, read_frame_table
from vision.sampling import rate_indices, uniform_indices, window_range


class WindowReader:
    """Decode the frames of time windows of one file, keeping the decoder open between windows.

    Usage::

        with WindowReader("talk.mp4", num_frames=16) as reader:
            for start in range(0, int(reader.table.duration), 30):
                clip = reader.read(start, start + 30)   # a VideoClip: frames, timestamps, start, end

    Args:
        source: the video file, or its frame table from :func:`vision.frame_table.read_frame_table`.
        num_frames: frames per window for uniform sampling.
        fps: sample each window at this rate instead (at most ``max_frames``).
        max_frames: cap for ``fps`` sampling (default ``num_frames``).
        max_resolution: scale frames down so their longer side is at most this many pixels.

    Raises:
        FileNotFoundError, MediaError: the file cannot be indexed (as :func:`vision.load_video`).
    """

    def __init__(self, source: str | os.PathLike | FrameTable, num_frames: int = 16, fps: float | None = None,
                 max_frames: int | None = None, max_resolution: int | None = None) -> None:
        _check_arguments(num_frames, fps, max_frames, "pyav", max_resolution)
        self.table = source if isinstance(source, FrameTable) else read_frame_table(source)
        self.num_frames, self.fps, self.max_frames = num_frames, fps, max_frames or num_frames
        self._size = _output_size(self.table, max_resolution)
        self._container = None
        self._decoded = None  # the running frame iterator of the decoder, None after a seek is due
        self._last: int | None = None  # pts of the last frame taken from it

    def read(self, start: float, end: float) -> VideoClip:
        """The sampled frames of ``[start, end)`` seconds (``end`` is clipped to the video's end).

        Raises:
            MediaError: no frame is shown in the window, or its frames cannot be decoded (the message names the file
                and the window); the reader stays usable for other windows.
            ValueError: ``start``/``end`` out of order.
        """
        import numpy as np

        table = self.table
        end = min(float(end), table.duration)
        if not 0 <= start < end:
            raise ValueError(f"window start={start} end={end}: need 0 <= start < end <= {table.duration:.3f} s")
        indices = self.indices(start, end)
        unique = sorted(set(indices))
        try:
            arrays = [self._decode(index) for index in unique]
        except MediaError as error:
            self._decoded = None
            raise MediaError(table.path, f"frames in {start:.3f}-{end:.3f} s cannot be decoded ({error.problem})"
                             ) from error
        position = {index: row for row, index in enumerate(unique)}
        rows = torch.tensor([position[index] for index in indices], dtype=torch.long)
        frames = torch.from_numpy(np.stack(arrays))[rows]
        return VideoClip(frames=frames, timestamps=torch.tensor([table.timestamps[i] for i in indices],
                                                                dtype=torch.float64),
                         indices=torch.tensor(indices, dtype=torch.long), fps=table.fps, duration=table.duration,
                         path=table.path, start=float(start), end=end, backend="pyav",
                         num_source_frames=table.num_frames)

    def indices(self, start: float, end: float) -> list[int]:
        """The frame numbers :meth:`read` takes for ``[start, end)``: ``load_video``'s sampling rule."""
        try:
            if self.fps is not None:
                return rate_indices(self.table.timestamps, start, end, self.fps, self.max_frames)
            window = window_range(self.table.timestamps, start, end)
        except ValueError as error:
            raise MediaError(self.table.path, str(error)) from error
        return [window[i] for i in uniform_indices(len(window), self.num_frames)]

    def _decode(self, index: int):
        """uint8 ``[h, w, 3]`` of frame ``index``, continuing the running decoder when no keyframe lies between."""
        av = require("av", "av>=14")
        table, target = self.table, self.table.pts[index]
        try:
            if self._container is None:
                self._container = av.open(table.path, metadata_errors="ignore")
            stream = self._container.streams.video[0]
            if self._decoded is None or self._last >= target or self._nearest_keyframe(target) > self._last:
                self._decoded, frame = _seek_to(self._container, stream, table, target)
            else:
                frame = _first_at_or_after(self._decoded, target)
        except av.error.FFmpegError as error:
            raise MediaError(table.path, f"damaged video data: {error.strerror or error}") from error
        if frame is None or frame.pts != target:
            raise MediaError(table.path, f"frame {index} at {table.timestamps[index]:.3f}s cannot be decoded")
        self._last = frame.pts
        options = {} if self._size is None else {"width": self._size[0], "height": self._size[1]}
        return frame.to_ndarray(format="rgb24", **options)

    def _nearest_keyframe(self, target: int) -> int:
        keys = self.table.keyframe_pts
        position = bisect.bisect_right(keys, target) - 1
        return keys[position] if position >= 0 else -math.inf

    def close(self) -> None:
        """Close the decoder (reading again reopens it)."""
        if self._container is not None:
            self._container.close()
        self._container, self._decoded, self._last = None, None, None

    def __enter__(self) -> WindowReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def load_windows(path: str | os.PathLike, spans: Sequence[tuple[float, float]], num_frames: int = 16,
                 fps: float | None = None, max_frames: int | None = None,
                 max_resolution: int | None = None) -> Iterator[VideoClip | MediaError]:
    """Read ``spans`` (``(start, end)`` seconds, best in increasing order) of one file in one pass.

    Yields a :class:`VideoClip` per span, or the :class:`MediaError` of a span that cannot be read (the others go on).

    Raises:
        FileNotFoundError, MediaError: the file itself cannot be indexed.
    """
    with WindowReader(path, num_frames=num_frames, fps=fps, max_frames=max_frames,
                      max_resolution=max_resolution) as reader:
        for start, end in spans:
            try:
                yield reader.read(start, end)
            except MediaError as error:
                yield error
