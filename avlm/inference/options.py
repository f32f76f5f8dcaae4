"""Command-line options shared by ``avlm caption`` and ``avlm ask``: the model, media sampling and generation."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import torch

DTYPES = ("auto", "float32", "bfloat16", "float16")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--device``, ``--dtype``, media sampling, batching and generation options."""
    parser.add_argument("--model", required=True, help="model folder (avlm build / training output, or an official "
                                                        "VideoLLaMA2 checkpoint folder)")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu, ... (default: cuda when available)")
    parser.add_argument("--dtype", choices=DTYPES, default=None,
                        help="parameter dtype (default: bfloat16 on a GPU, float32 on CPU; auto: as saved)")
    media = parser.add_argument_group("media")
    media.add_argument("--num-frames", type=int, default=None, help="frames per clip (default: the model's)")
    media.add_argument("--fps", type=float, default=None, help="sample frames at this rate (at most --num-frames)")
    media.add_argument("--video-backend", choices=("auto", "decord", "pyav"), default=None,
                       help="video decoder (default: the model's, normally auto = decord, then PyAV for what decord "
                            "cannot read); pyav is faster on long videos, see docs/benchmarks.md")
    media.add_argument("--no-audio", action="store_true", help="ignore soundtracks: answer from the frames only")
    run = parser.add_argument_group("batching")
    run.add_argument("--batch-size", type=int, default=None, help="clips per generate call (default: 16 GPU, 4 CPU)")
    run.add_argument("--num-workers", type=int, default=None,
                     help="processes decoding clips ahead of the model (default: CPU cores - 1, at most 8)")
    run.add_argument("--threads", type=int, default=None,
                     help="torch threads of the main process (default on CPU: the cores the workers leave free, at "
                          "least 1; oversubscribed cores make CPU generation many times slower)")
    generation = parser.add_argument_group("generation")
    generation.add_argument("--max-new-tokens", type=int, default=256, help="longest answer, in tokens")
    generation.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    generation.add_argument("--temperature", type=float, default=None, help="sampling temperature (with --do-sample)")
    generation.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (with --do-sample)")
    generation.add_argument("--seed", type=int, default=None, help="random seed for sampling")


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


def load_from_args(args: argparse.Namespace) -> Any:
    """``avlm.load`` with ``--model/--device/--dtype``; ``--num-frames/--fps/--video-backend`` replace the processor's
    settings; ``--seed`` seeds torch's generator (sampling)."""
    from avlm.api import load

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
    from avlm.inference.runner import default_num_workers, usable_cores

    workers = args.num_workers if args.num_workers is not None else default_num_workers()
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads {args.threads} must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    elif device.type == "cpu":
        torch.set_num_threads(max(1, usable_cores() - workers))
    return workers
