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

from avlm.modeling.presets import PRESETS
from avlm.train.checkpoints import (
    find_resume_checkpoint,
    list_checkpoints,
    read_checkpoint,
    read_rng,
    write_checkpoint,
)
from avlm.train.distributed import is_sharded, make_accelerator, process_info, run_all_encoders
from avlm.train.final import write_final
from avlm.train.metrics import MetricsLog, format_fields, progress_bar
from avlm.train.recipe import Recipe, changed_settings, resume_settings
from avlm.train.setup import TrainingSetup, build_optimizer, build_scheduler, build_setup, total_steps
from avlm.train.stages import STAGES, TrainingForward, labelled_tokens
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
    grad_norm: float | None = None
    rates: dict[str, float] = field(default_factory=dict)
    """Learning rate per parameter group of the last step."""
    """Of the last step, before clipping (None without train.max_grad_norm)."""
    times: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIMES, 0.0))
    media_norms: dict[str, float] = field(default_factory=dict)
    """Mean token L2 norm per source (text, video, audio) of the last step (:mod:`avlm.train.norms`)."""


@dataclass
class _Run:
    """The objects of one run, shared by the helpers below."""

    recipe: Recipe
    setup: TrainingSetup
    accelerator: Any
    forward: TrainingForward
    wrapped: Any
    optimizer: Any
    scheduler: Any
    steps: int
    world_size: int
    say: Any
    step: int = 0
    samples: int = 0

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def sharded(self) -> bool:
        return is_sharded(self.recipe.distributed, self.world_size)

    @property
    def root(self) -> Path:
        return Path(self.recipe.train.output_dir) / "checkpoints"


def train(recipe: Recipe, say: Any = print, stop_at: int | None = None) -> TrainResult:
    """Run ``recipe`` to the end (resuming when ``train.resume`` says so) and write ``output_dir/final``.

    ``stop_at``: leave after this step with a checkpoint and no final/, as a pre-empted or time-limited job would;
    a later run with ``resume="auto"`` continues exactly where it stopped.
    """
    _check(recipe)
    run = _start(recipe, say)
    _restore(run)
    losses = _train_steps(run, stop_at)
    final = None
    if run.step < run.steps:
        if run.main:
            say(f"stopped at step {run.step} of {run.steps}; continue with --resume")
    else:
        final = write_final(recipe, run.accelerator, run.wrapped, run.setup.model, run.setup.processor, run.sharded)
        if run.main:
            say(f"wrote {final}")
    run.accelerator.end_training()
    return TrainResult(final, run.step, losses)


def _start(recipe: Recipe, say: Any) -> _Run:
    """Model, data, accelerator, optimizer and schedule of a run."""
    config = recipe.train
    rank, world_size = process_info()
    setup = build_setup(recipe, rank, world_size)
    if config.gradient_checkpointing:
        setup.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    accelerator = make_accelerator(config, recipe.distributed, setup.model, world_size)
    if accelerator.is_main_process:
        say(setup.data.report.summary())
        say("trainable parameters: " + ", ".join(f"{part} {count:,}" for part, count in setup.trainable_counts.items()
                                                  if count))
        frozen = [parameter for parameter in setup.model.parameters() if not parameter.requires_grad]
        if frozen:
            size = sum(parameter.numel() * parameter.element_size() for parameter in frozen)
            shown = f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"
            say(f"frozen weights: {shown} in {config.frozen_dtype}")
    forward = TrainingForward(setup.model, run_all_encoders(recipe.distributed, world_size), pack=config.pack_sequences)
    optimizer = build_optimizer(setup.model, config)
    if len(setup.data.loader) == 0:
        raise ValueError(f"no complete batch: {len(setup.data.records)} samples, global batch {config.batch_size} x "
                         f"{world_size} processes with data.drop_last=true; lower train.batch_size or set drop_last "
                         "false")
    steps = total_steps(config, len(setup.data.loader))
    scheduler = build_scheduler(optimizer, config, steps)
    wrapped, optimizer = accelerator.prepare(forward, optimizer)
    return _Run(recipe, setup, accelerator, forward, wrapped, optimizer, scheduler, steps, world_size, say)


