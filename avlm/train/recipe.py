"""The training recipe: one YAML file mapped strictly onto :class:`Recipe` (see ``avlm.recipe_loading.load_config``).

Sections: ``model`` (what to start from), ``data`` (:class:`avlm.data.DataConfig`), ``trainable``
(:class:`avlm.modeling.trainable.TrainablePolicy`), ``lora`` (:class:`avlm.modeling.lora.LoRAConfig`), ``train``
(:class:`TrainConfig`) and ``distributed`` (:class:`DistributedConfig`). Every field documents itself;
``avlm train --help-recipe`` lists them.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from avlm.data.settings import DataConfig
from avlm.modeling.lora import LoRAConfig
from avlm.modeling.trainable import TrainablePolicy
from avlm.recipe_docs import find_recipe
from avlm.recipe_loading import dump_config, load_config

PART_LR_KEYS = ("connectors", "lora", "encoders", "llm")
RESUME_MAY_CHANGE = frozenset({"train.output_dir", "train.resume", "train.log_every", "train.save_every",
                               "train.keep_last", "train.merge_lora", "data.num_workers", "data.cache_media",
                               "data.check_media", "distributed.timeout_minutes"})
"""Recipe fields a resumed run may set differently: where, how often and in what form it writes, how it loads the
data; not what it computes."""


@dataclass
class TrainConfig:
    """The optimisation loop: steps, batch, learning rates, precision, logging and checkpoints."""

    output_dir: Path = Path("runs/train")
    """Folder for metrics.jsonl, loss.png, checkpoints/ and final/ (created)."""
    max_steps: int | None = None
    """Optimizer steps to run; None: ``num_epochs`` epochs of the data."""
    num_epochs: float = 1.0
    """Passes over the data (an epoch as the sampler defines it) when ``max_steps`` is None."""
    batch_size: int = 1
    """Samples per process per micro-batch; the global batch is batch_size x processes x grad_accum."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    lr: float = 2e-5
    """Peak learning rate of every part without its own entry in ``part_lrs``."""
    part_lrs: dict[str, float] = field(default_factory=dict)
    """Peak learning rate per parameter group: connectors, lora, encoders, llm (missing: ``lr``)."""
    warmup_ratio: float = 0.03
    """Fraction of the steps spent warming up linearly from 0 to the peak rate; then cosine decay to 0."""
    weight_decay: float = 0.0
    """AdamW weight decay, applied to matrices only (not to biases and norm weights)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this; None: no clipping."""
    mixed_precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast precision of the forward pass (accelerate); trainable weights and optimizer state stay float32 (frozen
    ones: ``frozen_dtype``). (Not "no": YAML reads an unquoted no as false.)"""
    frozen_dtype: Literal["float32", "bfloat16"] = "float32"
    """dtype of the frozen weights (trainable weights and optimizer state stay float32). bfloat16 halves the memory of
    a frozen LLM (a 7B: ~15 GB instead of ~30 GB) and needs ``mixed_precision: bf16``; the LoRA deltas are then
    rounded to bfloat16 when final/ merges them (``merge_lora: false`` also keeps the exact adapters). Not with
    FSDP / DeepSpeed, which manage dtypes themselves."""
    gradient_checkpointing: bool = False
    """Recompute the LLM's layer activations in backward (less memory, about a third more compute)."""
    pack_sequences: bool = False
    """Run the LLM on one packed row of each micro-batch's real tokens (no padding FLOPs; same loss). Pays off with
    flash or flex attention (``attn_implementation`` of the model); with SDPA the masked blocks are still computed."""
    attn_implementation: str | None = None
    """Attention kernel of the LLM: sdpa, eager, flash_attention_2, flex_attention, ...; None: as the model has it."""
    log_every: int = 10
    """Write a metrics.jsonl line and refresh the progress bar every this many steps (loss.png: at those steps at
    most every 30 s, at every checkpoint and at the end)."""
    save_every: int | None = 500
    """Write a checkpoint every this many steps (and at the end); None: only the final model."""
    keep_last: int | None = 3
    """Keep this many most recent checkpoints (older ones are deleted); None: keep all."""
    resume: str | None = None
    """"auto": continue from the last complete checkpoint in output_dir (start fresh if none); a checkpoint folder
    path: continue from it; None: start fresh (``avlm train --resume`` sets "auto")."""
    seed: int = 0
    """Seed of the random-init model parts (presets), LoRA init, dropout and every other RNG of the run."""
    merge_lora: bool = True
    """Write final/ as a full model with the LoRA adapters folded in; False: also keep final/adapter unmerged."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("batch_size", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("max_steps", "save_every", "keep_last"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1 or null")
        if self.max_steps is None and not self.num_epochs > 0:
            problems.append(f"num_epochs={self.num_epochs} must be > 0 when max_steps is null")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio={self.warmup_ratio} must lie in [0, 1)")
        unknown = sorted(set(self.part_lrs) - set(PART_LR_KEYS))
        if unknown:
            problems.append(f"part_lrs has unknown groups {unknown}; groups are {list(PART_LR_KEYS)}")
        if not self.lr > 0 or any(not value > 0 for value in self.part_lrs.values()):
            problems.append(f"learning rates must be > 0 (lr={self.lr}, part_lrs={self.part_lrs})")
        if self.frozen_dtype == "bfloat16" and self.mixed_precision != "bf16":
            problems.append(f"frozen_dtype=bfloat16 needs mixed_precision=bf16 (got {self.mixed_precision}): bfloat16 "
                            "weights need the bf16 autocast of the forward pass; set both, or frozen_dtype=float32")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class DistributedConfig:
    """How several processes (``torchrun --nproc_per_node N``) share the work; ignored in a single process."""

    strategy: Literal["ddp", "fsdp", "deepspeed"] = "ddp"
    """ddp: full replicas, gradients all-reduced; fsdp: parameters, gradients and optimizer state sharded (PyTorch
    FSDP2 through accelerate); deepspeed: ZeRO (needs the deepspeed package)."""
    zero_stage: Literal[1, 2, 3] = 2
    """DeepSpeed ZeRO stage: 1 shards optimizer state, 2 also gradients, 3 also parameters."""
    fsdp_reshard_after_forward: bool = True
    """FSDP: free gathered parameters after the forward pass (ZeRO-3 like); False keeps them (ZeRO-2 like)."""
    cpu_offload: bool = False
    """FSDP / DeepSpeed: keep optimizer state (and with FSDP parameters) in CPU memory."""
    run_all_encoders: bool | None = None
    """Every process runs every encoder and connector each step, on a dummy input when its batch lacks that
    modality (contributing 0 to the loss), so sharded parameters are gathered in the same order on every rank and
    FSDP / ZeRO-3 cannot hang. None: on when there are several processes."""
    timeout_minutes: int = 30
    """Collective-operation timeout (a stuck rank fails instead of hanging forever)."""


@dataclass
class Recipe:
    """A training run. Example: ``avlm train finetune_lora train.lr=1e-4`` (a shipped recipe, or a YAML file)."""

    model: str = "avlm-tiny"
    """A preset name (avlm-tiny, videollama2.1-7b-av: random init, for tests and smoke runs) or a local model folder
    written by ``avlm build`` / a previous run's final/ (weights, tokenizer, processor_config.json)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Annotation files, mixing, validation and batching (see avlm.data.DataConfig)."""
    trainable: TrainablePolicy = field(default_factory=TrainablePolicy)
    """What trains in each part: frozen, lora, adapter (an encoder's own adapter branch, e.g. BT-Adapter) or full
    (see avlm.modeling.trainable.TrainablePolicy)."""
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    """Adapter shape for the parts whose mode is lora."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The optimisation loop."""
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """Multi-process strategy (torchrun)."""

    def __post_init__(self) -> None:
        if self.train.frozen_dtype == "bfloat16" and self.distributed.strategy != "ddp":
            raise ValueError(f"train.frozen_dtype=bfloat16 with distributed.strategy={self.distributed.strategy}: "
                             "FSDP and DeepSpeed keep their own parameter dtypes; use train.frozen_dtype=float32 "
                             "(their bf16 mixed precision casts the weights), or strategy ddp")


