"""Learning curves: a training run's checkpoints evaluated on held-out questions, and one PNG per task.

A point is the accuracy of one checkpoint (``step``) on an :class:`avlm.eval.harness.EvalSet`: per task, per question
kind, and for captions per stated attribute (:func:`curve_point`). ``avlm demo --full`` keeps the checkpoints of its
run, loads each one's trainable weights into the finished model in turn (:func:`load_checkpoint_weights`: the
frozen weights are the same in every checkpoint), evaluates it and draws :func:`plot_curves`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from avlm.eval.harness import EvalSet, build_report, evaluate
from avlm.modeling.serialization import check_state_dict

TRAINABLES_FILE = "trainables.safetensors"
"""The trainable tensors of a checkpoint, by parameter name (written by :mod:`avlm.train.checkpoints`)."""

CAPTIONS = "caption attributes"
"""The curve of the caption task: the share of stated attributes a caption names correctly."""


def load_checkpoint_weights(model: nn.Module, checkpoint: str | Path) -> int:
    """Copy the trainable tensors of a training checkpoint into ``model``; returns how many were copied.

    Raises:
        FileNotFoundError: the checkpoint has no ``trainables.safetensors``.
        ValueError: a saved tensor is not a parameter of ``model`` or has another shape (the checkpoint is of
            another model); the message names them.
    """
    path = Path(checkpoint) / TRAINABLES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint}: no {TRAINABLES_FILE}; give a checkpoint folder of a training run "
                                "(train.output_dir/checkpoints/step-NNNNNN)")
    tensors = load_file(str(path))
    params = dict(model.named_parameters())
    # a subset of the parameters: each saved tensor must be one of them, with its shape (none is missing)
    check_state_dict({name: params[name].shape for name in tensors if name in params}, tensors, str(path))
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)
    return len(tensors)


def curve_point(step: int, report: dict[str, Any]) -> dict[str, Any]:
    """``{"step", "accuracy": {name: value}}`` from an evaluation report: each task (``audio_qa``, ...), each kind
    (``video_qa/direction``, ...), :data:`CAPTIONS` and each caption attribute (``caption/colour``, ...)."""
    scores = report["exact_match"]
    accuracy = {name: stats["accuracy"] for group in ("task", "kind")
                for name, stats in scores.get(group, {}).items()}
    attributes = report.get("attributes", {})
    if "all" in attributes:
        accuracy[CAPTIONS] = attributes["all"]["accuracy"]
    for name, stats in attributes.get("attribute", {}).items():
        accuracy[f"caption/{name.removeprefix('attribute:')}"] = stats["accuracy"]
    return {"step": step, "accuracy": accuracy}


def evaluate_checkpoints(model: Any, checkpoints: Sequence[tuple[int, Path]], evaluation: EvalSet,
                         **options: Any) -> list[dict[str, Any]]:
    """:func:`curve_point` of each ``(step, checkpoint folder)``, loaded in turn into ``model`` (an
    :class:`avlm.api.AVLM`; its weights are those of the last checkpoint afterwards). ``options``: as
    :func:`avlm.eval.harness.evaluate` takes them."""
    points = []
    for step, folder in checkpoints:
        load_checkpoint_weights(model.model, folder)
        points.append(curve_point(step, build_report(evaluation, evaluate(model, evaluation, **options))))
    return points


def plot_curves(points: Sequence[dict[str, Any]], folder: str | Path,
                targets: dict[str, float] | None = None) -> list[Path]:
    """One PNG per task in ``folder`` (``audio_qa.png``, ``video_qa.png``, ``av_qa.png``, ``captions.png``): its
    accuracy and that of each of its kinds (attributes for captions) against the step, with the task's target as a
    dashed line; also ``curves.json`` (the points). Returns the PNG paths."""
    import matplotlib  # imported here: plotting is the only use, and it is slow to import

    matplotlib.use("Agg")
    from matplotlib import pyplot

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "curves.json").write_text(json.dumps(list(points), indent=1) + "\n")
    names = sorted({name for point in points for name in point["accuracy"]})
    groups = {task: [task, *(name for name in names if name.startswith(f"{task}/"))]
              for task in ("audio_qa", "video_qa", "av_qa") if task in names}
    if CAPTIONS in names:
        groups["captions"] = [CAPTIONS, *(name for name in names if name.startswith("caption/"))]
    written = []
    for task, lines in groups.items():
        figure, axes = pyplot.subplots(figsize=(6, 4))
        for name in lines:
            steps = [point["step"] for point in points if name in point["accuracy"]]
            values = [point["accuracy"][name] for point in points if name in point["accuracy"]]
            axes.plot(steps, values, marker="o", linewidth=2.5 if name in (task, CAPTIONS) else 1.0,
                      label=name.split("/", 1)[-1] if "/" in name else f"{name} (all)")
        target = (targets or {}).get(CAPTIONS if task == "captions" else task)
        if target is not None:
            axes.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.0%}")
        axes.set(xlabel="step", ylabel="held-out accuracy", ylim=(0, 1.02), title=f"{task}: held-out accuracy")
        axes.legend(fontsize=7, loc="lower right")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        path = folder / f"{task}.png"
        figure.savefig(path, dpi=100)
        pyplot.close(figure)
        written.append(path)
    return written
