"""A resumable batch job behind ``avlm caption --output`` and ``avlm ask --questions``: requests in, JSON lines out.

Each request comes with its base record (e.g. ``{"video": path}``). Requests whose key is already in the output
file are skipped (resume); each finished batch is written at once, one fsynced line per request (see
:class:`avlm.inference.ResultWriter`): the base record plus the answer field, ``num_frames``, ``has_audio`` and
``seconds``, or the base record plus ``error``. A rich progress bar (clips/s, ETA, errors so far) and a summary
table go to stderr. Ctrl-C stops the job after the batch in progress (its lines are written); a second Ctrl-C stops
at once. Either way every finished line is on disk and a rerun resumes.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from avlm.api import AVLM
from avlm.inference.requests import Request
from avlm.inference.results import ResultWriter
from avlm.inference.runner import Result, run_requests

Runner = Callable[[list[Request]], Iterator[list[Result]]]
"""Answers a list of requests: yields the results of each finished batch, ``Result.index`` = position in the list."""


@dataclass
class JobSummary:
    """Counts of a job run."""

    total: int = 0
    """Requests given."""
    skipped: int = 0
    """Already in the output file (an earlier run)."""
    done: int = 0
    """Answered in this run."""
    errors: list[str] = field(default_factory=list)
    """Errors of this run, one line each."""
    seconds: float = 0.0
    """Wall time of this run."""
    interrupted: bool = False
    """Stopped by Ctrl-C (rerunning the command resumes)."""

    @property
    def exit_code(self) -> int:
        """130 after Ctrl-C, 1 when there was work and every request of it failed, else 0."""
        return 130 if self.interrupted else 1 if self.nothing_done else 0

    @property
    def nothing_done(self) -> bool:
        """True when there was work and every request of it failed (the exit code is non-zero then)."""
        return self.total > self.skipped and self.done == 0


def run_job(model: AVLM | None, writer: ResultWriter, requests: Sequence[Request], records: Sequence[dict[str, Any]],
            answer_field: str, *, batch_size: int, num_workers: int, generate_kwargs: dict[str, Any],
            failed: Sequence[dict[str, Any]] = (), unit: str = "clips", runner: Runner | None = None,
            media_fields: bool = True) -> JobSummary:
    """Answer the requests not yet in ``writer``'s file and write each result as soon as its batch finishes.

    Args:
        model: an :class:`avlm.api.AVLM` (None when every request is already done or failed, or with ``runner``).
        writer: the open results file (its ``done`` keys are skipped).
        requests: the requests, in input order.
        records: one base record per request; ``writer.key_of(record)`` is its key in the output.
        answer_field: where the generated text goes (``"caption"``, ``"answer"``).
        batch_size: samples per generate call.
        num_workers: decoding worker processes.
        generate_kwargs: ``model.generate`` settings.
        failed: error records known before running (e.g. malformed input lines); written unless already done.
        unit: what a request is called in the progress bar.
        runner: answers the requests still to do, yielding batches of results whose ``index`` is the position in
            that list (default: :func:`avlm.inference.runner.run_requests` in this process with ``model``,
            ``batch_size``, ``num_workers``; ``avlm.scale`` passes its Ray Data pipeline).
        media_fields: add ``num_frames``, ``has_audio`` and ``seconds`` to each answer (False for text-only requests).
    """
    summary = JobSummary(total=len(requests) + len(failed))
    for record in failed:
        if writer.key_of(record) in writer.done:
            summary.skipped += 1
        else:
            writer.write(record)
            summary.errors.append(record["error"])
    todo = [i for i, record in enumerate(records) if writer.key_of(record) not in writer.done]
    summary.skipped += len(records) - len(todo)
    start = time.perf_counter()
    if not todo:
        return summary
    with _progress(unit) as progress, _stop_on_ctrl_c() as stop:
        task = progress.add_task(unit, total=len(todo), errors=len(summary.errors))
        try:
            pending = [requests[i] for i in todo]
            batches = runner(pending) if runner is not None else run_requests(
                model.model, model.processor, pending, batch_size=batch_size, num_workers=num_workers,
                generate_kwargs=generate_kwargs)
            for batch in batches:
                for result in batch:
                    _write(writer, records[todo[result.index]], result, answer_field, summary, media_fields)
                progress.update(task, advance=len(batch), errors=len(summary.errors))
                if stop.is_set():
                    summary.interrupted = True
                    break
        except KeyboardInterrupt:  # a second Ctrl-C: every finished line is already on disk; report, rerun resumes
            summary.interrupted = True
    summary.seconds = time.perf_counter() - start
    return summary


@contextlib.contextmanager
def _stop_on_ctrl_c() -> Iterator[threading.Event]:
    """While the job runs, the first SIGINT sets the returned event (the loop stops after the batch in progress) and
    a second one raises KeyboardInterrupt. A KeyboardInterrupt raised by the first could land inside library code
    that swallows it (a destructor, a C callback) and be lost; a flag cannot. Off the main thread, where no signal
    handler can be installed, the event is never set and Ctrl-C behaves as usual."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _write(writer: ResultWriter, base: dict[str, Any], result: Result, answer_field: str,
           summary: JobSummary, media_fields: bool = True) -> None:
    if result.error is not None:
        writer.write({**base, "error": result.error})
        summary.errors.append(result.error)
        return
    media = {"num_frames": result.num_frames, "has_audio": result.has_audio,
             "seconds": None if result.seconds is None else round(result.seconds, 3)}
    writer.write({**base, answer_field: result.text, **(media if media_fields else {})})
    summary.done += 1


def _progress(unit: str) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(unit),
                    TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[errors]} errors"),
                    console=Console(stderr=True))


class _RateColumn(ProgressColumn):
    """Requests per second since the task started."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        return Text(f"{task.completed / elapsed if elapsed > 0 else 0.0:.2f} {self.unit}/s")


def print_summary(summary: JobSummary, output: str, unit: str = "clips", max_errors: int = 10) -> None:
    """A rich table of the run (done, skipped, errors, throughput) and the first errors, on stderr."""
    table = Table(title=f"avlm: {output}", show_header=False)
    rate = summary.done / summary.seconds if summary.seconds > 0 else 0.0
    rows = [(f"{unit} given", summary.total), ("already in the output (skipped)", summary.skipped),
            ("answered now", summary.done), ("errors now", len(summary.errors)),
            ("wall time", f"{summary.seconds:.1f} s"), (f"{unit}/s", f"{rate:.2f}")]
    for name, value in rows:
        table.add_row(name, str(value))
    console = Console(stderr=True)
    console.print(table)
    if summary.interrupted:
        console.print(f"[yellow]interrupted[/yellow]: {summary.done + len(summary.errors)} results written; run the "
                      "same command again to resume")
    for error in summary.errors[:max_errors]:
        console.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
    if len(summary.errors) > max_errors:
        console.print(f"... and {len(summary.errors) - max_errors} more errors (see the output file)")
