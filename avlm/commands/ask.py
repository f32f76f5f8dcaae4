"""Ask questions about videos (and their sound): one question printed to stdout, or a JSONL file of questions.

Examples::

    avlm ask --model runs/av7b --video clip.mp4 --question "What instrument is playing?"
    avlm ask --model runs/av7b --video clip.mp4 --audio voice.wav --question "Who speaks?"
    avlm ask --model runs/av7b --questions qa.jsonl --output answers.jsonl

A questions file holds lines ``{"video": "clip.mp4", "audio"?: "x.wav" | null, "question": "...", "id"?: ...}``
(paths relative to the file; no "audio": the video's own soundtrack, null: none). Each line gets one output line
``{"id", "video", "audio"?, "question", "answer", "num_frames", "has_audio", "seconds"}`` or ``{"id", ..., "error"}``,
keyed by ``id`` (default: the line number); malformed lines are reported with their line number and the run goes on.
Re-running skips the ids already in the output. Exit status 1 only when there was work and none of it succeeded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avlm.commands._model_arguments import add_model_arguments
from avlm.commands._ray_arguments import add_ray_arguments
from avlm.commands._window_arguments import add_window_arguments, check_window_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    one = parser.add_argument_group("one question")
    one.add_argument("--video", default=None, help="video file (or image)")
    one.add_argument("--audio", default=None, help="audio file (default: the video's own soundtrack, if any)")
    one.add_argument("--question", default=None, help="the question; the answer is printed")
    many = parser.add_argument_group("a file of questions")
    many.add_argument("--questions", type=Path, default=None, help="JSONL file of questions")
    many.add_argument("--output", "-o", type=Path, default=None, help="JSONL answers file (appended; resumes)")
    many.add_argument("--retry-errors", action="store_true",
                      help="remove the error lines of an earlier run from the output first, so they are retried")
    add_model_arguments(parser)
    add_ray_arguments(parser)
    add_window_arguments(parser)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    from avlm.inference.options import generate_kwargs, load_from_args, num_workers_and_threads
    from avlm.inference.requests import AUTO

    if (args.question is None) == (args.questions is None):
        raise ValueError("give either --question (with --video and/or --audio) or --questions FILE --output FILE")
    check_window_arguments(args)
    if args.segment is not None and (args.questions is not None or args.video is None):
        raise ValueError("--segment answers one --question for each window of one --video")
    kwargs = generate_kwargs(args)
    if args.question is not None:
        if args.video is None and args.audio is None or args.output is not None:
            raise ValueError("--question takes --video and/or --audio (and no --output; the answer is printed)")
        if args.ray or args.plan:
            raise ValueError("--ray and --plan run a file of questions: give --questions FILE --output FILE")
        audio = None if args.no_audio else args.audio if args.audio is not None else AUTO
        model = load_from_args(args)
        if args.threads is not None:
            num_workers_and_threads(args, model.device)
        if args.segment is not None:
            return _print_windows(model.ask(args.question, video=args.video, audio=audio, segment=args.segment,
                                            overlap=args.overlap, frames_per_segment=args.frames_per_segment,
                                            **kwargs))
        print(model.ask(args.question, video=args.video, audio=audio, **kwargs))
        return 0
    if args.output is None or args.video is not None or args.audio is not None:
        raise ValueError("--questions takes --output FILE (and no --video/--audio: they are given per line)")
    return _run_file(args, kwargs)


def _print_windows(windows: list) -> int:
    """One line per window, ``HH:MM:SS.mmm --> HH:MM:SS.mmm  answer`` (or ``error: ...``); status 1 if none answered."""
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    from avlm.inference.subtitles import format_time

    for window in windows:
        text = window.text if window.ok else f"error: {window.error}"
        print(f"{format_time(window.start, '.')} --> {format_time(window.end, '.')}  {text}")
    return 0 if any(window.ok for window in windows) else 1


def _run_file(args: argparse.Namespace, kwargs: dict) -> int:
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    import torch

    from avlm.inference import ResultWriter
    from avlm.inference.job import print_summary, run_job
    from avlm.inference.options import load_from_args, num_workers_and_threads
    from avlm.inference.questions import read_questions
    from avlm.inference.results import drop_errors
    from avlm.inference.runner import default_batch_size

    questions = read_questions(args.questions, use_audio=not args.no_audio)
    keys = [str(record["id"]) for record in questions.records + questions.failed]
    if args.retry_errors and args.output.exists():
        print(f"retrying {drop_errors(args.output, 'id', keys)} questions that failed in an earlier run")
    with ResultWriter(args.output, key="id") as writer:
        if all(key in writer.done for key in keys):
            print(f"all {len(keys)} questions are already in {args.output}; nothing to do")
            return 0
        if args.ray or args.plan:
            # Imported here: Ray is an optional extra (pip install "avlm[ray]"), needed only with these options.
            from avlm.scale.options import run_scaled

            summary = run_scaled(args, writer, questions.requests, questions.records, "answer", kwargs,
                                 failed=questions.failed, unit="questions")
            if summary is None:  # --plan printed its projection
                return 0
        else:
            model = load_from_args(args) if questions.requests else None
            device = model.device if model else torch.device("cpu")
            summary = run_job(model, writer, questions.requests, questions.records, "answer",
                              batch_size=args.batch_size or default_batch_size(device),
                              num_workers=num_workers_and_threads(args, device), generate_kwargs=kwargs,
                              failed=questions.failed, unit="questions")
    print_summary(summary, str(args.output), "questions")
    return summary.exit_code
