"""The audio of successive time windows of one file, read in long stretches: :class:`AudioWindowReader`.

Each :meth:`AudioWindowReader.read` returns what ``audio.load_audio(path, start=start, end=end)`` is meant to return:
the source samples ``[round(start * sr), round(end * sr))``, mixed to mono, resampled on their own; the samples are
those of a continuous decode of the soundtrack (a stretch starts :data:`PREROLL` seconds early). Instead of
opening, seeking and decoding the file once per window, the reader decodes one long stretch through
:func:`audio.io.load_audio` (at the source rate, mono) and cuts the windows out of it; the next stretch is read when a
window runs past the one in memory. Windows read in order therefore cost one read of the soundtrack, in stretches of
``chunk_seconds``.

A window that starts after the soundtrack has ended (an audio track shorter than the video) raises
:class:`~vision.container.MediaError` naming the file, the window and where the audio ends; a window the audio covers
only in part returns the part there is.

Notation:
    n: samples of a window at ``sample_rate``.
"""

from __future__ import annotations

import os

import torch

from audio.io import AudioClip, NoAudioStreamError, load_audio
from vision.container import MediaError, probe

PREROLL = 1.0
"""Seconds decoded before a stretch's first window: the decoder's first frames after a seek can be off (AAC's
overlapping frames need their predecessor; some demuxers seek past the target), so the window starts in frames decoded
as a continuous read would."""


class AudioWindowReader:
    """Mono audio of time windows of one file, decoded in stretches of ``chunk_seconds``.

    Args:
        path: any container with an audio stream.
        sample_rate: rate of the returned waveforms (resampled with torchaudio, like ``load_audio``).
        chunk_seconds: seconds decoded per read of the file (memory: ``chunk_seconds * source rate * channels * 4``
            bytes while a stretch is decoded, a quarter of that per channel after mixing).

    Raises:
        FileNotFoundError, MediaError: the file is unreadable; :class:`~audio.io.NoAudioStreamError` when it has no
            audio stream.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int = 16000, chunk_seconds: float = 120.0) -> None:
        if sample_rate <= 0 or not chunk_seconds > 0:
            raise ValueError(f"sample_rate={sample_rate} and chunk_seconds={chunk_seconds} must be positive")
        info = probe(path)
        if info.audio is None:
            raise NoAudioStreamError(path, f"has no audio stream (only {info.video.codec} video)")
        if info.audio.sample_rate <= 0:
            raise MediaError(path, "the audio stream does not state its sample rate")
        self.path, self.sample_rate, self.chunk_seconds = str(path), sample_rate, chunk_seconds
        self.source_rate = info.audio.sample_rate
        self.track_end = info.audio.duration if info.audio.duration > 0 else None
        """Where the soundtrack ends, in seconds (from its header, or from the first read that reached it)."""
        self._samples = torch.zeros(0)  # mono source samples in memory; the first one is source sample _first
        self._first = 0
        self._ends_track = False  # the stretch in memory reaches the end of the soundtrack

    def read(self, start: float, end: float) -> AudioClip:
        """The audio of ``[start, end)`` seconds (from the container start, the clock of video frame times).

        Raises:
            MediaError: the window lies after the end of the soundtrack (or the audio cannot be decoded).
            ValueError: ``start``/``end`` out of order.
        """
        if not 0 <= start < end:
            raise ValueError(f"window start={start} end={end}: need 0 <= start < end")
        first, stop = round(start * self.source_rate), round(end * self.source_rate)
        if self.track_end is not None and start >= self.track_end:
            raise MediaError(self.path, f"no audio in {start:.3f}-{end:.3f} s: the audio track ends at "
                                        f"{self.track_end:.3f} s, before the video")
        if not self._holds(first, stop):
            try:
                self._load(max(start - PREROLL, 0.0), max(end, start + self.chunk_seconds))
            except NoAudioStreamError:
                raise
            except MediaError as error:
                raise MediaError(self.path, f"no audio in {start:.3f}-{end:.3f} s: {error.problem}") from error
        begin = max(first - self._first, 0)
        samples = self._samples[begin:max(stop - self._first, begin)]
        if len(samples) == 0:
            track_end = (self._first + len(self._samples)) / self.source_rate
            raise MediaError(self.path, f"no audio in {start:.3f}-{end:.3f} s: the audio track ends at "
                                        f"{track_end:.3f} s, before the video")
        waveform = samples
        if self.source_rate != self.sample_rate:
            import torchaudio

            waveform = torchaudio.functional.resample(samples, self.source_rate, self.sample_rate)
        span_start = (self._first + begin) / self.source_rate
        return AudioClip(waveform=waveform.contiguous(), sample_rate=self.sample_rate,
                         duration=waveform.shape[-1] / self.sample_rate, start=span_start,
                         end=span_start + len(samples) / self.source_rate, path=self.path,
                         source_sample_rate=self.source_rate, source_channels=1)

    def _holds(self, first: int, stop: int) -> bool:
        last = self._first + len(self._samples)
        return len(self._samples) > 0 and self._first <= first and (stop <= last or self._ends_track)

    def _load(self, start: float, end: float) -> None:
        """Decode ``[start, end)`` into memory (mono, source rate)."""
        clip = load_audio(self.path, sample_rate=self.source_rate, mono=True, start=start, end=end)
        self._samples, self._first = clip.waveform, round(clip.start * self.source_rate)
        self._ends_track = clip.end < end - 0.5 / self.source_rate
        if self._ends_track:
            self.track_end = clip.end

    def close(self) -> None:
        """Drop the stretch in memory."""
        self._samples = torch.zeros(0)

    def __enter__(self) -> AudioWindowReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
