"""One sample from a question and its media: the single builder behind ``Processor``, training records and inference.

Notation: t frames, S frame side, f audio feature frames, m mel bins, L prompt tokens.

A video is a path (video file, or an image file by its suffix), a ``vision.VideoClip`` or uint8 frames
``[t, h, w, 3]``. An audio is a path, an ``audio.AudioClip``, a mono waveform ``[n]`` at 16 kHz, or
:data:`avlm.constants.AUTO_AUDIO`: the soundtrack of the video file when it has one (a file without an audio track
then gives a video-only sample). Audio read from the video's own file covers the same time span as the frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from audio import AudioClip, NoAudioStreamError
from avlm.constants import AUTO_AUDIO, IGNORE_INDEX, IMAGE_SUFFIXES
from avlm.processing.media import MediaConfig, load_audio_features, load_video_frames
from vision import VideoClip


class MediaRecord(Protocol):
    """What media loading reads of a training record (``avlm.data.Record`` has these attributes)."""

    video: Path | None
    image: Path | None

    @property
    def audio_path(self) -> Path | None: ...


@dataclass
class LoadedMedia:
    """Decoded, preprocessed media of one sample."""

    video: torch.Tensor | None = None
    """Pixels ``[t, 3, S, S]``."""
    audio: torch.Tensor | None = None
    """Features ``[f, m]``."""
    span: tuple[float, float] | None = None
    """``(start, end)`` seconds the frames cover in their file (None for images, raw frames or no video)."""

    @property
    def modalities(self) -> list[str]:
        """The sample's modalities in splice order."""
        return [name for name, value in (("video", self.video), ("audio", self.audio)) if value is not None]

    @property
    def seconds(self) -> float | None:
        """Duration of the frames' span."""
        return None if self.span is None else float(self.span[1] - self.span[0])


def load_media(config: MediaConfig, video: Any = None, audio: Any = None) -> LoadedMedia:
    """Decode and preprocess a sample's media (inputs as in the module docstring; either may be None).

    Raises:
        ValueError, OSError: a file that cannot be read (the message names it); ``NoAudioStreamError`` when an
            explicitly given file has no audio track.
    """
    media = LoadedMedia()
    if video is not None:
        media.video, media.span = load_video_frames(_as_path(video), config)
        media.span = media.span if media.span is not None else _clip_span(video)
    optional = _is_auto(audio)
    source = soundtrack(video) if optional else audio
    if source is not None:
        span = media.span if same_file(video, source) else None
        try:
            media.audio = load_audio_features(source, config, span)
        except NoAudioStreamError:
            if not optional:
                raise
    return media


def make_sample(input_ids: torch.Tensor, media: LoadedMedia, sample_id: str) -> dict[str, Any]:
    """The collator's input: ``{"input_ids" [L], "labels" [L] (all ignored), "id", "media_error", "video"?,
    "audio"?}``."""
    sample: dict[str, Any] = {"id": sample_id, "media_error": None, "input_ids": input_ids,
                              "labels": torch.full_like(input_ids, IGNORE_INDEX)}
    for name in media.modalities:
        sample[name] = getattr(media, name)
    return sample


def soundtrack(video: Any) -> str | None:
    """The file whose audio goes with ``video``: its own path (a video file or a clip read from one), else None."""
    if isinstance(video, VideoClip):
        return None if video.backend == "pil" else video.path
    if isinstance(video, (str, os.PathLike)) and Path(video).suffix.lower() not in IMAGE_SUFFIXES:
        return os.fspath(video)
    return None


def same_file(video: Any, audio: Any) -> bool:
    """True when ``audio`` (a path, or an ``AudioClip`` read from one) names the video file ``video`` (a path or a
    clip) was read from: it is then the video's soundtrack and takes the frames' span (official VideoLLaMA2
    preprocessing: the audio-from-video front end, also for the audio of a ``--segment`` window). Images never share
    a span (they have none)."""
    source = getattr(video, "path", video)
    audio = audio.path if isinstance(audio, AudioClip) else audio
    is_path = isinstance(source, (str, os.PathLike)) and isinstance(audio, (str, os.PathLike))
    return is_path and Path(source) == Path(audio) and Path(source).suffix.lower() not in IMAGE_SUFFIXES


def _is_auto(audio: Any) -> bool:
    return isinstance(audio, str) and audio == AUTO_AUDIO


def _clip_span(video: Any) -> tuple[float, float] | None:
    """The span a ``VideoClip`` was read from (the VideoLLaMA2 frame loader does not return it for clips)."""
    return (video.start, video.end) if isinstance(video, VideoClip) and video.backend != "pil" else None


def _as_path(video: Any) -> Any:
    return os.fspath(video) if isinstance(video, os.PathLike) else video
