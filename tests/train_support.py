"""Tiny training data written at test time: small mp4 / wav files and a VideoLLaMA2-style annotation file.

Sample ``i`` of a group has its own flat colour (video) and tone frequency (audio) and a known one-word answer, so a
tiny model can learn the set. Groups: ``av`` (video + separate wav), ``video``, ``audio``, ``text``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from media import tone, write_video, write_wav

from avlm.recipe_loading import load_config

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
RGB = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (160, 0, 200), (255, 140, 0), (255, 255, 255), (0, 0, 0)]
QUESTIONS = {"av": "What colour is the screen?", "video": "Which colour do you see?", "audio": "Describe the sound.",
             "text": "Name a colour."}


def make_dataset(folder: Path, counts: dict[str, int] | None = None, name: str = "train.json") -> Path:
    """Write media under ``folder`` and the annotation list ``folder/name``; returns its path."""
    counts = counts if counts is not None else {"av": 4, "video": 2, "audio": 2, "text": 2}
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for group, count in counts.items():
        for i in range(count):
            records.append(_record(folder, group, i))
    path = folder / name
    path.write_text(json.dumps(records, indent=1))
    return path


def _record(folder: Path, group: str, i: int) -> dict:
    colour = i % len(COLOURS)
    record = {"id": f"{group}-{i}"}
    prompt = QUESTIONS[group]
    if group in ("av", "video"):
        frames = np.broadcast_to(np.array(RGB[colour], dtype=np.uint8), (4, 32, 32, 3)).copy()
        record["video"] = write_video(folder / f"{group}-{i}.mp4", frames=frames, fps=4, audio_rate=None).name
        prompt = "<video>\n" + prompt
    if group in ("av", "audio"):
        wave = tone(1.0, 16000, freq=300.0 + 150.0 * i)
        record["audio"] = write_wav(folder / f"{group}-{i}.wav", wave, 16000).name
        prompt = ("<audio>\n" if group == "audio" else "") + prompt
    answer = COLOURS[colour] if group != "audio" else f"tone {i}"
    record["conversations"] = [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]
    return record


def tiny_model_dir(tmp_path_factory) -> Path:
    """An avlm-tiny model folder (seed 0), built once per test session and shared by the training tests."""
    folder = tmp_path_factory.getbasetemp() / "avlm-tiny-train-model"
    if not (folder / "config.json").is_file():
        from avlm.assembly import build_model

        model, processor = build_model("avlm-tiny", seed=0)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    return folder


def tiny_data_dir(tmp_path_factory, counts: dict[str, int] | None = None, name: str = "mixed") -> Path:
    """:func:`make_dataset` once per session and ``counts``; returns the annotation file."""
    folder = tmp_path_factory.getbasetemp() / f"train-data-{name}"
    path = folder / "train.json"
    return path if path.is_file() else make_dataset(folder, counts)


def tiny_recipe(source: Path | dict, annotations: Path, output_dir: Path, *overrides: str):
    """A shipped recipe (or a dict) turned tiny: the test data, few steps, no worker processes (give the model with
    an override ``model=...``)."""
    from avlm.train.recipe import Recipe

    base = [f"data.sources=[{{path: {annotations}}}]", "data.num_workers=0",
            f"train.output_dir={output_dir}", "train.log_every=1", "train.save_every=null", "train.max_steps=3",
            "train.batch_size=2", "train.grad_accum=1", "train.mixed_precision=fp32", "train.frozen_dtype=float32",
            "train.gradient_checkpointing=false", "data.max_length=null"]
    return load_config(Recipe, source, [*base, *overrides])


def read_losses(output_dir: Path) -> list[float]:
    """Per-step losses from metrics.jsonl (log_every=1)."""
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if line.strip()]
