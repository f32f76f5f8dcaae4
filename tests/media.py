"""Media files written at test time with PyAV (nothing is committed or downloaded)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def tone(seconds: float, sample_rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """A sine tone, float32 [channels, n]; channel c has frequency freq * (c + 1)."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    return np.stack([0.5 * np.sin(2 * math.pi * freq * (c + 1) * t) for c in range(channels)]).astype(np.float32)


def moving_square_frames(num_frames: int, width: int, height: int) -> np.ndarray:
    """uint8 [t, h, w, 3]; frame i has a white square at x = i (mod w) and grey level i (mod 256) as background."""
    frames = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    side = max(2, min(width, height) // 4)
    for i in range(num_frames):
        frames[i] = (i * 7) % 256
        x = (i * 3) % max(1, width - side)
        frames[i, :side, x:x + side] = 255
    return frames


def write_video(path: str | Path, *, seconds: float = 2.0, fps: float = 10, width: int = 64, height: int = 48,
                codec: str = "libx264", audio_rate: int | None = 48000, audio_channels: int = 1,
                audio_codec: str = "aac", frames: np.ndarray | None = None, vfr: bool = False) -> Path:
    """Write a video (and optionally an audio track) with PyAV; returns the path.

    vfr=True writes frames with irregular timestamps (every third gap doubled).
    """
    path = Path(path)
    if frames is None:
        frames = moving_square_frames(int(round(seconds * fps)), width, height)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        vstream = container.add_stream(codec, rate=rate)
        vstream.width, vstream.height = frames.shape[2], frames.shape[1]
        vstream.pix_fmt = "yuv420p"
        if vfr:
            vstream.time_base = Fraction(1, 1000)
        astream = None
        if audio_rate is not None:
            astream = container.add_stream(audio_codec, rate=audio_rate)
            astream.layout = {1: "mono", 2: "stereo", 6: "5.1"}[audio_channels]
        pts = 0
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if vfr:
                frame.pts = pts
                frame.time_base = Fraction(1, 1000)
                pts += int(1000 / fps) * (2 if i % 3 == 2 else 1)
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None:
            _write_audio(container, astream, tone(seconds, audio_rate, channels=audio_channels), audio_rate)
    return path


def _write_audio(container, stream, samples: np.ndarray, sample_rate: int) -> None:
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[samples.shape[0]]
    chunk = 1024
    for start in range(0, samples.shape[1], chunk):
        block = np.ascontiguousarray(samples[:, start:start + chunk])
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write float samples [channels, n] as 16-bit PCM wav with PyAV."""
    path = Path(path)
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[samples.shape[0]]
    with av.open(str(path), mode="w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=sample_rate)
        stream.layout = layout
        pcm = np.clip(samples * 32767, -32768, 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T.reshape(1, -1)), format="s16", layout=layout)
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
