"""Command-line options shared by ``avlm caption``, ``avlm ask`` and ``avlm eval``: the model, media sampling,
batching and generation. argparse only, so that ``avlm COMMAND --help`` imports neither torch nor transformers; the
options are turned into a loaded model and ``generate`` settings by :mod:`avlm.inference.options`."""

from __future__ import annotations

import argparse

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
