"""One inference request (a clip and a question) and its preparation into a model sample, in a DataLoader worker.

Notation: t frames, S frame side, f audio feature frames, m mel bins, L prompt tokens.

A request's ``video`` is a path, a ``vision.VideoClip`` or uint8 frames ``[t, h, w, 3]`` (or None: audio only); its
``audio`` is :data:`AUTO` (the video file's own soundtrack when it has one), None (no audio), a path, an
``audio.AudioClip`` or a mono waveform ``[n]``. Preparing it decodes and preprocesses the media and tokenizes the
prompt; a clip that cannot be read becomes an error record instead of an exception, so one bad file never stops a job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from avlm.constants import AUTO_AUDIO
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


def prepare(processor: Processor, request: Request, index: int, raise_errors: bool = False) -> Prepared:
    """Decode, preprocess and tokenize one request; media errors (``ValueError``/``OSError``) become ``error``.

    Args:
        processor: the model's :class:`avlm.Processor`.
        request: the request.
        index: its position in the job (carried into the result).
        raise_errors: let media errors propagate instead (a single request from the Python API).
    """
    if raise_errors:
        return _prepare(processor, request, index)
    try:
        return _prepare(processor, request, index)
    except (ValueError, OSError) as error:
        message = str(error) if _names_a_file(error, request) else f"{_describe(request.video)}: {error}"
        return Prepared(index, error=message)


def _prepare(processor: Processor, request: Request, index: int) -> Prepared:
    media = load_media(processor.config, request.video, request.audio)
    sample = make_sample(processor.encode_prompt(request.question, media.modalities), media, str(index))
    frames = 0 if media.video is None else len(media.video)
    return Prepared(index, sample, num_frames=frames, has_audio=media.audio is not None, seconds=media.seconds)


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

    def __len__(self) -> int:
        return len(self.requests)

    def __getitem__(self, index: int) -> Prepared:
        item = prepare(self.processor, self.requests[index], index)
        if item.sample is not None and self.media_dtype is not None:
            for name in ("video", "audio"):
                if name in item.sample:
                    item.sample[name] = item.sample[name].to(self.media_dtype)
        return item
