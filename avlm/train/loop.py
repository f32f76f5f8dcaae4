"""The training loop: a plain loop on accelerate (``avlm train`` runs :func:`train`).

One optimizer step = ``grad_accum`` micro-batches of ``batch_size`` samples on each process. The data comes from the
recipe's rank-aware sampler (:func:`avlm.data.build_data`), which already gives each process its share of the global
batch; the loader is therefore not passed through ``accelerator.prepare`` and batches are moved to the device here.
The learning-rate schedule counts optimizer steps and is stepped here once per step (not prepared either, so
accelerate does not multiply its steps by the number of processes).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from avlm.train.checkpoints import (
    find_resume_checkpoint,
    list_checkpoints,
    read_checkpoint,
    read_rng,
    write_checkpoint,
)
from avlm.train.config import Recipe
from avlm.train.distributed import is_sharded, make_accelerator, process_info, run_all_encoders
from avlm.train.final import write_final
from avlm.train.metrics import MetricsLog, format_fields, progress_bar
from avlm.train.setup import build_optimizer, build_scheduler, build_setup, total_steps
from avlm.train.stages import STAGES, TrainingForward, labelled_tokens, to_device
from avlm.train.stream import DataStream

TIMES = ("data_wait", *STAGES, "backward", "optimizer")


@dataclass
class TrainResult:
    """What a finished run returns."""

    final: Path | None
    """The final model folder; None when stopped early (``stop_at``)."""
    steps: int
    losses: list[float] = field(default_factory=list)
    """The loss of every step this process ran (global token mean; after a resume: from the resumed step on)."""


@dataclass
class _Window:
    """Sums over the steps since the last metrics line."""

    steps: int = 0
    seconds: float = 0.0
    loss: float = 0.0
    samples: int = 0
    tokens: int = 0
    media_errors: int = 0
    times: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIMES, 0.0))


def train(recipe: Recipe, say: Any = print, stop_at: int | None = None) -> TrainResult:
    """Run ``recipe`` to the end (resuming when ``train.resume`` says so) and write ``output_dir/final``.

    ``stop_at``: leave after this step with a checkpoint and no final/, as a pre-empted or time-limited job would;
    a later run with ``resume="auto"`` continues exactly where it stopped.
    """
    config = recipe.train
    _check(recipe)
    rank, world_size = process_info()
    setup = build_setup(recipe, rank, world_size)
    model, data = setup.model, setup.data
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    accelerator = make_accelerator(config, recipe.distributed, model, world_size)
    main = accelerator.is_main_process
    if main:
        say(data.report.summary())
        say("trainable parameters: " + ", ".join(f"{part} {count:,}" for part, count in setup.trainable_counts.items()
                                                  if count))
    forward = TrainingForward(model, setup.processor.config, run_all_encoders(recipe.distributed, world_size))
    optimizer = build_optimizer(model, config)
    steps = total_steps(config, len(data.loader))
    scheduler = build_scheduler(optimizer, config, steps)
    wrapped, optimizer = accelerator.prepare(forward, optimizer)
    sharded = is_sharded(recipe.distributed, world_size)
    root = Path(config.output_dir) / "checkpoints"
    resume = find_resume_checkpoint(root, config.resume)
    if resume is None and config.resume is None and list_checkpoints(root):
        raise ValueError(f"{root} already holds checkpoints of an earlier run; continue it with --resume "
                         f"(train.resume=auto) or choose another train.output_dir")
    step, samples = 0, 0
    if resume is not None:
        state = read_checkpoint(resume, accelerator, model, optimizer, scheduler, sharded)
        data.sampler.load_state_dict(state["sampler"])
        step, samples = state["step"], state["samples"]
        read_rng(resume, rank)
        if main:
            say(f"resumed from {resume} at step {step}")
    else:
        from accelerate.utils import set_seed

        set_seed(config.seed + rank)
    if step >= steps and main:
        say(f"the run already has {step} of {steps} steps; writing final/ only")
    stream, metrics = DataStream(data.sampler, data.loader), MetricsLog(Path(config.output_dir), step, main)
    window, losses = _Window(), []
    wrapped.train()
    with progress_bar(main) as bar:
        task = bar.add_task("train", total=steps, completed=step, loss="-", lr="-", rate="")
        while step < min(steps, stop_at or steps):
            loss = _step(accelerator, wrapped, forward, optimizer, scheduler, stream, config, world_size, window)
            step += 1
            losses.append(loss)
            if step % config.log_every == 0 or step == steps:
                samples += window.samples
                line = _metrics_line(step, stream.epoch, optimizer, window, samples)
                metrics.write(line)
                metrics.plot()
                bar.update(task, **format_fields(line))
                window = _Window()
            bar.update(task, completed=step)
            at_save = config.save_every is not None and (step % config.save_every == 0 or step == steps)
            if at_save or step == stop_at:
                samples_now = samples + window.samples
                write_checkpoint(root, step, accelerator, model, optimizer, scheduler,
                                 {"sampler": stream.state_dict(), "samples": samples_now}, sharded, config.keep_last)
                metrics.plot(force=True)
    metrics.plot(force=True)
    if step < steps:
        if main:
            say(f"stopped at step {step} of {steps}; continue with --resume")
        accelerator.end_training()
        return TrainResult(None, step, losses)
    final = write_final(recipe, accelerator, wrapped, model, setup.processor, sharded)
    if main:
        say(f"wrote {final}")
    accelerator.end_training()
    return TrainResult(final, step, losses)


def _check(recipe: Recipe) -> None:
    from avlm.presets import PRESETS

    uses_lora = any(mode == "lora" for _, mode in recipe.trainable.items())
    if uses_lora and not recipe.train.merge_lora and recipe.model in PRESETS:
        raise ValueError(f"train.merge_lora=false keeps the adapters apart, which needs a base model folder, but "
                         f"model={recipe.model!r} is a preset; write it with `avlm build DIR --preset "
                         f"{recipe.model}` and set model=DIR, or keep train.merge_lora=true")


def _step(accelerator: Any, wrapped: Any, forward: TrainingForward, optimizer: Any, scheduler: Any,
          stream: DataStream, config: Any, world_size: int, window: _Window) -> float:
    """One optimizer step over ``grad_accum`` micro-batches; returns the step's global loss (token mean)."""
    device = accelerator.device
    start = time.perf_counter()
    batches = [stream.next() for _ in range(config.grad_accum)]
    window.times["data_wait"] += time.perf_counter() - start
    counts = torch.tensor([sum(labelled_tokens(b) for b in batches), sum(len(b["ids"]) for b in batches),
                           sum(b["media_errors"] for b in batches)], device=device)
    num_items, batch_samples, media_errors = accelerator.reduce(counts, "sum").tolist()
    num_items_tensor = torch.tensor(max(num_items, 1), device=device, dtype=torch.float32)
    total = torch.zeros((), device=device)
    tokens = 0
    for index, batch in enumerate(batches):
        batch = to_device(batch, device)
        last = index == len(batches) - 1
        with accelerator.no_sync(wrapped) if not last else nullcontext():
            loss = wrapped(batch, num_items_tensor, world_size)
            begin = time.perf_counter()
            accelerator.backward(loss)
            _sync(device)
            window.times["backward"] += time.perf_counter() - begin
        for stage, seconds in forward.times.items():
            window.times[stage] += seconds
        total += loss.detach() / world_size
        tokens += forward.tokens
    begin = time.perf_counter()
    if config.max_grad_norm is not None:
        accelerator.clip_grad_norm_(wrapped.parameters(), config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    _sync(device)
    window.times["optimizer"] += time.perf_counter() - begin
    window.steps += 1
    step_loss = float(accelerator.reduce(total, "sum"))
    window.loss += step_loss
    window.seconds += time.perf_counter() - start
    window.samples += int(batch_samples)
    window.tokens += int(accelerator.reduce(torch.tensor(tokens, device=device), "sum"))
    window.media_errors += int(media_errors)
    return step_loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _metrics_line(step: int, epoch: int, optimizer: Any, window: _Window, samples: int) -> dict:
    """The metrics.jsonl line: mean loss, rates and stage seconds per step over the window."""
    rates = {}
    for group in optimizer.param_groups:
        rates.setdefault(group["name"], group["lr"])
    seconds = max(window.seconds, 1e-9)
    return {"step": step, "epoch": epoch, "loss": window.loss / window.steps, "lr": rates, "samples": samples,
            "samples_per_s": window.samples / seconds, "tokens_per_s": window.tokens / seconds,
            "media_errors": window.media_errors,
            "time": {name: value / window.steps for name, value in window.times.items()}}
