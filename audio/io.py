"""Audio loading: the audio track of a video container or an audio file, as a mono float waveform.

Every container (mp4, mkv, webm, wav, flac, mp3, ...) is read through PyAV, one code path for all;
only the requested time window is decoded (seek to ``start``, stop after ``end``). Channels are mixed to
mono (their mean) and the result is resampled with torchaudio.

A container without an audio stream raises :class:`NoAudioStreamError`: a distinct, documented case that
callers handle explicitly (e.g. a video-only sample with a modality mask), never silent zeros.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from vision.container import MediaError, probe, require


class NoAudioStreamError(MediaError):
    """The file is readable but holds no audio stream (e.g. a silent mp4)."""


@dataclass
class AudioClip:
    """Decoded audio of one file over one time span.

    Attributes:
        waveform: float32 [n] (mono) or [c, n], values in [-1, 1].
        sample_rate: rate of ``waveform`` in Hz.
        duration: seconds of audio returned (n / sample_rate).
        start, end: the span of the source actually returned, in seconds from the container's start.
        path: the file it came from.
        source_sample_rate, source_channels: what the file's audio stream holds.
        backend: which library decoded it.
    """

    waveform: torch.Tensor
    sample_rate: int
    duration: float
    start: float
    end: float
    path: str
    source_sample_rate: int
    source_channels: int
    backend: str = "pyav"


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, mono: bool = True,
               start: float | None = None, end: float | None = None) -> AudioClip:
    """Read the audio of ``path`` between ``start`` and ``end`` seconds, resampled to ``sample_rate``.

    The window is the same convention as ``vision.load_video``'s ``start``/``end``: seconds from the
    container's start; samples ``[round(start * sr), round(end * sr))`` of the source, clipped to the stream.

    Raises:
        FileNotFoundError: the file does not exist.
        NoAudioStreamError: the file has no audio stream.
        MediaError: the file is not readable media, the audio cannot be decoded, or the window is empty.
        ValueError: bad arguments.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate}")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    if start is not None and start < 0:
        raise ValueError(f"start must be >= 0 seconds, got {start}")
    info = probe(path)
    if info.audio is None:
        raise NoAudioStreamError(path, f"has no audio stream (only {info.video.codec} video); load it without audio")
    source_rate = info.audio.sample_rate
    if source_rate <= 0:
        raise MediaError(path, "the audio stream does not state its sample rate")
    samples, first = _decode(path, start or 0.0, end)
    begin = round((start or 0.0) * source_rate) - first
    for earlier in (1.0, None):  # the seek landed after `start` (e.g. PCM in Matroska): seek 1 s earlier, then 0
        if begin >= 0 or not start:
            break
        samples, first = _decode(path, max(start - earlier, 0.0) if earlier is not None else 0.0, end)
        begin = round(start * source_rate) - first
    stop = samples.shape[1] if end is None else round(end * source_rate) - first
    samples = samples[:, max(begin, 0):max(stop, 0)]
    if samples.shape[1] == 0:
        until = "the end" if end is None else f"{end:.3f} s"
        raise MediaError(path, f"no audio samples between {start or 0.0:.3f} s and {until} "
                               f"(the audio lasts {info.audio.duration:.3f} s)")
    waveform = torch.from_numpy(samples)
    if mono:
        waveform = waveform.mean(0)
    if source_rate != sample_rate:
        import torchaudio

        waveform = torchaudio.functional.resample(waveform, source_rate, sample_rate)
    span_start = (first + max(begin, 0)) / source_rate
    return AudioClip(waveform=waveform.contiguous(), sample_rate=sample_rate, duration=waveform.shape[-1] / sample_rate,
                     start=span_start, end=span_start + samples.shape[1] / source_rate, path=str(path),
                     source_sample_rate=source_rate, source_channels=samples.shape[0])


def _decode(path: str | os.PathLike, start: float, end: float | None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream from about ``start`` to past ``end``.

    Returns:
        float32 samples [c, n] and the source sample index (from the container start) of the first one.
    """
    av = require("av", "av>=14")
    chunks: list[np.ndarray] = []
    first: int | None = None
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate
            origin = container.start_time / 1_000_000 if container.start_time else 0.0
            if start > 0:
                container.seek(int((start + origin) * 1_000_000), any_frame=False)  # keyframe at or before start
            resampler = av.AudioResampler(format="fltp")
            for frame in container.decode(stream):
                if frame.pts is None or frame.time is None:
                    raise MediaError(path, "audio frames carry no timestamps")
                for converted in resampler.resample(frame):
                    array = converted.to_ndarray()
                    if first is None:
                        first = round((frame.time - origin) * rate)
                    chunks.append(array)
                if end is not None and frame.time - origin > end:
                    break
    except av.error.FFmpegError as error:
        reason = error.strerror or error
        raise MediaError(path, f"the audio stream could not be decoded (FFmpeg says: {reason})") from error
    if not chunks and start > 0:  # sought past the last frame: an empty window, reported by the caller
        return np.zeros((1, 0), dtype=np.float32), round(start * rate)
    if not chunks:
        raise MediaError(path, "the audio stream holds no decodable frames (truncated or empty?)")
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), first or 0


def silence(seconds: float, sample_rate: int = 16000) -> torch.Tensor:
    """Explicit silence [n] for callers that ask for it (never used as a hidden fallback)."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds}")
    return torch.zeros(round(seconds * sample_rate))
