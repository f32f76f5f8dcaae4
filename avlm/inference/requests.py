"""One inference request (a clip and a question) and its preparation into a model sample, in a DataLoader worker.

Notation: t frames, S frame side, f audio feature frames, m mel bins, L prompt tokens.

A request's ``video`` is a path, a ``vision.VideoClip`` or uint8 frames ``[t, h, w, 3]`` (or None: audio only); its
``audio`` is :data:`AUTO` (the video file's own soundtrack when it has one), None (no audio), a path, an
``audio.AudioClip`` or a mono waveform ``[n]``. Preparing it decodes and preprocesses the media and tokenizes the
prompt; a clip that cannot be read becomes an error record instead of an exception, so one bad file never stops a job.
A request with ``start``/``end`` is one time window of a video file (:mod:`avlm.inference.windows`); a process reads
the windows of a file through readers it keeps open (:class:`avlm.inference.window_media.WindowSources`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from avlm.constants import AUTO_AUDIO
from avlm.inference.window_media import WindowSources
from avlm.processing.processor import Processor
from avlm.processing.sample import load_media, make_sample

AUTO = AUTO_AUDIO
"""``Request.audio`` value: the soundtrack of the video file when it has one; a file without one is video only."""


@dataclass
class Request:
    """What to ask about which media."""

    question: str
    """The user's text (the caption prompt for captioning)."""
    video: Any = None
    """Path, ``vision.VideoClip``, uint8 frames ``[t, h, w, 3]``, or None."""
    audio: Any = AUTO
    """:data:`AUTO`, None, a path, an ``audio.AudioClip`` or a mono float waveform ``[n]``."""
    start: float | None = None
    """A time window of the video file: its start in seconds (None: the whole clip). A window request uses the
    frames of ``[start, end)`` and the audio of the same span (:data:`AUTO`, None or an audio file path)."""
    end: float | None = None
    """The window's end in seconds (with ``start``)."""

    def __post_init__(self) -> None:
        if (self.start is None) != (self.end is None):
            raise ValueError(f"a window request needs both start and end, got start={self.start} end={self.end}")
        if self.start is not None and not isinstance(self.video, (str, os.PathLike)):
            raise TypeError(f"a window request (start={self.start}) reads a video file; got {type(self.video)}")


@dataclass
class Prepared:
    """A request after decoding: the model sample, or the error that prevented it.

    Attributes:
        index: position of the request in the job's list.
        sample: ``{"input_ids" [L], "labels" [L], "id", "media_error", "video"? [t, 3, S, S], "audio"? [f, m]}``
            (:func:`avlm.processing.collate`'s input), None on error.
        error: what went wrong (names the file), None on success.
        num_frames: frames given to the model (0 without video).
        has_audio: whether the sample carries audio.
        seconds: duration of the span the frames were taken from (None for raw frames, images or no video).
    """

    index: int
    sample: dict[str, Any] | None = None
    error: str | None = None
    num_frames: int = 0
    has_audio: bool = False
    seconds: float | None = None

    def length_key(self) -> tuple[int, int, int]:
        """Sort key that groups samples of equal padded size: prompt tokens, frames, audio feature frames."""
        audio = self.sample.get("audio") if self.sample is not None else None
        tokens = len(self.sample["input_ids"]) if self.sample is not None else 0
        return tokens, self.num_frames, 0 if audio is None else len(audio)


def prepare(processor: Processor, request: Request, index: int, raise_errors: bool = False,
            sources: WindowSources | None = None) -> Prepared:
    """Decode, preprocess and tokenize one request; media errors (``ValueError``/``OSError``) become ``error``.

    Args:
        processor: the model's :class:`avlm.Processor`.
        request: the request.
        index: its position in the job (carried into the result).
        raise_errors: let media errors propagate instead (a single request from the Python API).
        sources: the open window readers of this process, for window requests (None: open them for this one).
    """
    if raise_errors:
        return _prepare(processor, request, index, sources)
    try:
        return _prepare(processor, request, index, sources)
    except (ValueError, OSError) as error:
        message = str(error) if _names_a_file(error, request) else f"{_describe(request.video)}: {error}"
        return Prepared(index, error=message)


def _prepare(processor: Processor, request: Request, index: int, sources: WindowSources | None) -> Prepared:
    if request.start is not None:
        request = _read_window(processor, request, sources)
    media = load_media(processor.config, request.video, request.audio)
    sample = make_sample(processor.encode_prompt(request.question, media.modalities), media, str(index))
    frames = 0 if media.video is None else len(media.video)
    return Prepared(index, sample, num_frames=frames, has_audio=media.audio is not None, seconds=media.seconds)


def _read_window(processor: Processor, request: Request, sources: WindowSources | None) -> Request:
    """The request with the window's frames (``VideoClip``) and audio (``AudioClip`` or None) read in."""
    if sources is None:
        with contextlib.closing(WindowSources(processor.config)) as own:
            return _read_window(processor, request, own)
    clip, sound = sources.read(request.video, request.audio, request.start, request.end)
    return Request(request.question, clip, sound)


def _describe(video: Any) -> str:
    if isinstance(video, (str, os.PathLike)):
        return os.fspath(video)
    if isinstance(video, torch.Tensor):
        return f"frames {list(video.shape)}"
    return type(video).__name__


def _names_a_file(error: BaseException, request: Request) -> bool:
    text = str(error)
    return any(isinstance(item, (str, os.PathLike)) and os.fspath(item) in text
               for item in (request.video, request.audio, getattr(request.video, "path", None)))


class PrepareDataset(torch.utils.data.Dataset):
    """Map-style dataset over requests: item ``i`` is ``prepare(processor, requests[i], i)`` (run in a worker).

    ``media_dtype``: float media are cast to it in the worker (the model's dtype: a bf16 model gets half the bytes
    through shared memory and the collate copy; the values are those the model would cast to anyway).
    """

    def __init__(self, processor: Processor, requests: list[Request], media_dtype: torch.dtype | None = None) -> None:
        self.processor = processor
        self.requests = requests
        self.media_dtype = media_dtype
        self._sources: WindowSources | None = None  # window readers of this process, opened on first use

    def __len__(self) -> int:
        return len(self.requests)

    def __getitem__(self, index: int) -> Prepared:
        if self._sources is None:
            self._sources = WindowSources(self.processor.config)
        item = prepare(self.processor, self.requests[index], index, sources=self._sources)
        return cast_media(item, self.media_dtype)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_sources": None}  # each worker process opens its own readers

    def close(self) -> None:
        """Close the window readers opened in this process."""
        if self._sources is not None:
            self._sources.close()


def cast_media(item: Prepared, dtype: torch.dtype | None) -> Prepared:
    """Cast the float media of a prepared sample to ``dtype`` (the model's; None: leave them), in place; returns it.
    Done where the sample is decoded, so a bf16 model gets half the bytes through shared memory or the object store;
    the values are those the model would cast to anyway."""
    if item.sample is not None and dtype is not None:
        for name in ("video", "audio"):
            if name in item.sample:
                item.sample[name] = item.sample[name].to(dtype)
    return item
