"""Media settings of a model and the loaders that turn a video / audio input into encoder input.

Notation: t frames, h, w source frame size, S encoder frame side, n audio samples, f feature frames, m mel bins.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from audio import AudioClip, load_audio
from audio.features import beats_fbank, whisper_log_mel
from audio.videollama2_preset import audio_file_fbank, audio_from_video_fbank
from avlm.constants import IMAGE_SUFFIXES
from avlm.modeling.presets import get_preset
from vision import VideoClip, load_image, load_video, preprocess_frames
from vision.preprocess import SIGLIP, ImageProcessorConfig
from vision.videollama2_preset import load_videollama2_video, videollama2_pixel_values

HOP = 160  # samples per feature frame at 16 kHz (10 ms), fbank and Whisper alike


@dataclass
class MediaConfig:
    """How frames and audio are sampled and turned into features (saved in ``processor_config.json``)."""

    num_frames: int = 16
    """Frames per video, spread uniformly over it (VideoLLaMA2's segment midpoints)."""
    fps: float | None = None
    """Sample frames at this rate instead (at most ``num_frames``); None: uniform sampling."""
    image_frames: int = 2
    """Copies of an image given as a still video; at least the connector's temporal stride (2 for STC)."""
    image_processor: ImageProcessorConfig = field(default_factory=lambda: SIGLIP)
    """Frame geometry and normalisation; its size must be the vision encoder's image size."""
    audio_features: Literal["fbank", "whisper_log_mel"] = "fbank"
    """BEATs' Kaldi fbank (128 bins) or Whisper's log-mel (``n_mels`` bins)."""
    n_mels: int = 128
    """Mel bins of the features (128 for fbank; 80 or 128 for Whisper)."""
    sample_rate: int = 16000
    """Audio is resampled to this rate (both front ends expect 16 kHz)."""
    max_audio_seconds: float = 30.0
    """Longer audio is cut to its first this many seconds; Whisper's window length (30 s for real Whisper)."""
    min_audio_frames: int = 16
    """Shorter audio is zero-padded to this many feature frames (BEATs needs one 16-frame patch)."""
    video_backend: Literal["auto", "decord", "pyav"] = "auto"
    """Which library decodes videos: ``"auto"`` (decord, PyAV for what decord cannot read), ``"decord"`` or
    ``"pyav"``. The frames are the same; PyAV is faster on long videos with short GOPs, decord on short clips."""
    preprocessing: Literal["avlm", "videollama2"] = "avlm"
    """``"videollama2"``: the official VideoLLaMA2 preprocessing, for its checkpoints (frame rule and black padding;
    audio of a video as 8 clips of 2 s zero-padded to 30 s; audio files: first channel; bfloat16-rounded fbank)."""
    def __post_init__(self) -> None:
        if isinstance(self.image_processor, dict):
            self.image_processor = ImageProcessorConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                           for k, v in self.image_processor.items()})
        counts = ("num_frames", "image_frames", "n_mels", "sample_rate", "min_audio_frames")
        errors = [f"{name}={getattr(self, name)!r} must be >= 1" for name in counts if getattr(self, name) < 1]
        if self.fps is not None and self.fps <= 0:
            errors.append(f"fps={self.fps!r} must be > 0 or None")
        if self.audio_features not in ("fbank", "whisper_log_mel"):
            errors.append(f"audio_features={self.audio_features!r}; choose 'fbank' or 'whisper_log_mel'")
        if self.audio_features == "fbank" and self.n_mels != 128:
            errors.append(f"n_mels={self.n_mels}: the BEATs fbank has 128 bins")
        if self.sample_rate != 16000:
            errors.append(f"sample_rate={self.sample_rate}: the audio front ends expect 16000 Hz")
        if self.video_backend not in ("auto", "decord", "pyav"):
            errors.append(f"video_backend={self.video_backend!r}; choose 'auto', 'decord' or 'pyav'")
        if self.preprocessing not in ("avlm", "videollama2"):
            errors.append(f"preprocessing={self.preprocessing!r}; choose 'avlm' or 'videollama2'")
        if self.preprocessing == "videollama2" and self.audio_features != "fbank":
            errors.append("preprocessing='videollama2' uses the BEATs fbank (audio_features='fbank')")
        if not self.max_audio_seconds > 0:
            errors.append(f"max_audio_seconds={self.max_audio_seconds!r} must be > 0")
        if errors:
            raise ValueError("invalid MediaConfig: " + "; ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MediaConfig:
        """From ``processor_config.json``'s ``media``; folders written before the field was renamed call
        ``preprocessing`` ``preset``, which is read as such."""
        values = dict(values)
        if "preset" in values and "preprocessing" not in values:
            values["preprocessing"] = values.pop("preset")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown MediaConfig keys {unknown}")
        return cls(**values)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> MediaConfig:
        """The media settings of the architecture preset ``name`` (``avlm.modeling.presets``); ``overrides`` replace
        fields."""
        return cls(**{**copy.deepcopy(get_preset(name).media), **overrides})


def load_video_frames(video: Any, config: MediaConfig) -> tuple[torch.Tensor, tuple[float, float] | None]:
    """Video path / image path / ``VideoClip`` / uint8 ``[t, h, w, 3]`` -> pixels ``[t', 3, S, S]`` and the time span
    ``(start, end)`` the frames cover in their file (None for images and raw frames)."""
    if config.preprocessing == "videollama2":
        return _videollama2_frames(video, config)
    span = None
    if isinstance(video, (str, os.PathLike)):
        is_image = Path(video).suffix.lower() in IMAGE_SUFFIXES
        if is_image:
            video = load_image(video)
        else:
            video = load_video(video, num_frames=config.num_frames, fps=config.fps, backend=config.video_backend)
    if isinstance(video, VideoClip):
        span = None if video.backend == "pil" else (video.start, video.end)
        video = video.frames
    if not isinstance(video, torch.Tensor) or video.dtype != torch.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise TypeError(f"video must be a path, a vision.VideoClip or uint8 frames [t, h, w, 3], got "
                        f"{type(video).__name__} {getattr(video, 'dtype', '')} {list(getattr(video, 'shape', []))}")
    if len(video) == 1:
        video = video.expand(config.image_frames, -1, -1, -1)
    return preprocess_frames(video.contiguous(), config.image_processor), span


def load_audio_features(audio: Any, config: MediaConfig, span: tuple[float, float] | None = None) -> torch.Tensor:
    """Audio path / ``AudioClip`` / mono waveform ``[n]`` at ``config.sample_rate`` -> features ``[f, m]``.

    ``span``: read only this ``(start, end)`` of a file (the frames' span when audio and video share a file).
    """
    if config.preprocessing == "videollama2":
        return _videollama2_audio(audio, from_video=span is not None)
    if isinstance(audio, (str, os.PathLike)):
        start, end = span if span is not None else (None, None)
        audio = load_audio(audio, sample_rate=config.sample_rate, start=start, end=end)
    if isinstance(audio, AudioClip):
        if audio.sample_rate != config.sample_rate:
            raise ValueError(f"AudioClip at {audio.sample_rate} Hz; load it with sample_rate={config.sample_rate}")
        audio = audio.waveform
    if not isinstance(audio, torch.Tensor) or audio.ndim != 1 or not audio.is_floating_point():
        raise TypeError(f"audio must be a path, an audio.AudioClip or a mono float waveform [n] at "
                        f"{config.sample_rate} Hz, got {type(audio).__name__} {list(getattr(audio, 'shape', []))}")
    longest = round(config.max_audio_seconds * config.sample_rate)
    shortest = (config.min_audio_frames - 1) * HOP + 400  # a 25 ms window per fbank frame
    waveform = audio.float()[:longest]
    waveform = torch.nn.functional.pad(waveform, (0, max(shortest - len(waveform), 0)))
    return _features(waveform, config, longest)


def _features(waveform: torch.Tensor, config: MediaConfig, longest: int) -> torch.Tensor:
    """[n] -> [f, m]."""
    if config.audio_features == "fbank":
        return beats_fbank(waveform[None], config.sample_rate)[0]
    mel = whisper_log_mel(waveform[None], config.sample_rate, n_mels=config.n_mels, num_samples=longest)[0]
    valid = min(math.ceil(len(waveform) / HOP), mel.shape[1])
    return mel[:, :valid].T.contiguous()


def _videollama2_frames(video: Any, config: MediaConfig) -> tuple[torch.Tensor, tuple[float, float] | None]:
    """The official ``process_video`` / ``process_image`` (inference geometry); an image is repeated to num_frames."""
    if isinstance(video, (str, os.PathLike)) and Path(video).suffix.lower() not in IMAGE_SUFFIXES:
        pixels, clip = load_videollama2_video(video, config.image_processor, config.num_frames,
                                              backend=config.video_backend)
        return pixels, (clip.start, clip.end)
    if isinstance(video, (str, os.PathLike)):
        video = load_image(video)
    frames = video.frames if isinstance(video, VideoClip) else video
    if len(frames) == 1:
        image = videollama2_pixel_values(frames, config.image_processor, None)
        return image.expand(config.num_frames, -1, -1, -1), None
    return videollama2_pixel_values(frames, config.image_processor, config.num_frames), None


def _videollama2_audio(audio: Any, from_video: bool) -> torch.Tensor:
    """The official audio front end -> [2998, 128] (float32 values of the bfloat16 fbank)."""
    if isinstance(audio, (str, os.PathLike)):
        audio = load_audio(audio, sample_rate=16000, mono=from_video)  # the whole soundtrack, as the reference
    waveform = audio.waveform if isinstance(audio, AudioClip) else audio
    fbank = audio_from_video_fbank(waveform) if from_video else audio_file_fbank(waveform)
    return fbank[0].float()
