"""The ``data:`` section of a training recipe."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from avlm.data.annotations import AnnotationSource
from avlm.resources import usable_cores

AUTO_WORKERS_CAP = 4  # what the shipped recipes asked for before "auto"; each worker may cache decoded media


def auto_num_workers() -> int:
    """DataLoader workers for ``num_workers: auto``: the CPU cores this process may run on, shared with the other
    training processes of the node (torchrun's ``LOCAL_WORLD_SIZE``), less one for the training process itself, at
    most :data:`AUTO_WORKERS_CAP`; 0 when no core is left (decode in the training process)."""
    cores = usable_cores()
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(AUTO_WORKERS_CAP, cores // processes - 1))


@dataclass
class DataConfig:
    """Where the training samples come from and how they are mixed, checked, tokenised and batched.

    Example (VideoLLaMA2-AV joint stage, AV:video:audio = 2:1:1)::

        data:
          data_root: /datasets/av
          sources:
            - {path: stage3_video_audio.json, audio_from_video: true}
            - {path: stage2_video_subset.json}
            - {path: stage2_audio_subset.json}
          mix_ratios: {av: 2, video: 1, audio: 1}
    """

    sources: list[AnnotationSource] = field(default_factory=list)
    """Annotation files (JSON list or JSONL, VideoLLaMA2/LLaVA conversation format), each with its own options."""
    data_root: Path | None = None
    """Folder that media paths are relative to; None: each annotation file's folder."""
    skip_invalid: bool = False
    """Drop records that fail validation (the report says how many and why) instead of refusing to start."""
    check_media: bool = True
    """Check before training that every media file exists (one stat per file; turn off only for remote mounts)."""
    mix_ratios: dict[str, int] | None = None
    """Samples per mixing unit for each group (av, video, audio, image, text); None: uniform over all records."""
    mix_anchor: str | None = None
    """Group whose one pass defines an epoch when mixing; None: the group with the largest ratio."""
    allow_missing_audio: bool = False
    """Keep the video of an audio-visual sample whose audio fails to decode (counted as media_errors); else stop."""
    system_prompt: str | None = None
    """System message for every sample; None leaves it to the chat template (Qwen2 adds its default)."""
    max_length: int | None = None
    """Longest sequence in tokens, media tokens included; longer samples lose text from the end. None: no limit."""
    seed: int = 0
    """Seed of the data order (with the epoch); the same seed gives the same batches on any number of processes."""
    shuffle: bool = True
    """Shuffle the data order; False keeps file order (for debugging)."""
    drop_last: bool = False
    """Drop the last incomplete global batch; otherwise it is filled by wrapping around (several processes)."""
    num_workers: int | Literal["auto"] = "auto"
    """DataLoader worker processes that decode media; 0 decodes in the training process. auto: one per CPU core but
    one (the cores shared among the node's training processes), at most 4, so a small machine is not oversubscribed;
    resolved to a number when the recipe loads (the run's saved recipe.yaml holds the number used)."""
    cache_media: bool = False
    """Keep every record's decoded media in memory after its first load (in each worker process): a small data set
    trained for many epochs decodes each clip once (the CPU demo). Memory grows with the data set: leave it off for
    real data."""

    def __post_init__(self) -> None:
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"data.max_length must be positive or None, got {self.max_length}")
        if self.num_workers == "auto":
            self.num_workers = auto_num_workers()
        elif self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.mix_ratios is not None:
            bad = {group: ratio for group, ratio in self.mix_ratios.items() if ratio < 1}
            if bad or not self.mix_ratios:
                raise ValueError(f"data.mix_ratios needs positive integers per group, e.g. {{av: 2, video: 1, "
                                 f"audio: 1}}; got {self.mix_ratios}")
        if self.mix_anchor is not None and self.mix_anchor not in (self.mix_ratios or {}):
            raise ValueError(f"data.mix_anchor {self.mix_anchor!r} must be one of the mix_ratios groups "
                             f"{sorted(self.mix_ratios or {})}")
