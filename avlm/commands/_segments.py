"""``avlm caption --segment``: the options turned into a windowed captioning run (imported by ``caption.run`` only).

Windows first (one resumable line each), then, with ``--summary``, one summary line per video whose windows are all
done, then subtitle files for the complete videos (``--format srt|vtt``, ``--subtitles DIR``). With ``--ray`` the
windows (and the summaries) are the rows of the Ray Data pipeline (:mod:`avlm.scale`): the same lines, resume and
errors; ``--plan`` projects the windows still to caption.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from avlm.api import AVLM, DEFAULT_CAPTION_PROMPT
from avlm.inference import ResultWriter
from avlm.inference.job import JobSummary, print_summary, run_job
from avlm.inference.options import generate_kwargs, load_from_args, num_workers_and_threads
from avlm.inference.requests import AUTO, Request
from avlm.inference.results import drop_errors
from avlm.inference.runner import default_batch_size
from avlm.inference.summary import summary_work
from avlm.inference.window_job import WINDOW_KEY, check_subtitle_names, plan_job, write_video_subtitles


def run_segments(args: argparse.Namespace, clips: list[Path]) -> int:
    """Caption the windows of ``clips`` as the options say; returns the exit status."""
    videos = [str(clip) for clip in clips]
    subtitle_format = "srt" if args.subtitles is not None and args.subtitle_format == "jsonl" else args.subtitle_format
    check_subtitle_names(videos, args.subtitles)
    kwargs = generate_kwargs(args)
    if args.retry_errors and args.output.exists():
        print(f"retrying {drop_errors(args.output, 'video', videos)} windows and files that failed in an earlier run")
    prompt = args.prompt or DEFAULT_CAPTION_PROMPT
    model = None
    with ResultWriter(args.output, key=WINDOW_KEY) as writer, _cluster(args):
        plan = plan_job(videos, args.segment, args.overlap, prompt, None if args.no_audio else AUTO, writer.done)
        if args.plan:
            return _print_plan(args, writer, plan.requests, plan.records, kwargs)
        if not args.ray and any(writer.key_of(record) not in writer.done for record in plan.records):
            model = _load(args)
        windows = _run(args, model, writer, plan.requests, plan.records, "caption", kwargs, plan.failed, "windows")
        summaries = None
        if args.summary and not windows.interrupted:
            work = summary_work({video: w for video, w in plan.plans.items() if w is not None}, writer.done,
                                WINDOW_KEY)
            model = model or (_load(args) if work.requests and not args.ray else None)
            summaries = _run(args, model, writer, work.requests, work.records, "summary", kwargs, work.failed,
                             "videos", media_fields=False)
        written = [] if subtitle_format == "jsonl" else write_video_subtitles(plan, writer.done, subtitle_format,
                                                                              args.subtitles)
    print_summary(windows, str(args.output), "windows")
    if summaries is not None and summaries.total:
        print_summary(summaries, str(args.output), "summaries")
    if written:
        print(f"wrote {len(written)} {subtitle_format} subtitle files, e.g. {written[0]}", file=sys.stderr)
    interrupted = windows.interrupted or (summaries is not None and summaries.interrupted)
    return 130 if interrupted else windows.exit_code


def _load(args: argparse.Namespace) -> AVLM:
    """The model, with ``--frames-per-segment`` frames per window; notes when windows outlast its audio input."""
    model = load_from_args(args)
    if args.frames_per_segment is not None:
        model.processor.config = dataclasses.replace(model.processor.config, num_frames=args.frames_per_segment)
    longest = model.processor.config.max_audio_seconds
    if not args.no_audio and args.segment > longest:
        print(f"note: the model takes {longest:g} s of audio per sample; windows of {args.segment:g} s give it the "
              f"first {longest:g} s of each window's audio", file=sys.stderr)
    return model


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[None]:
    """With ``--ray``: the Ray cluster joined once for the windows and the summaries (left at the end)."""
    if not args.ray:
        yield
        return
    # Imported here: Ray is an optional extra (pip install "avlm[ray]"), needed only with --ray.
    import ray

    from avlm.scale.driver import connect

    started = connect(args.ray_address)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _print_plan(args: argparse.Namespace, writer: ResultWriter, requests: list[Request],
                records: list[dict[str, Any]], kwargs: dict[str, Any]) -> int:
    """``--plan``: the projection for the windows not yet in the results file."""
    from avlm.scale.options import run_scaled  # imported here: Ray is an optional extra

    run_scaled(_scaled_args(args), writer, requests, records, "caption", kwargs, unit="windows")
    return 0


def _scaled_args(args: argparse.Namespace) -> argparse.Namespace:
    """The options as the Ray pipeline reads them: ``--frames-per-segment`` is each window's ``num_frames``."""
    if args.frames_per_segment is None:
        return args
    return argparse.Namespace(**{**vars(args), "num_frames": args.frames_per_segment})


def _run(args: argparse.Namespace, model: AVLM | None, writer: ResultWriter, requests: list[Request],
         records: list[dict[str, Any]], answer_field: str, kwargs: dict[str, Any], failed: list[dict[str, Any]],
         unit: str, media_fields: bool = True) -> JobSummary:
    """``run_job`` with the batching options (nothing to do when ``model`` is None: every request is done); with
    ``--ray``, the Ray Data pipeline on the joined cluster."""
    if args.ray:
        from avlm.scale.options import run_scaled  # imported here: Ray is an optional extra

        summary = run_scaled(_scaled_args(args), writer, requests, records, answer_field, kwargs, failed=failed,
                             unit=unit, media_fields=media_fields)
        assert summary is not None  # only --plan returns None
        return summary
    device = model.device if model is not None else None
    workers = num_workers_and_threads(args, device) if device is not None else 0
    batch_size = args.batch_size or (default_batch_size(device) if device is not None else 1)
    return run_job(model, writer, requests, records, answer_field, batch_size=batch_size, num_workers=workers,
                   generate_kwargs=kwargs, failed=failed, unit=unit, media_fields=media_fields)
