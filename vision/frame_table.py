"""The frame index of a video file, read by demuxing with PyAV (no decoding).

Every video read in avlm starts here. Demuxing lists each frame's presentation time and the keyframes, so
samplers can choose frames by index and time, and the decoders seek straight to them. It also validates the
file before any decoder sees it: decord can abort the interpreter on some damaged inputs, so files that are
truncated, empty or lack timestamps are turned into a :class:`~vision.container.MediaError` here first.

Notation:
    N: frames in the video stream, in presentation order.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction

from vision.container import MediaError, probe, require


@dataclass(frozen=True)
class FrameTable:
    """Presentation times of every frame of a file's first video stream.

    Attributes:
        path: the file.
        pts: N presentation timestamps in ``time_base`` units, increasing.
        keyframe_pts: presentation timestamps of the keyframes (seek points), increasing.
        timestamps: N presentation times in seconds since the container start (the clock audio shares).
        time_base: seconds per ``pts`` unit.
        fps: average frame rate from the header (N / duration when the header has none).
        duration: seconds of video in the file.
        width: frame width in pixels.
        height: frame height in pixels.
        codec: decoder name, e.g. ``"h264"``.
    """

    path: str
    pts: tuple[int, ...]
    keyframe_pts: tuple[int, ...]
    timestamps: tuple[float, ...]
    time_base: Fraction
    fps: float
    duration: float
    width: int
    height: int
    codec: str

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    def keyframes_before(self, target_pts: int) -> list[int]:
        """Keyframe timestamps at or before ``target_pts``, nearest first (the first frame when there is none)."""
        earlier = [key for key in self.keyframe_pts if key <= target_pts]
        return earlier[::-1] or [self.pts[0]]


def read_frame_table(path: str | os.PathLike) -> FrameTable:
    """Demux ``path`` and list its video frames.

    Raises:
        FileNotFoundError: the path does not exist.
        MediaError: not a media file, no video stream, damaged or truncated data, or packets without timestamps.
    """
    info = probe(path)
    path = info.path
    if info.video is None:
        raise MediaError(path, f"has no video stream (audio only? it holds a {info.audio.codec} audio stream); "
                               "use audio.load_audio for audio files")
    if info.video.width <= 0 or info.video.height <= 0:
        raise MediaError(path, f"the {info.video.codec} video stream has no frame size (damaged header)")
    av = require("av", "av>=14")
    try:
        with av.open(path, metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            start = (container.start_time or 0) / 1_000_000
            times, keyframes, discarded = [], [], 0
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the empty packet that ends the stream
                if packet.is_discard:  # cut by an edit list: decoders drop it
                    discarded += 1
                    continue
                time = packet.pts if packet.pts is not None else packet.dts
                if time is None:
                    raise MediaError(path, "its video packets carry no timestamps (a raw elementary stream?); "
                                           "remux it into a container first, e.g. ffmpeg -i IN -c copy OUT.mp4")
                times.append(time)
                if packet.is_keyframe:
                    keyframes.append(time)
            header_frames = int(stream.frames or 0)
            time_base = Fraction(stream.time_base)
            stream_duration = float(stream.duration * time_base) if stream.duration else math.nan
    except av.error.FFmpegError as error:
        raise MediaError(path, f"damaged video data ({error.strerror or error})") from error
    if not times:
        raise MediaError(path, "its video stream holds no frames")
    if header_frames and len(times) + discarded < header_frames:
        raise MediaError(path, f"is truncated or damaged: the header lists {header_frames} video frames but only "
                               f"{len(times) + discarded} are in the file")
    times.sort()
    timestamps = tuple(float(time * time_base) - start for time in times)
    fps = info.video.fps
    duration = _duration(stream_duration, info.duration, timestamps, fps)
    if not fps > 0:
        fps = len(times) / duration
    return FrameTable(path=path, pts=tuple(times), keyframe_pts=tuple(sorted(keyframes)), timestamps=timestamps,
                      time_base=time_base, fps=fps, duration=duration, width=info.video.width,
                      height=info.video.height, codec=info.video.codec)


def _duration(stream_duration: float, container_duration: float, timestamps: tuple[float, ...], fps: float) -> float:
    """Video duration: the stream header, else the container header, else the last frame's end."""
    last_end = timestamps[-1] + (1 / fps if fps > 0 else 0.0)
    for candidate in (stream_duration, container_duration):
        if candidate > 0 and candidate >= timestamps[-1]:
            return candidate
    return last_end if last_end > 0 else 1.0  # a single frame of unknown length at t=0: count it as one second
