"""Timing, memory and optimizer helpers shared by the training-step benchmarks (``bench_lora_step.py``,
``bench_av_step.py``).

Times are wall-clock seconds bracketed by ``torch.cuda.synchronize()`` on CUDA; on CPU they are the process's CPU
seconds (the scripts run one thread there), which a busy shared machine disturbs far less than wall time.

Also the ``--json PATH`` record the benchmark scripts write (:func:`environment`, :func:`write_json`).
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

IGNORE_INDEX = -100


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def clock(device: str) -> Callable[[], float]:
    """Wall time on CUDA; on CPU the process's CPU time."""
    return time.perf_counter if device.startswith("cuda") else time.process_time


class Stopwatch:
    """Seconds per stage (``with watch("vision"): ...``), each stage bracketed by device synchronisations."""

    def __init__(self, device: str) -> None:
        self.device, self.times, self.now = device, defaultdict(float), clock(device)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        synchronize(self.device)
        start = self.now()
        yield
        synchronize(self.device)
        self.times[stage] += self.now() - start


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> tuple[float, float] | None:
    """(max allocated, max reserved) GiB since the last :func:`reset_peak`; None on CPU."""
    if not device.startswith("cuda"):
        return None
    return torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30


def free_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def adamw(parameters: list[torch.nn.Parameter], fused: bool) -> torch.optim.Optimizer:
    """AdamW (lr 1e-5): ``fused=True`` (one kernel for all tensors) or torch's default (foreach) implementation."""
    return torch.optim.AdamW(parameters, lr=1e-5, fused=True) if fused else torch.optim.AdamW(parameters, lr=1e-5)


def set_threads(device: str, threads: int | None) -> None:
    """On CPU one thread by default: OpenMP threads on a busy shared box wait on each other."""
    if threads or not device.startswith("cuda"):
        torch.set_num_threads(threads or 1)


def environment(device: str) -> dict:
    """Where a figure was taken: date (UTC), versions, device, GPU name on CUDA, torch threads, host."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"torch": torch.__version__, "python": platform.python_version()}
    for package in ("transformers", "peft"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    cuda = device.startswith("cuda")
    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), **versions, "device": device,
            "gpu": torch.cuda.get_device_name() if cuda else None, "cuda": torch.version.cuda if cuda else None,
            "threads": torch.get_num_threads(), "host": platform.node()}


def write_json(path: str | os.PathLike | None, record: dict) -> None:
    """Write ``record`` as one JSON object to ``path`` (nothing when None), replacing it atomically: the scripts
    write a partial record (``"complete": false``) after each path and the whole one at the end, so a run killed by
    a time limit still leaves what it measured."""
    if path is None:
        return
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    partial = f"{path}.tmp"
    with open(partial, "w") as file:
        json.dump(record, file, indent=2)
        file.write("\n")
    os.replace(partial, path)
