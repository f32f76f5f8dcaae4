"""What the model options of ``avlm caption``, ``avlm ask`` and ``avlm eval`` do at run time: load the model, the
``generate`` settings, decoding workers and torch threads. The options themselves (argparse only, so ``--help`` stays
light) are declared in :mod:`avlm.commands._model_arguments`."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import torch

from avlm.api import AVLM, load
from avlm.inference.runner import default_num_workers, usable_cores


def generate_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``model.generate`` settings from the options; sampling settings without ``--do-sample`` are an error."""
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens {args.max_new_tokens} must be >= 1")
    kwargs: dict[str, Any] = {"max_new_tokens": args.max_new_tokens}
    sampling = {"temperature": args.temperature, "top_p": args.top_p}
    given = {name: value for name, value in sampling.items() if value is not None}
    if given and not args.do_sample:
        names = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ValueError(f"{names} only act when sampling; add --do-sample (greedy decoding ignores them)")
    if args.do_sample:
        kwargs.update(do_sample=True, **given)
    return kwargs


def load_from_args(args: argparse.Namespace) -> AVLM:
    """``avlm.load`` with ``--model/--device/--dtype``; ``--num-frames/--fps/--video-backend`` replace the processor's
    settings; ``--seed`` seeds torch's generator (sampling)."""
    for name in ("batch_size", "num_frames"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} {value} must be >= 1")
    if args.num_workers is not None and args.num_workers < 0:
        raise ValueError(f"--num-workers {args.num_workers} must be >= 0")
    model = load(args.model, device=args.device, dtype=args.dtype)
    media = {"num_frames": args.num_frames, "fps": args.fps, "video_backend": args.video_backend}
    changes = {name: value for name, value in media.items() if value is not None}
    if changes:
        model.processor.config = dataclasses.replace(model.processor.config, **changes)
    if args.seed is not None:
        torch.manual_seed(args.seed)
    return model


def num_workers_and_threads(args: argparse.Namespace, device: torch.device) -> int:
    """The decoding workers (``--num-workers`` or the default); sets the main process's torch threads (``--threads``,
    or on CPU the cores the workers leave free)."""
    workers = args.num_workers if args.num_workers is not None else default_num_workers()
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads {args.threads} must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    elif device.type == "cpu":
        torch.set_num_threads(max(1, usable_cores() - workers))
    return workers
