"""The media of one time window of a video file, read through readers kept open between windows.

A window request (:class:`avlm.inference.requests.Request` with ``start``/``end``) names a file and a span. Each
process that prepares requests (a DataLoader worker, or the main process) keeps a :class:`WindowSources`: the open
:class:`vision.windows.WindowReader` (frame index read once, decoder kept open) and
:class:`audio.windows.AudioWindowReader` (soundtrack read in long stretches) of the last files it read. A worker
receives the windows of a video in increasing order (every ``num_workers``-th one), so each worker makes one pass
over the file instead of reopening and re-indexing it per window.

Notation: t frames per window, n audio samples of a window.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

from audio.io import AudioClip, NoAudioStreamError
from audio.windows import AudioWindowReader
from avlm.constants import AUTO_AUDIO
from avlm.processing.media import MediaConfig
from vision.decode import VideoClip
from vision.windows import WindowReader


class WindowSources:
    """Open window readers of the last ``keep`` files, by path.

    Args:
        config: the processor's media settings (frames per window: ``num_frames``, or ``fps`` capped at it; audio
            rate: ``sample_rate``).
        keep: files kept open (the windows of a job come file by file; two cover the switch between files).
    """

    def __init__(self, config: MediaConfig, keep: int = 2) -> None:
        self.config = config
        self.keep = keep
        self._video: OrderedDict[str, WindowReader] = OrderedDict()
        self._audio: OrderedDict[str, AudioWindowReader | None] = OrderedDict()  # None: the file has no audio track

    def read(self, video: str | os.PathLike, audio: Any, start: float, end: float) -> tuple[VideoClip,
                                                                                           AudioClip | None]:
        """Frames ``[t, h, w, 3]`` of ``video`` in ``[start, end)`` and the audio of the same span.

        Args:
            video: the video file.
            audio: ``AUTO_AUDIO`` (the video's own soundtrack when it has one), None (no audio) or an audio file.
            start: window start in seconds.
            end: window end in seconds.

        Raises:
            MediaError: the window cannot be read (the message names the file and the window);
                ``NoAudioStreamError`` when an explicitly given audio file has no audio track.
        """
        clip = self._reader(self._video, os.fspath(video), self._open_video).read(start, end)
        if audio is None:
            return clip, None
        auto = isinstance(audio, str) and audio == AUTO_AUDIO
        path = os.fspath(video if auto else audio)
        if not auto and not isinstance(audio, (str, os.PathLike)):
            raise TypeError(f"a window request takes AUTO, None or an audio file path as audio, got {type(audio)}")
        reader = self._reader(self._audio, path, lambda name: self._open_audio(name, optional=auto))
        return clip, None if reader is None else reader.read(clip.start, clip.end)

    def _reader(self, cache: OrderedDict, path: str, open_reader) -> Any:
        key = str(Path(path))
        if key not in cache:
            cache[key] = open_reader(key)
            while len(cache) > self.keep:
                _close(cache.popitem(last=False)[1])
        cache.move_to_end(key)
        return cache[key]

    def _open_video(self, path: str) -> WindowReader:
        return WindowReader(path, num_frames=self.config.num_frames, fps=self.config.fps,
                            max_frames=self.config.num_frames if self.config.fps is not None else None)

    def _open_audio(self, path: str, optional: bool) -> AudioWindowReader | None:
        try:
            return AudioWindowReader(path, sample_rate=self.config.sample_rate)
        except NoAudioStreamError:
            if optional:
                return None
            raise

    def close(self) -> None:
        """Close every reader."""
        for cache in (self._video, self._audio):
            while cache:
                _close(cache.popitem()[1])


def _close(reader: WindowReader | AudioWindowReader | None) -> None:
    if reader is not None:
        reader.close()
