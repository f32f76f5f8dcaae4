"""Evaluate a model on an annotation file: batched answers, exact match per task and question kind, caption
attributes and BLEU / CIDEr, as a rich table and a JSON report.

Examples::

    avlm eval --model runs/demo/model --data avsynth/test.json --output report.json
    avlm eval --model runs/demo/model --data avsynth/test.json --ablate audio --output report_no_audio.json
    avlm eval --model runs/av7b --data avqa_val.json --data-root /datasets/avqa --task av_qa --output avqa.json

The answers go to ``--predictions`` (default: next to the report, ``<report>.predictions.jsonl``) one line per record
as soon as its batch finishes; re-running the same command resumes from them. ``--ablate audio`` replaces every
soundtrack by silence and ``--ablate video`` every video by black frames (same prompts), to show which questions
need which sense. Exit status 1 when no record could be answered.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from avlm.commands._model_arguments import add_model_arguments
from avlm.commands._ray_arguments import add_ray_arguments

_METRIC_NAMES = {"bleu_1": "BLEU-1", "bleu_2": "BLEU-2", "bleu_3": "BLEU-3", "bleu_4": "BLEU-4", "cider": "CIDEr-D"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="annotation file (JSON list or JSONL)")
    parser.add_argument("--data-root", type=Path, default=None, help="folder of the media (default: the file's)")
    parser.add_argument("--meta", type=Path, default=None,
                        help="metadata JSONL with id, kind, attributes (default: <data stem>_meta.jsonl if present)")
    parser.add_argument("--task", action="append", default=[], help="evaluate only this task (repeatable)")
    parser.add_argument("--ablate", choices=("audio", "video"), default=None,
                        help="replace the soundtrack by silence / the video by black frames")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N records")
    parser.add_argument("--output", "-o", type=Path, required=True, help="JSON report")
    parser.add_argument("--predictions", type=Path, default=None,
                        help="JSONL of answers (default: <output>.predictions.jsonl; reused on a rerun)")
    add_model_arguments(parser)
    add_ray_arguments(parser)
    parser.set_defaults(max_new_tokens=64)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    from avlm.eval.harness import build_report, load_eval_set
    from avlm.inference import ResultWriter
    from avlm.inference.job import run_job
    from avlm.inference.options import generate_kwargs, load_from_args, num_workers_and_threads
    from avlm.inference.runner import default_batch_size

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit {args.limit} must be >= 1")
    predictions_path = args.predictions or args.output.with_suffix(".predictions.jsonl")
    kwargs = generate_kwargs(args)
    started = time.perf_counter()
    if args.ray or args.plan:  # the decode workers apply --ablate (avlm.scale): this process reads no media
        model, evaluation = None, load_eval_set(args.data, args.data_root, args.meta, args.task, limit=args.limit)
    else:
        model = load_from_args(args)
        evaluation = load_eval_set(args.data, args.data_root, args.meta, args.task, args.ablate,
                                   model.processor.config.num_frames, args.limit)
    stamp = {"model": str(args.model), "ablate": args.ablate}
    with ResultWriter(predictions_path, key="id") as writer:
        _check_same_run(writer.done, stamp, predictions_path)
        bases = [{"id": row["id"], **stamp} for row in evaluation.references]
        failed = [{**row, **stamp} for row in evaluation.failed]
        if model is None:
            # Imported here: Ray is an optional extra (pip install "avlm[ray]"), needed only with --ray / --plan.
            from avlm.scale.options import run_scaled

            summary = run_scaled(args, writer, evaluation.requests, bases, "prediction", kwargs, failed=failed,
                                 unit="questions", ablate=args.ablate)
            if summary is None:  # --plan printed its projection
                return 0
        else:
            workers = num_workers_and_threads(args, model.device)
            summary = run_job(model, writer, evaluation.requests, bases, "prediction", failed=failed,
                              batch_size=args.batch_size or default_batch_size(model.device), num_workers=workers,
                              generate_kwargs=kwargs, unit="questions")
        answers = dict(writer.done)
    report = build_report(evaluation, answers, model=str(args.model), data=str(args.data), ablate=args.ablate,
                          seconds=round(time.perf_counter() - started, 2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"report: {args.output}; answers: {predictions_path}")
    return summary.exit_code


def _check_same_run(done: dict[str, dict[str, Any]], stamp: dict[str, Any], path: Path) -> None:
    """Refuse to mix answers of another model or ablation into this evaluation."""
    other = next((row for row in done.values() if {k: row.get(k) for k in stamp} != stamp), None)
    if other is not None:
        raise ValueError(f"{path} holds answers of another run (model {other.get('model')!r}, ablate "
                         f"{other.get('ablate')!r}); this run is model {stamp['model']!r}, ablate "
                         f"{stamp['ablate']!r}. Pass another --predictions/--output, or delete the file")


def print_report(report: dict[str, Any]) -> None:
    """Accuracy per task and question kind (with chance), caption attributes and BLEU / CIDEr, as rich tables."""
    # Imported here, not at the top, to keep `avlm --help` light.
    from rich.console import Console
    from rich.table import Table

    title = f"avlm eval: {report['data']}" + (f" (ablate {report['ablate']})" if report["ablate"] else "")
    table = Table(title=title)
    for column in ("task / question kind", "accuracy", "correct / total", "chance"):
        table.add_column(column, justify="left" if column.startswith("task") else "right")
    exact = report["exact_match"]
    for kind, stats in exact.get("kind", {}).items():
        chance = report["chance"].get(kind)
        table.add_row(kind, f"{stats['accuracy']:.1%}", f"{stats['correct']} / {stats['total']}",
                      "" if chance is None else f"{chance:.1%}")
    for task, stats in exact.get("task", {}).items():
        table.add_row(f"[bold]{task} (all)", f"[bold]{stats['accuracy']:.1%}", f"{stats['correct']} / {stats['total']}",
                      "")
    attributes = report["attributes"]
    for name, stats in attributes.get("attribute", {}).items():
        table.add_row(f"caption attribute: {name}", f"{stats['accuracy']:.1%}",
                      f"{stats['correct']} / {stats['total']}", "")
    if "all" in attributes:
        stats = attributes["all"]
        table.add_row("[bold]caption attributes (all)", f"[bold]{stats['accuracy']:.1%}",
                      f"{stats['correct']} / {stats['total']}", "")
    for name, value in report["caption_metrics"].items():
        table.add_row(f"caption {_METRIC_NAMES.get(name, name)}", f"{value:.3f}", "", "")
    console = Console()
    console.print(table)
    if report["skipped"]:
        console.print(f"[red]{len(report['skipped'])} annotation problem(s); those records were left out[/red], e.g. "
                      f"{report['skipped'][0]}")
    if report["errors"]:
        console.print(f"[red]{len(report['errors'])} records could not be answered[/red], e.g. "
                      f"{report['errors'][0]['id']}: {report['errors'][0]['error']}")
