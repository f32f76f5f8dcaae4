"""Helpers of the inference tests: a tiny model folder whose outputs differ from clip to clip, and small clips."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from media import write_video


def tiny_folder(tmp_path_factory) -> Path:
    """:func:`build_tiny_folder` once per test session (per xdist worker), shared by the inference test modules."""
    folder = tmp_path_factory.getbasetemp() / "avlm-tiny-scaled"
    return folder if (folder / "config.json").is_file() else build_tiny_folder(folder)


def build_tiny_folder(folder: Path, scale: float = 8.0) -> Path:
    """The avlm-tiny preset (random init, seed 0) with every parameter multiplied by ``scale``: random-init weights
    are so small that greedy decoding writes the same few tokens whatever the input; scaled, the text depends on
    the clip, so batched-versus-alone comparisons can fail."""
    from avlm.assembly import build_model

    model, processor = build_model("avlm-tiny", seed=0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(scale)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_clips(folder: Path, count: int, audio_every: int = 2) -> list[Path]:
    """``count`` small mp4 clips (64x48, 0.6 to 2 s); every ``audio_every``-th one has a soundtrack."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_video(folder / f"clip{i:02d}.mp4", seconds=0.6 + 0.2 * (i % 8), fps=10,
                        audio_rate=16000 if i % audio_every == 0 else None) for i in range(count)]


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run with one intra-op thread: on a busy shared CPU, OpenMP threads waiting for each other make the tiny
    model's generate ~50x slower (0.7 s instead of 15 ms per call). Restores the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
