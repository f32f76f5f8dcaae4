"""Caption many clips into a JSONL file, resumably: one line per clip as soon as its batch finishes.

Examples::

    avlm caption --model runs/av7b clips/ more.mp4 list.txt --output captions.jsonl
    avlm caption --model runs/av7b clips/ --output captions.jsonl --no-audio --num-frames 8 --batch-size 16

INPUTS are video files, folders (searched recursively for video extensions) or text files of paths (.txt/.lst/.list,
one per line). Output lines: ``{"video", "caption", "num_frames", "has_audio", "seconds"}`` or ``{"video", "error"}``
for a clip that could not be read (the run goes on). Re-running the same command skips the clips already in the
output, so a killed run resumes where it stopped. A clip without an audio track is captioned from its frames
(``has_audio: false``). Exit status 1 only when there were clips to caption and none succeeded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avlm.commands._model_arguments import add_model_arguments
from avlm.commands._ray_arguments import add_ray_arguments
from avlm.commands._window_arguments import add_caption_window_arguments, check_caption_window_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUTS", help="video files, folders, or .txt lists of paths")
    parser.add_argument("--output", "-o", type=Path, required=True, help="JSONL results file (appended; resumes)")
    parser.add_argument("--retry-errors", action="store_true",
                        help="remove the error lines of an earlier run from the output first, so they are retried")
    parser.add_argument("--prompt", default=None, help="instruction given with every clip "
                                                       "(default: 'Describe this video in detail.')")
    add_model_arguments(parser)
    add_caption_window_arguments(parser)
    add_ray_arguments(parser)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    from avlm.api import DEFAULT_CAPTION_PROMPT
    from avlm.inference import ResultWriter, discover_inputs
    from avlm.inference.job import print_summary, run_job
    from avlm.inference.options import generate_kwargs, load_from_args, num_workers_and_threads
    from avlm.inference.requests import AUTO, Request
    from avlm.inference.results import drop_errors
    from avlm.inference.runner import default_batch_size

    clips = discover_inputs(args.inputs)
    if not clips:
        raise ValueError(f"no video files found in {args.inputs}; give files, folders with video files "
                         "(.mp4, .mkv, ...), or a .txt list of paths")
    check_caption_window_arguments(args)
    if args.segment is not None:
        from avlm.commands._segments import run_segments  # imported here like the above: windowed runs only

        return run_segments(args, clips)
    kwargs = generate_kwargs(args)
    if args.retry_errors and args.output.exists():
        print(f"retrying {drop_errors(args.output, 'video', map(str, clips))} clips that failed in an earlier run")
    with ResultWriter(args.output, key="video") as writer:
        if all(str(clip) in writer.done for clip in clips):
            print(f"all {len(clips)} clips are already in {args.output}; nothing to do")
            return 0
        prompt = args.prompt or DEFAULT_CAPTION_PROMPT
        requests = [Request(prompt, str(clip), None if args.no_audio else AUTO) for clip in clips]
        records = [{"video": str(clip)} for clip in clips]
        if args.ray or args.plan:
            # Imported here: Ray is an optional extra (pip install "avlm[ray]"), needed only with these options.
            from avlm.scale.options import run_scaled

            summary = run_scaled(args, writer, requests, records, "caption", kwargs, unit="clips")
            if summary is None:  # --plan printed its projection
                return 0
        else:
            model = load_from_args(args)
            workers = num_workers_and_threads(args, model.device)
            summary = run_job(model, writer, requests, records, "caption",
                              batch_size=args.batch_size or default_batch_size(model.device), num_workers=workers,
                              generate_kwargs=kwargs, unit="clips")
    print_summary(summary, str(args.output), "clips")
    return summary.exit_code
