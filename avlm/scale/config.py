"""``ScaleConfig``: the settings of the Ray Data pipeline (:func:`avlm.scale.answer`), named as Ray Data names them.

The defaults live here and only here; ``avlm caption / ask / eval --ray`` fill a config from their options
(:mod:`avlm.scale.options`). All problems of a config are reported together, each with the value received.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from avlm.api import DEFAULT_CAPTION_PROMPT, DEFAULT_MAX_NEW_TOKENS

MEDIA_DTYPES = ("float32", "bfloat16", "float16")
VIDEO_BACKENDS = ("auto", "decord", "pyav")


@dataclass
class ScaleConfig:
    """How to run the two stages. The model folder must be readable at the same path on every node."""

    model: str
    """Model folder: an avlm folder (``avlm build``, a training run's ``final/``) or an official VideoLLaMA2 one."""
    batch_size: int | None = None
    """Requests per ``generate`` call of a replica (Ray Data's ``batch_size`` of the model stage); None: 16 with
    GPUs, 4 on CPU (as the single-process runner)."""
    concurrency: int = 1
    """Model replicas: the size of the model stage's actor pool. Each loads the model once."""
    num_gpus: float = 0.0
    """GPUs per replica (Ray's ``num_gpus``); 0: the replicas run on CPU."""
    num_cpus: float = 1.0
    """CPUs per replica (Ray's ``num_cpus``); on CPU also its torch threads."""
    decode_concurrency: int | None = None
    """Decode tasks running at once, one CPU each (Ray Data's ``TaskPoolStrategy(size=...)``); None: as many as the
    cluster's free CPUs allow."""
    decode_batch_size: int | None = None
    """Requests per decode task; None: ``batch_size``. Smaller spreads a short job over more workers, larger costs
    Ray less scheduling per clip."""
    max_retries: int = 3
    """A request whose decoding kills its worker process (a crash in native code) is retried this many times on a new
    worker; after that it becomes an error row and the job goes on."""
    device: str | None = None
    """Device of the replicas; None: ``cuda`` when ``num_gpus > 0``, else ``cpu``."""
    dtype: str | None = None
    """Parameter dtype of the replicas: float32, bfloat16, float16 or auto (as saved); None: bfloat16 on a GPU,
    float32 on CPU. Decoded media are cast to it on the decode workers (half the bytes for bf16)."""
    num_frames: int | None = None
    """Frames per clip (None: the model's processor setting)."""
    fps: float | None = None
    """Sample frames at this rate, at most ``num_frames`` (None: the model's setting)."""
    video_backend: str | None = None
    """auto, decord or pyav (None: the model's setting)."""
    audio: bool = True
    """For rows without an ``audio`` column: give each video its own soundtrack when it has one; False: none."""
    prompt: str = DEFAULT_CAPTION_PROMPT
    """The question of rows without a ``question`` column (or with a null one): captioning."""
    ablate: Literal["audio", "video"] | None = None
    """Replace every soundtrack by silence of its length, or every video by black frames (``avlm eval --ablate``);
    done on the decode workers."""
    generate: dict[str, Any] = field(default_factory=dict)
    """``model.generate`` settings (``max_new_tokens``, default 256; greedy unless ``do_sample=True``)."""
    seed: int | None = None
    """Seeds torch's generator in each replica (sampling); sampled answers then depend on how rows meet replicas."""

    def __post_init__(self) -> None:
        problems = [f"{name}={getattr(self, name)!r} must be >= {low}" for name, low in
                    (("batch_size", 1), ("concurrency", 1), ("decode_concurrency", 1), ("decode_batch_size", 1),
                     ("num_frames", 1), ("max_retries", 0), ("num_gpus", 0), ("num_cpus", 0))
                    if getattr(self, name) is not None and getattr(self, name) < low]
        if self.fps is not None and self.fps <= 0:
            problems.append(f"fps={self.fps!r} must be > 0")
        if self.dtype not in (None, "auto", *MEDIA_DTYPES):
            problems.append(f"dtype={self.dtype!r}; choose one of {['auto', *MEDIA_DTYPES]} or None")
        if self.video_backend not in (None, *VIDEO_BACKENDS):
            problems.append(f"video_backend={self.video_backend!r}; choose one of {list(VIDEO_BACKENDS)} or None")
        if self.ablate not in (None, "audio", "video"):
            problems.append(f"ablate={self.ablate!r}; choose 'audio', 'video' or None")
        if problems:
            raise ValueError("ScaleConfig: " + "; ".join(problems))

    @property
    def replica_device(self) -> str:
        """Where each replica runs its model."""
        return self.device or ("cuda" if self.num_gpus > 0 else "cpu")

    @property
    def model_batch_size(self) -> int:
        """``batch_size``, or its default for the replica device."""
        return self.batch_size or (4 if torch.device(self.replica_device).type == "cpu" else 16)

    @property
    def media_dtype(self) -> torch.dtype | None:
        """The dtype decoded media are cast to on the decode workers (the replicas' parameter dtype; None for auto:
        the model casts them itself)."""
        if self.dtype == "auto":
            return None
        default = "float32" if torch.device(self.replica_device).type == "cpu" else "bfloat16"
        return getattr(torch, self.dtype or default)

    @property
    def generate_kwargs(self) -> dict[str, Any]:
        """``generate`` settings with the default ``max_new_tokens``."""
        return {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS, **self.generate}

    @property
    def media_overrides(self) -> dict[str, Any]:
        """Processor media settings that replace the model's (``num_frames``, ``fps``, ``video_backend``)."""
        values = {"num_frames": self.num_frames, "fps": self.fps, "video_backend": self.video_backend}
        return {name: value for name, value in values.items() if value is not None}