def _restore(run: _Run) -> None:
    """Continue from the checkpoint ``train.resume`` names (model, optimizer, schedule, data position, RNG), or seed
    a fresh run; a fresh run refuses an output folder that holds checkpoints."""
    config = run.recipe.train
    resume = find_resume_checkpoint(run.root, config.resume)
    if resume is None and config.resume is None and list_checkpoints(run.root):
        raise ValueError(f"{run.root} already holds checkpoints of an earlier run; continue it with --resume "
                         f"(train.resume=auto) or choose another train.output_dir")
    if resume is None:
        from accelerate.utils import set_seed

        set_seed(config.seed + run.accelerator.process_index)
        return
    state = read_checkpoint(resume, run.accelerator, run.setup.model, run.optimizer, run.scheduler, run.sharded)
    layout = _layout(run)
    if state.get("layout") != layout:
        raise ValueError(f"cannot resume {resume}: it was written with {state.get('layout')}, this run has {layout}; "
                         "resume with the same processes, batch_size and grad_accum (or start a new output_dir)")
    changed = changed_settings(state.get("settings"), resume_settings(run.recipe))
    if changed:
        raise ValueError(f"cannot resume {resume}: it was written by a run with other settings: {'; '.join(changed)}. "
                         "Continuing it would give neither that run nor a fresh run of these settings; resume with "
                         "the same settings or start a new output_dir")
    run.setup.data.sampler.load_state_dict(state["sampler"])
    run.step, run.samples = state["step"], state["samples"]
    read_rng(resume, run.accelerator.process_index)
    if run.main:
        run.say(f"resumed from {resume} at step {run.step}" + (" (all steps done; writing final/)"
                                                                 if run.step >= run.steps else ""))


def _layout(run: _Run) -> dict[str, int]:
    """What a step means; a checkpoint resumes only under the same layout."""
    config = run.recipe.train
    return {"processes": run.world_size, "batch_size": config.batch_size, "grad_accum": config.grad_accum}


def _train_steps(run: _Run, stop_at: int | None) -> list[float]:
    """Steps until the end (or ``stop_at``), with metrics lines, progress and checkpoints; returns the losses."""
    config = run.recipe.train
    data = run.setup.data
    stream = DataStream(data.sampler, data.loader)
    metrics = MetricsLog(Path(config.output_dir), run.step, run.main)
    window, losses = _Window(), []
    run.wrapped.train()
    with progress_bar(run.main) as bar:
        task = bar.add_task("train", total=run.steps, completed=run.step, loss="-", lr="-", rate="")
        while run.step < min(run.steps, stop_at or run.steps):
            logged = (run.step + 1) % config.log_every == 0 or run.step + 1 == run.steps
            run.forward.norms.active = logged
            losses.append(_step(run, stream, window))
            run.forward.norms.active = False
            if logged:
                window.media_norms = run.forward.norms.values
            run.step += 1
            if run.step % config.log_every == 0 or run.step == run.steps:
                run.samples += window.samples
                line = _metrics_line(run.step, stream.epoch, window, run.samples)
                metrics.write(line)
                metrics.plot()
                bar.update(task, **format_fields(line))
                window = _Window()
            bar.update(task, completed=run.step)
            every = config.save_every
            if (every is not None and (run.step % every == 0 or run.step == run.steps)) or run.step == stop_at:
                state = {"sampler": stream.state_dict(), "samples": run.samples + window.samples,
                         "layout": _layout(run), "settings": resume_settings(run.recipe)}
                write_checkpoint(run.root, run.step, run.accelerator, run.setup.model, run.optimizer, run.scheduler,
                                 state, run.sharded, config.keep_last)
                metrics.plot(force=True)
    metrics.plot(force=True)
    return losses


def _check(recipe: Recipe) -> None:
    uses_lora = any(mode == "lora" for _, mode in recipe.trainable.items())
    if uses_lora and not recipe.train.merge_lora and recipe.model in PRESETS:
        raise ValueError(f"train.merge_lora=false keeps the adapters apart, which needs a base model folder, but "
                         f"model={recipe.model!r} is a preset; write it with `avlm build DIR --preset "
                         f"{recipe.model}` and set model=DIR, or keep train.merge_lora=true")


def _step(run: _Run, stream: DataStream, window: _Window) -> float:
    """One optimizer step over ``grad_accum`` micro-batches; returns the step's global loss (token mean)."""
    accelerator, wrapped, forward, optimizer = run.accelerator, run.wrapped, run.forward, run.optimizer
    config, world_size = run.recipe.train, run.world_size
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
        batch = batch.to(device)
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
        norm = accelerator.clip_grad_norm_(wrapped.parameters(), config.max_grad_norm)
        window.grad_norm = None if norm is None else float(norm)  # None under DeepSpeed (its engine clips)
    optimizer.step()
    window.rates = {}
    for group in optimizer.param_groups:  # the rates this step used, before the schedule moves on
        window.rates.setdefault(group["name"], group["lr"])
    run.scheduler.step()
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


def _metrics_line(step: int, epoch: int, window: _Window, samples: int) -> dict:
    """The metrics.jsonl line: mean loss, rates and stage seconds per step over the window."""
    seconds = max(window.seconds, 1e-9)
    return {"step": step, "epoch": epoch, "loss": window.loss / window.steps, "lr": window.rates,
            "grad_norm": window.grad_norm, "samples": samples, "samples_per_s": window.samples / seconds,
            "tokens_per_s": window.tokens / seconds,
            "media_errors": window.media_errors, "media_norms": window.media_norms,
            "time": {name: value / window.steps for name, value in window.times.items()}}
