"""Atomic training checkpoints: ``output_dir/checkpoints/step-XXXXXX``, complete if and only if it has that name.

A checkpoint is written into ``.tmp-step-XXXXXX`` next to it, every file fsynced, then renamed with ``os.replace``
(atomic on one file system); a crash mid-write leaves only a ``.tmp-*`` folder, which resuming ignores and the next
save of that step replaces. Contents::

    state.json              step, sampler position (epoch, batches done + its fingerprint), samples seen, the step
                            layout and the recipe settings the run computes from (a resume must match both)
    trainables.safetensors  every parameter with requires_grad (LoRA adapters, connectors, ...), model names
    optimizer.pt            optimizer.state_dict()
    scheduler.pt            scheduler.state_dict()
    rng-rank<r>.pt          python / numpy / torch (/ CUDA) RNG states of process r
    accelerate/             FSDP / DeepSpeed only: accelerator.save_state (sharded model + optimizer), instead of
                            trainables.safetensors and optimizer.pt
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

STATE_FILE = "state.json"
NAME = re.compile(r"^step-(\d{6,})$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``root`` (final names only), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [path for path in root.iterdir() if path.is_dir() and NAME.match(path.name)]
    return sorted(found, key=lambda path: int(NAME.match(path.name).group(1)))


def find_resume_checkpoint(root: str | os.PathLike, resume: str | None) -> Path | None:
    """``resume`` "auto": the newest complete checkpoint under ``root`` or None; a path: that checkpoint (checked)."""
    if resume is None:
        return None
    if resume == "auto":
        found = list_checkpoints(root)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"train.resume={resume!r}: {path / STATE_FILE} does not exist; give a complete "
                                f"checkpoint folder (checkpoints/step-XXXXXX) or 'auto'")
    return path


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().cpu().contiguous() for name, value in model.named_parameters()
            if value.requires_grad}


def load_trainables(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy saved trainable tensors into ``model``; the saved names must be exactly its trainable parameters."""
    params = {name: value for name, value in model.named_parameters() if value.requires_grad}
    missing, unknown = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    shapes = [f"{k}: {tuple(v.shape)} vs {tuple(params[k].shape)}" for k, v in tensors.items()
              if k in params and v.shape != params[k].shape]
    if missing or unknown or shapes:
        raise ValueError(f"{source}: does not match this run's trainable parameters (same model and trainable / lora "
                         f"sections needed); missing {missing[:5]}, unexpected {unknown[:5]}, shapes {shapes[:5]}")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)


def rng_state() -> dict[str, Any]:
    version, inner, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(inner), gauss], "numpy": [kind, keys.tolist(), position, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, inner, gauss = state["python"]
    random.setstate((version, tuple(inner), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(root: Path, step: int, accelerator: Any, model: nn.Module, optimizer: Any, scheduler: Any,
                     state: dict[str, Any], sharded: bool, keep_last: int | None) -> Path:
    """Write ``root/step-XXXXXX`` atomically (all processes call this; the main one writes the shared files)."""
    final, temp = root / checkpoint_name(step), root / f".tmp-{checkpoint_name(step)}"
    main = accelerator.is_main_process
    if main:
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    if sharded:
        accelerator.save_state(str(temp / "accelerate"))
    elif main:
        from safetensors.torch import save_file

        save_file(trainable_state(model), str(temp / "trainables.safetensors"), metadata={"format": "pt"})
        torch.save(optimizer.state_dict(), temp / "optimizer.pt")
    torch.save(rng_state(), temp / f"rng-rank{accelerator.process_index}.pt")
    if main:
        torch.save(scheduler.state_dict(), temp / "scheduler.pt")
        (temp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2) + "\n")
    accelerator.wait_for_everyone()
    if main:
        _fsync_tree(temp)
        if final.exists():  # a re-run of the same step after a resume: replace it
            shutil.rmtree(final)
        os.replace(temp, final)
        _fsync_dir(root)
        if keep_last is not None:
            for old in list_checkpoints(root)[:-keep_last]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def read_checkpoint(path: Path, accelerator: Any, model: nn.Module, optimizer: Any, scheduler: Any,
                    sharded: bool) -> dict[str, Any]:
    """Load model trainables, optimizer and scheduler from ``path``; returns state.json (RNG: :func:`read_rng`)."""
    if sharded:
        accelerator.load_state(str(path / "accelerate"))
    else:
        from safetensors.torch import load_file

        load_trainables(model, load_file(str(path / "trainables.safetensors")), str(path))
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    return json.loads((path / STATE_FILE).read_text())


def read_rng(path: Path, rank: int) -> None:
    file = path / f"rng-rank{rank}.pt"
    if not file.is_file():
        raise FileNotFoundError(f"{file} missing: the checkpoint was written by fewer processes; resume with the "
                                "same number of processes (the data order allows another split of the same global "
                                "batch, but each process's random state is its own)")
    set_rng_state(torch.load(file, weights_only=True))


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for path in [*sorted(p for p in folder.rglob("*") if p.is_dir()), folder]:
        _fsync_dir(path)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
