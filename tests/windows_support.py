"""Long clips for the window tests, written at test time with PyAV: scenes of one colour and one tone each, so every
window's frames and audio can be checked against the times at which they change."""

from __future__ import annotations

import math
import random
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

# (seconds, RGB colour, tone in Hz) per scene
SCENES = [(4.0, (220, 30, 30), 400.0), (4.0, (30, 200, 30), 800.0), (4.0, (30, 30, 220), 1600.0)]


def scene_at(time: float, scenes=SCENES) -> int:
    """Index of the scene playing at ``time`` seconds."""
    edges = np.cumsum([seconds for seconds, _, _ in scenes])
    return int(min(np.searchsorted(edges, time, side="right"), len(scenes) - 1))


def write_scene_clip(path: str | Path, scenes=SCENES, *, fps: float = 10, side: int = 32,
                     audio_rate: int | None = 16000, audio_codec: str = "aac", audio_seconds: float | None = None,
                     frame_times: list[float] | None = None, gop: int = 10) -> Path:
    """A clip of ``scenes``: each shows its colour (a white bar, longer each frame, keeps frames distinct) and plays
    its tone.

    Args:
        path: where to write (the suffix picks the container).
        fps: frame rate; ignored with ``frame_times``.
        side: frame width and height.
        audio_rate: audio sample rate; None: no audio track.
        audio_codec: ``aac`` or ``pcm_s16le`` (exact samples; use a .mkv or .mov path).
        audio_seconds: cut the soundtrack to this long (an audio track shorter than the video).
        frame_times: presentation times of the frames (a variable frame rate); default every ``1 / fps`` s.
        gop: frames per keyframe interval.
    """
    path = Path(path)
    total = sum(seconds for seconds, _, _ in scenes)
    times = frame_times if frame_times is not None else [i / fps for i in range(int(round(total * fps)))]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                     options={"preset": "ultrafast", "g": str(gop), "bf": "0"})
        video.width = video.height = side
        video.pix_fmt = "yuv420p"
        video.time_base = video.codec_context.time_base = Fraction(1, 1000)  # millisecond frame times
        sound = None
        if audio_rate is not None:
            sound = container.add_stream(audio_codec, rate=audio_rate)
            sound.layout = "mono"
        for number, time in enumerate(times):
            frame = av.VideoFrame.from_ndarray(_frame(scenes[scene_at(time, scenes)][1], number, side), format="rgb24")
            frame.pts, frame.time_base = round(time * 1000), Fraction(1, 1000)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            _write_tones(container, sound, scenes, audio_rate, audio_seconds if audio_seconds is not None else total)
    return path


def variable_frame_times(seed: int = 0) -> list[float]:
    """12 s of frame times for :func:`write_scene_clip`: frame durations of 50, 100 or 250 ms at random, and a still
    held from 7.0 s to 9.5 s."""
    rng, times = random.Random(seed), [0.0]
    while times[-1] < 11.7:
        times.append(round(times[-1] + rng.choice([0.05, 0.1, 0.25]), 3))
    return sorted({time for time in times if not 7.0 < time < 9.5} | {9.5})


def dominant_frequency(waveform: torch.Tensor, sample_rate: int) -> float:
    """The strongest frequency of a mono waveform, in Hz."""
    spectrum = torch.fft.rfft(waveform.double() * torch.hann_window(len(waveform), dtype=torch.float64)).abs()
    return float(spectrum.argmax()) * sample_rate / len(waveform)


def mean_colour(frames: torch.Tensor) -> list[float]:
    """Mean RGB of uint8 frames ``[t, h, w, 3]`` below the white bar."""
    return frames[:, 4:].double().mean(dim=(0, 1, 2)).tolist()


def _frame(colour, number: int, side: int) -> np.ndarray:
    array = np.empty((side, side, 3), dtype=np.uint8)
    array[:] = colour
    array[:4, : 1 + number % side] = 255
    return array


def _write_tones(container, stream, scenes, sample_rate: int, seconds: float) -> None:
    count = int(round(seconds * sample_rate))
    t = np.arange(count) / sample_rate
    frequency = np.array([scenes[scene_at(time, scenes)][2] for time in t[::160]]).repeat(160)[:count]
    phase = 2 * math.pi * np.cumsum(frequency) / sample_rate
    samples = (0.4 * np.sin(phase)).astype(np.float32)[None]
    if stream.codec_context.name.startswith("pcm"):
        samples = (samples * 32767).astype(np.int16)
    layout_format = "s16" if samples.dtype == np.int16 else "fltp"
    for start in range(0, count, 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]), format=layout_format,
                                           layout="mono")
        frame.sample_rate, frame.pts = sample_rate, start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def truncate(path: Path, out: Path, fraction: float) -> Path:
    """Copy the first ``fraction`` of ``path``'s bytes to ``out`` (a file cut short by a failed copy)."""
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def damage_packets(out: Path, start: float, end: float, *, fps: float = 10, side: int = 32,
                   seconds: float = 12.0) -> Path:
    """An .mkv clip like :func:`write_scene_clip` (no audio) whose video packets shown in ``[start, end)`` hold garbage
    after their first bytes: the container lists them, the decoder cannot decode them."""
    with av.open(str(out), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "g": str(int(fps)),
                                                                   "bf": "0"})
        video.width = video.height = side
        video.pix_fmt = "yuv420p"
        for number in range(int(seconds * fps)):
            time = number / fps
            frame = av.VideoFrame.from_ndarray(_frame(SCENES[scene_at(time)][1], number, side), format="rgb24")
            for packet in video.encode(frame):
                if start <= float(packet.pts * packet.time_base) < end:
                    memoryview(packet)[8:] = b"\x00" * (packet.size - 8)  # keep the NAL header, zero the slice data
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    return out