def load_recipe(recipe: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe YAML (strict: unknown keys are errors) and apply ``dotted.key=value`` overrides.

    Args:
        recipe: a YAML file, or, when no such file exists, the name of a shipped recipe (``finetune_lora`` or
            ``finetune_lora.yaml``; ``avlm train --list-recipes`` lists them); None: the defaults only.
        overrides: ``"dotted.key=value"`` strings applied after the file, in order.

    Raises:
        ConfigError: every problem at once, naming the key.
        FileNotFoundError: neither a file nor a shipped recipe (the message lists the shipped ones).
    """
    if recipe is None:
        return load_config(Recipe, None, overrides)
    with importlib.resources.as_file(find_recipe(recipe)) as path:
        return load_config(Recipe, path, overrides)


def resume_settings(recipe: Recipe) -> dict[str, Any]:
    """What a run computes from: every recipe field but :data:`RESUME_MAY_CHANGE`, as ``{"section.field": value}``
    (JSON data). Checkpoints store it; a run resumed under other values would continue neither that run nor a fresh
    run of its own settings."""
    settings = {}
    for section, value in dump_config(recipe).items():
        for name, item in (value.items() if isinstance(value, dict) else [(None, value)]):
            key = section if name is None else f"{section}.{name}"
            if key not in RESUME_MAY_CHANGE:
                settings[key] = item
    return json.loads(json.dumps(settings))


def changed_settings(saved: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """``"key (saved X, now Y)"`` for every field both hold with different values; none for a checkpoint written
    before checkpoints stored their settings (``saved`` None)."""
    if saved is None:
        return []
    return [f"{key} (saved {saved[key]!r}, now {value!r})" for key, value in current.items()
            if key in saved and saved[key] != value]
