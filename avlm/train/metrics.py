"""What a run reports: ``metrics.jsonl`` (one line per logged step, written as it goes), ``loss.png``, a rich bar.

A metrics line::

    {"step": 20, "epoch": 0, "loss": 2.31, "lr": {"connectors": 1e-3, "lora": 2e-4}, "grad_norm": 0.8,
     "samples": 160, "samples_per_s": 12.5, "tokens_per_s": 4100.0, "media_errors": 0,
     "media_norms": {"text": 0.16, "video": 2.9, "audio": 1.7},
     "time": {"data_wait": 0.01, "vision": 0.12, "audio": 0.05, "connectors": 0.01, "llm_forward": 0.30,
              "backward": 0.55, "optimizer": 0.02}}

Times are seconds per step, averaged over the steps since the previous line (main process). ``media_norms``: mean L2
norm per token of the text embeddings and of each modality's connector output, in the line's last step
(:mod:`avlm.train.norms`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
PLOT_INTERVAL_S = 30.0


class MetricsLog:
    """Append-only metrics file of the main process; on resume, lines after the checkpoint's step are dropped."""

    def __init__(self, output_dir: Path, resumed_step: int | None, enabled: bool = True) -> None:
        self.path = output_dir / METRICS_FILE
        self.plot_path = output_dir / PLOT_FILE
        self.enabled = enabled
        self.history: list[dict[str, Any]] = []
        self.plotted_at = -float("inf")
        if not enabled:
            return
        if resumed_step is not None and self.path.is_file():
            lines = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            self.history = [line for line in lines if line["step"] <= resumed_step]
        self._rewrite()

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in self.history)

    def write(self, line: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.history.append(line)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def plot(self, force: bool = False) -> None:
        """Write loss.png: training loss against step (and the learning rate of the first group, right axis).

        Drawing takes a few tenths of a second, so between checkpoints (``force``) it is redrawn at most once every
        ``PLOT_INTERVAL_S`` seconds."""
        if not self.enabled or not self.history:
            return
        if not force and time.monotonic() - self.plotted_at < PLOT_INTERVAL_S:
            return
        self.plotted_at = time.monotonic()
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot

        steps = [line["step"] for line in self.history]
        figure, axis = pyplot.subplots(figsize=(7, 4))
        axis.plot(steps, [line["loss"] for line in self.history], color="tab:blue", label="loss")
        axis.set_xlabel("step")
        axis.set_ylabel("loss")
        axis.grid(alpha=0.3)
        rates = axis.twinx()
        first = next(iter(self.history[0]["lr"]))
        rates.plot(steps, [line["lr"][first] for line in self.history], color="tab:orange", alpha=0.6)
        rates.set_ylabel(f"lr ({first})")
        figure.subplots_adjust(left=0.1, right=0.88, bottom=0.12, top=0.95)  # fixed margins: tight_layout costs 0.3 s
        temporary = self.plot_path.with_suffix(".tmp.png")
        figure.savefig(temporary, dpi=100)
        pyplot.close(figure)
        os.replace(temporary, self.plot_path)


def progress_bar(enabled: bool) -> Progress:
    """The training bar: steps, loss, lr, samples/s, tokens/s, elapsed and remaining time."""
    return Progress(
        TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]} lr {task.fields[lr]} {task.fields[rate]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled,
    )


def format_fields(line: dict[str, Any]) -> dict[str, str]:
    first = next(iter(line["lr"].values()))
    rate = f"{line['samples_per_s']:.1f} samples/s {line['tokens_per_s']:.0f} tok/s"
    return {"loss": f"{line['loss']:.4f}", "lr": f"{first:.2e}", "rate": rate}
