"""The driver of ``avlm caption / ask / eval --ray``: join a cluster, stream the results into the resumable job.

The command discovers its inputs and builds its requests as without ``--ray``; :func:`avlm.inference.job.run_job`
drops those already in the output file (the same resume rule) and hands the rest to :func:`ray_results`, which streams
them as a Ray Dataset through :func:`avlm.scale.answer` and yields each finished block of results back. ``run_job``
writes each line through the fsynced :class:`avlm.inference.ResultWriter`, so the file, its keys, resuming after a
kill (even ``kill -9`` of the driver) and ``--retry-errors`` are those of the single-process job. A result that Ray
delivers twice (a retried task) is written once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import ray
import ray.data

from avlm.inference.job import JobSummary, run_job
from avlm.inference.requests import Request
from avlm.inference.results import ResultWriter
from avlm.inference.runner import Result
from avlm.scale.config import ScaleConfig
from avlm.scale.pipeline import answer
from avlm.scale.rows import requests_table, result_of

INPUT_BLOCK_ROWS = 4096
"""Requests per block of the input dataset the driver builds (the decode stage splits them further)."""


def connect(address: str | None) -> bool:
    """Join a Ray cluster unless this process already has: ``address`` ``"auto"`` (a running cluster on this
    machine or ``RAY_ADDRESS``), ``host:port`` / ``ray://host:port``, or None (a new local cluster on this machine's
    CPUs and GPUs, unless ``RAY_ADDRESS`` names one). Returns True when this call connected (disconnect after)."""
    if ray.is_initialized():
        return False
    local = address is None and "RAY_ADDRESS" not in os.environ
    ray.init(address=address, **({"include_dashboard": False} if local else {}))
    ray.data.DataContext.get_current().enable_progress_bars = False  # the job draws its own bar
    return True


def run_on_ray(config: ScaleConfig, writer: ResultWriter, requests: Sequence[Request],
               records: Sequence[dict[str, Any]], answer_field: str, *, failed: Sequence[dict[str, Any]] = (),
               unit: str = "clips", media_fields: bool = True) -> JobSummary:
    """:func:`avlm.inference.job.run_job` (resume, progress, Ctrl-C, summary) with the Ray pipeline as its runner, on
    the cluster this process has joined (:func:`connect`)."""
    return run_job(None, writer, requests, records, answer_field, batch_size=config.model_batch_size, num_workers=0,
                   generate_kwargs=config.generate_kwargs, failed=failed, unit=unit, media_fields=media_fields,
                   runner=lambda todo: ray_results(todo, config))


def ray_results(requests: list[Request], config: ScaleConfig) -> Iterator[list[Result]]:
    """A :data:`avlm.inference.job.Runner` on Ray Data: the requests as a dataset through :func:`avlm.scale.answer`,
    each finished block of results as it arrives (``Result.index``: position in ``requests``), each index once."""
    table = requests_table(requests)
    blocks = [table.slice(start, INPUT_BLOCK_ROWS) for start in range(0, table.num_rows, INPUT_BLOCK_ROWS)]
    seen: set[int] = set()
    for block in answer(ray.data.from_arrow(blocks), config).iter_batches(batch_size=None, batch_format="pyarrow"):
        results = [result_of(row) for row in block.to_pylist() if row["index"] not in seen]
        seen.update(result.index for result in results)
        if results:
            yield results

