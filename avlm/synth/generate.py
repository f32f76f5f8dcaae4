"""Generate an AV-Synth dataset folder: mp4 clips, annotation files, evaluation metadata and a manifest.

Layout of ``OUT_DIR``::

    clips/train-00000.mp4 ...      H.264 + AAC clips
    train.json, test.json          annotation records (VideoLLaMA2/LLaVA format, media paths relative to OUT_DIR)
    train_meta.jsonl, test_meta.jsonl   one row per record: id, clip, task, kind, answer, held_out, attributes
    train_scenes.jsonl, test_scenes.jsonl   the full scene of every clip (objects, motion, flashes, sound slots)
    synth.json                     manifest: settings, held-out pairs, record counts per task and kind

Clip ``i`` of a split depends only on ``(seed, split, i)``, so the same seed gives identical files.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avlm.synth.mp4 import write_mp4
from avlm.synth.questions import records
from avlm.synth.render import render_frames
from avlm.synth.scene import SLOTS, sample_scene
from avlm.synth.sound import render_audio
from avlm.synth.vocab import held_out_pairs

SPLITS = ("train", "test")
VERSION = 1


@dataclass(frozen=True)
class SynthConfig:
    """Settings of a generated set (saved in ``synth.json``)."""

    n_train: int = 400
    """Clips in the train split (each gives 7-9 records)."""
    n_test: int = 100
    """Clips in the test split; every one contains a held-out attribute pair."""
    seed: int = 0
    """Seed of everything: scenes, held-out pairs, noise."""
    duration: float = 3.0
    """Clip length in seconds (2-4 s is the intended range)."""
    side: int = 64
    """Frame width and height in pixels (even)."""
    fps: float = 12.0
    """Frame rate."""
    sample_rate: int = 16000
    """Audio sample rate in Hz."""

    def __post_init__(self) -> None:
        problems = [f"{name}={getattr(self, name)} must be >= 0" for name in ("n_train", "n_test")
                    if getattr(self, name) < 0]
        if self.side < 16 or self.side % 2:
            problems.append(f"side={self.side} must be an even number >= 16")
        if not 0.5 <= self.duration <= 30:
            problems.append(f"duration={self.duration} must be within 0.5-30 s")
        if self.fps * self.duration < 2 * SLOTS:
            problems.append(f"fps={self.fps} gives fewer than {2 * SLOTS} frames in {self.duration} s")
        if problems:
            raise ValueError("invalid AV-Synth settings: " + "; ".join(problems))


def generate(out_dir: str | Path, config: SynthConfig) -> dict[str, Any]:
    """Write the dataset folder; returns the manifest (also written to ``synth.json``)."""
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    held_out = held_out_pairs(config.seed)
    started = time.perf_counter()
    counts: dict[str, dict[str, int]] = {}
    for split_index, split in enumerate(SPLITS):
        size = config.n_train if split == "train" else config.n_test
        rows = [_clip(out, config, split, split_index, index, held_out) for index in range(size)]
        annotations = [record for pairs in rows for record, _ in pairs[0]]
        _write_json(out / f"{split}.json", annotations)
        _write_jsonl(out / f"{split}_meta.jsonl", [meta for pairs in rows for _, meta in pairs[0]])
        _write_jsonl(out / f"{split}_scenes.jsonl", [pairs[1] for pairs in rows])
        counts[split] = dict(sorted(Counter(f"{r['task']}/{r['id'].rsplit('-', 1)[1]}" for r in annotations).items()))
    manifest = {"version": VERSION, "config": asdict(config), "slots": SLOTS,
                "held_out": {key: [list(pair) for pair in pairs] for key, pairs in held_out.items()},
                "records": counts, "seconds": round(time.perf_counter() - started, 2)}
    (out / "synth.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _clip(out: Path, config: SynthConfig, split: str, split_index: int, index: int,
          held_out: dict[str, list[tuple[str, str]]]) -> tuple[list, dict]:
    """Render and encode one clip; returns its ``(record, meta)`` pairs and its scene."""
    rng = np.random.default_rng([config.seed, split_index, index])
    clip_id = f"{split}-{index:05d}"
    scene = sample_scene(rng, clip_id, split, config.duration, held_out)
    frames = render_frames(scene, config.side, config.fps)
    audio = render_audio(scene, config.sample_rate, rng)
    relative = f"clips/{clip_id}.mp4"
    write_mp4(out / relative, frames, config.fps, audio, config.sample_rate)
    return records(scene, relative, rng), scene.to_dict()


def _write_json(path: Path, items: list) -> None:
    path.write_text(json.dumps(items, indent=1) + "\n")


def _write_jsonl(path: Path, items: list) -> None:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
