"""What ``--ray`` and ``--plan`` do at run time in ``avlm caption``, ``avlm ask --questions`` and ``avlm eval``.

The options themselves (argparse only) are declared in :mod:`avlm.commands._ray_arguments`. A command builds its
requests and base records as it does without ``--ray``, opens its results file, and hands them to :func:`run_scaled`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import ray
import torch

from avlm.inference.job import JobSummary
from avlm.inference.options import load_from_args
from avlm.inference.requests import Request
from avlm.inference.results import ResultWriter
from avlm.scale.config import ScaleConfig
from avlm.scale.driver import connect, run_on_ray
from avlm.scale.plan import describe, measure, project


def run_scaled(args: argparse.Namespace, writer: ResultWriter, requests: Sequence[Request],
               records: Sequence[dict[str, Any]], answer_field: str, generate_kwargs: dict[str, Any], *,
               failed: Sequence[dict[str, Any]] = (), unit: str = "clips", ablate: str | None = None,
               media_fields: bool = True) -> JobSummary | None:
    """``--plan``: print the plan for the requests not yet in ``writer``'s file and return None. ``--ray``: join the
    cluster (``--ray-address``), answer them on Ray Data and return the job's summary.

    Args:
        args: the command's options.
        writer: the open results file (its keys are skipped).
        requests, records, answer_field, failed, unit, media_fields: as :func:`avlm.inference.job.run_job` takes
            them.
        generate_kwargs: ``generate`` settings from the options.
        ablate: ``avlm eval --ablate``: done by the decode workers.
    """
    todo = [request for request, record in zip(requests, records, strict=True)
            if writer.key_of(record) not in writer.done]
    if args.plan:
        print(plan_text(args, todo, generate_kwargs, ablate))
        return None
    for name, hint in (("num_workers", "--decode-concurrency"), ("threads", "--num-cpus")):
        if getattr(args, name) is not None:
            raise ValueError(f"--{name.replace('_', '-')} sets the single-process runner; with --ray use {hint}")
    started = connect(args.ray_address)
    try:
        config = config_from_args(args, generate_kwargs, ray.cluster_resources(), ablate)
        return run_on_ray(config, writer, requests, records, answer_field, failed=failed, unit=unit,
                          media_fields=media_fields)
    finally:
        if started:
            ray.shutdown()


def config_from_args(args: argparse.Namespace, generate_kwargs: dict[str, Any], resources: dict[str, float],
                     ablate: str | None = None) -> ScaleConfig:
    """The pipeline settings from the options; replicas and GPUs default from the cluster's ``resources``."""
    gpus = resources.get("GPU", 0.0)
    num_gpus = args.num_gpus if args.num_gpus is not None else 1.0 if gpus >= 1 else 0.0
    concurrency = args.concurrency if args.concurrency is not None else max(1, int(gpus / num_gpus)) if num_gpus else 1
    optional = {"num_cpus": args.num_cpus, "max_retries": args.max_retries}
    return ScaleConfig(
        model=str(args.model), batch_size=args.batch_size, concurrency=concurrency, num_gpus=num_gpus,
        decode_concurrency=args.decode_concurrency, device=args.device, dtype=args.dtype, num_frames=args.num_frames,
        fps=args.fps, video_backend=args.video_backend, ablate=ablate, generate=generate_kwargs, seed=args.seed,
        **{name: value for name, value in optional.items() if value is not None})


def plan_text(args: argparse.Namespace, todo: Sequence[Request], generate_kwargs: dict[str, Any],
              ablate: str | None = None) -> str:
    """Measure a sample of ``todo`` here (model on ``--device``) and project ``--plan-gpus`` GPUs."""
    if not todo:
        return "--plan: every input is already in the output; nothing to plan"
    if args.plan_sample < 1 or args.plan_gpus < 1:
        raise ValueError(f"--plan-sample {args.plan_sample} and --plan-gpus {args.plan_gpus} must be >= 1")
    model = load_from_args(args)
    resources = {"GPU": float(torch.cuda.device_count())} if model.device.type == "cuda" else {}
    config = config_from_args(args, generate_kwargs, resources, ablate)
    costs = measure(model, todo, config, args.plan_sample)
    return describe(costs, project(costs, args.plan_gpus, config, len(todo), args.plan_cpus))
