"""``--plan``: measure both stages on a sample of the inputs here, and project what a cluster of a given size does.

Decode seconds per clip are measured on one CPU core exactly as a decode worker spends them (the decode stage's own
function, one torch thread); model seconds per batch on this machine's device with ``generate`` as a replica runs it
(after one warm-up batch). From those: the clips/s of one replica, the decode CPUs that keep the replicas busy (the
CPU:GPU ratio to rent), and for a cluster of ``gpus`` GPUs (and ``cpus`` CPUs, when given) the clips per hour, which
stage bounds them, and the hours for the inputs still to do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from avlm.api import AVLM
from avlm.inference.requests import Request
from avlm.inference.runner import generate_texts
from avlm.scale.config import ScaleConfig
from avlm.scale.decode import decode_request


@dataclass
class StageCosts:
    """What one CPU core and one replica's device spend, measured on a sample."""

    sampled: int
    """Requests decoded."""
    unreadable: int
    """Of those, how many became errors (their decode time is counted: errors cost too)."""
    decode_seconds: float
    """Mean decode + preprocess + tokenize seconds per request on one CPU core."""
    batch_seconds: float
    """Mean seconds of one ``generate`` batch of ``batch_size`` on ``device``."""
    batch_size: int
    device: str

    @property
    def replica_clips_per_second(self) -> float:
        return self.batch_size / self.batch_seconds


@dataclass
class Projection:
    """A cluster's throughput from :class:`StageCosts`."""

    gpus: int
    replicas: int
    cpus_needed: int
    """CPUs that keep every replica busy: the decode CPUs plus the replicas' own."""
    cpus: int
    """CPUs assumed: given, or ``cpus_needed``."""
    clips_per_hour: float
    bound: str
    """"model" (the replicas are the slower stage) or "decode"."""
    hours: float
    """For ``clips`` requests."""
    clips: int


def measure(model: AVLM, requests: Sequence[Request], config: ScaleConfig, sample: int = 8) -> StageCosts:
    """Decode ``sample`` requests spread over ``requests`` on one thread, then time ``generate`` on batches of them.

    Raises:
        ValueError: no sampled request could be read (nothing to time the model on).
    """
    step = max(1, len(requests) // max(1, sample))
    chosen = list(requests[::step][:sample])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    samples, unreadable, start = [], 0, time.perf_counter()
    try:
        for request in chosen:
            item = decode_request(model.processor, request, config)
            unreadable += item.sample is None
            samples += [] if item.sample is None else [item.sample]
    finally:
        torch.set_num_threads(threads)
    decode_seconds = (time.perf_counter() - start) / len(chosen)
    if not samples:
        raise ValueError(f"--plan: none of the {len(chosen)} sampled inputs could be read; nothing to time the "
                         "model on")
    if model.device.type == "cpu":
        torch.set_num_threads(max(1, int(config.num_cpus)))  # as a CPU replica runs
    size = config.model_batch_size
    batches = [[samples[(start + i) % len(samples)] for i in range(size)]
               for start in range(0, max(len(samples), size), size)]
    generate_texts(model.model, model.processor, batches[0], config.generate_kwargs)  # warm-up
    start = time.perf_counter()
    for batch in batches:
        generate_texts(model.model, model.processor, batch, config.generate_kwargs)
    _synchronize(model.device)
    batch_seconds = (time.perf_counter() - start) / len(batches)
    return StageCosts(len(chosen), unreadable, decode_seconds, batch_seconds, size, str(model.device))


def project(costs: StageCosts, gpus: int, config: ScaleConfig, clips: int, cpus: int | None = None) -> Projection:
    """Throughput of ``gpus`` GPUs (``gpus / num_gpus`` replicas; on CPU replicas, one replica per "GPU") fed by
    ``cpus`` CPUs (None: as many as keep the replicas busy)."""
    replicas = max(1, int(gpus / config.num_gpus)) if config.num_gpus > 0 else gpus
    model_rate = replicas * costs.replica_clips_per_second
    replica_cpus = replicas * config.num_cpus
    cpus_needed = math.ceil(model_rate * costs.decode_seconds + replica_cpus)
    cpus = cpus if cpus is not None else cpus_needed
    decode_rate = max(0.0, cpus - replica_cpus) / costs.decode_seconds
    rate = min(model_rate, decode_rate)
    per_hour = rate * 3600
    return Projection(gpus, replicas, cpus_needed, cpus, per_hour, "model" if model_rate <= decode_rate else "decode",
                      clips / per_hour if per_hour > 0 else math.inf, clips)


def describe(costs: StageCosts, projection: Projection) -> str:
    """The plan as a few lines of text."""
    per_gpu = projection.cpus_needed / max(1, projection.gpus)
    lines = [
        f"measured on this machine: {costs.sampled} inputs ({costs.unreadable} unreadable)",
        f"decode stage: {costs.decode_seconds:.3f} s per clip on one CPU core ({1 / costs.decode_seconds:.2f} clips/s)",
        f"model stage: {costs.batch_seconds:.3f} s per batch of {costs.batch_size} on {costs.device} "
        f"({costs.replica_clips_per_second:.2f} clips/s per replica)",
        f"CPU:GPU ratio that keeps the replicas busy: {per_gpu:.1f} CPUs per GPU ({projection.cpus_needed} CPUs for "
        f"{projection.replicas} replicas on {projection.gpus} GPUs, the replicas' own CPUs included)",
        f"cluster of {projection.gpus} GPUs and {projection.cpus} CPUs: {projection.clips_per_hour:,.0f} clips/hour, "
        f"bound by the {projection.bound} stage; {projection.clips:,} clips to do: {projection.hours:.2f} h",
    ]
    if costs.device.startswith("cpu"):
        lines.append("note: the model was timed on CPU, so each \"GPU\" above is a CPU replica like this one; run "
                     "--plan with --device cuda on the GPU kind you will use")
    return "\n".join(lines)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
