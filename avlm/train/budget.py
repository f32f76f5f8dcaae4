"""Media tokens per training record without decoding it: frame and audio lengths from the container header.

The counter is picklable and holds no model (it is sent to DataLoader workers): the model's token counts per frame
count and per audio feature length are tabulated once in the main process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from audio.features import num_fbank_frames
from avlm.modeling.model import AVLMForCausalLM
from avlm.processing.media import HOP, IMAGE_SUFFIXES, MediaConfig
from vision.container import probe


class MediaTokenCounter:
    """``record -> {"video": tokens, "audio": tokens}`` with exactly the record's modalities.

    Args:
        model: an ``AVLMForCausalLM`` (only its ``num_media_tokens`` is used, here, once per length).
        media: the processor's media settings.
    """

    def __init__(self, model: AVLMForCausalLM, media: MediaConfig) -> None:
        self.media = media
        frames = max(media.num_frames, media.image_frames)
        self.video_tokens = {}
        if "video" in model.encoders:
            self.video_tokens = {t: model.num_media_tokens(num_frames=t)["video"] for t in range(1, frames + 1)}
        self.audio_tokens = {}
        if "audio" in model.encoders:
            longest = self._audio_frames(media.max_audio_seconds)
            self.audio_tokens = {f: model.num_media_tokens(num_audio_frames=f)["audio"]
                                 for f in range(media.min_audio_frames, longest + 1)}

    def __call__(self, record: Any) -> Mapping[str, int]:
        counts: dict[str, int] = {}
        visual = record.video if record.video is not None else record.image
        span = None
        if visual is not None:
            frames, span = self._frames(visual)
            counts["video"] = self.video_tokens[frames]
        if record.audio_path is not None:
            seconds = self._audio_seconds(record.audio_path, span if record.audio is None else None)
            counts["audio"] = self.audio_tokens[self._audio_frames(seconds)]
        return counts

    def _frames(self, path: Any) -> tuple[int, float | None]:
        if str(path).lower().endswith(tuple(IMAGE_SUFFIXES)):
            return self.media.image_frames, None
        info = probe(path)
        stream = info.video
        if stream is None:
            raise ValueError(f"{path}: no video stream")
        duration = stream.duration if not math.isnan(stream.duration) else info.duration
        available = stream.num_frames or max(1, round(duration * stream.fps))
        wanted = self.media.num_frames
        if self.media.fps is not None and not math.isnan(duration):
            wanted = min(wanted, max(1, math.floor(duration * self.media.fps)))
        return max(1, min(wanted, available)), duration

    def _audio_seconds(self, path: Any, span: float | None) -> float:
        if span is not None and not math.isnan(span):
            return span
        info = probe(path)
        if info.audio is None:
            raise ValueError(f"{path}: no audio stream")
        return info.audio.duration if not math.isnan(info.audio.duration) else info.duration

    def _audio_frames(self, seconds: float) -> int:
        """Feature frames of ``seconds`` of audio after the loader's cut to max_audio_seconds and padding."""
        samples = round(min(seconds, self.media.max_audio_seconds) * self.media.sample_rate)
        samples = max(samples, (self.media.min_audio_frames - 1) * HOP + 400)
        if self.media.audio_features == "fbank":
            return num_fbank_frames(samples, self.media.sample_rate)
        return math.ceil(samples / HOP)
