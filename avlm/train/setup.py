"""From a recipe to the objects of a run: model + processor, trainable parts, data, optimizer groups and schedule.

Nothing here knows about processes beyond ``rank`` / ``world_size`` (the sampler's sharding); the loop
(:mod:`avlm.train.loop`) adds accelerate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avlm.assembly import build_model, load_pretrained
from avlm.constants import MODALITIES
from avlm.data.build import TrainingData, build_data
from avlm.modeling.model import AVLMForCausalLM
from avlm.modeling.presets import PRESETS
from avlm.modeling.trainable import cast_frozen, prepare_for_training
from avlm.processing.processor import Processor
from avlm.synth.tokenizer import tokenizer_for_preset
from avlm.train.budget import MediaTokenCounter
from avlm.train.recipe import Recipe, TrainConfig


@dataclass
class TrainingSetup:
    """What :func:`build_setup` returns."""

    model: AVLMForCausalLM
    processor: Processor
    data: TrainingData
    trainable_counts: dict[str, int]
    """Trainable parameters per part (``llm``, ``encoders.video``, ..., ``connectors.audio``)."""


def load_model(source: str, seed: int) -> tuple[AVLMForCausalLM, Processor]:
    """A preset name (random init from ``seed``) or a local model folder, avlm or official VideoLLaMA2 ->
    ``(AVLMForCausalLM float32, Processor)``."""
    if source in PRESETS:
        return build_model(source, seed=seed, tokenizer=tokenizer_for_preset(source))
    folder = Path(source)
    if not (folder / "config.json").is_file():
        raise ValueError(f"model: {source!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor a model folder "
                         f"with config.json; write one with `avlm build OUT --preset NAME`")
    return load_pretrained(folder, dtype=torch.float32)


def prepare_model(recipe: Recipe) -> tuple[AVLMForCausalLM, Processor, dict[str, int]]:
    """Load the model, apply the trainable policy (LoRA adapters are initialised from ``train.seed``) and store the
    frozen weights in ``train.frozen_dtype``."""
    model, processor = load_model(recipe.model, recipe.train.seed)
    if recipe.train.attn_implementation is not None:
        model.llm.set_attn_implementation(recipe.train.attn_implementation)
    torch.manual_seed(recipe.train.seed)
    counts = prepare_for_training(model, recipe.trainable, recipe.lora)
    if not any(counts.values()):
        raise ValueError(f"nothing to train: every part is frozen in trainable={recipe.trainable}")
    cast_frozen(model, getattr(torch, recipe.train.frozen_dtype))
    return model, processor, counts


def placeholder_ids(model: nn.Module) -> dict[str, int]:
    ids = model.config.placeholder_token_ids
    return {m: ids[m] for m in MODALITIES if m in ids and m in model.encoders}


def build_setup(recipe: Recipe, rank: int = 0, world_size: int = 1) -> TrainingSetup:
    """Model, processor and this rank's data for ``recipe`` (validation errors list every problem)."""
    model, processor, counts = prepare_model(recipe)
    counter = MediaTokenCounter(model, processor.config) if recipe.data.max_length is not None else None
    data = build_data(recipe.data, processor.tokenizer, processor.load_media, placeholder_ids(model),
                      recipe.train.batch_size, media_token_counter=counter, rank=rank, world_size=world_size,
                      av_fusion=model.config.av_fusion)
    return TrainingSetup(model, processor, data, counts)


def parameter_group(name: str) -> str:
    """The learning-rate group of a parameter: lora, connectors, encoders or llm."""
    if "lora_" in name:
        return "lora"
    for group in ("connectors", "encoders"):
        if name.startswith(group + "."):
            return group
    return "llm"


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, one group per (part, decay) with the part's peak learning rate."""
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            decay = parameter.ndim >= 2 and config.weight_decay > 0
            groups.setdefault((parameter_group(name), decay), []).append(parameter)
    params = [{"params": members, "name": part, "lr": config.part_lrs.get(part, config.lr),
               "weight_decay": config.weight_decay if decay else 0.0}
              for (part, decay), members in sorted(groups.items())]
    return torch.optim.AdamW(params, lr=config.lr, betas=tuple(config.adam_betas))


def total_steps(config: TrainConfig, micro_batches_per_epoch: int) -> int:
    """Optimizer steps of the run: ``max_steps``, else ``num_epochs`` epochs of ``grad_accum`` micro-batches each."""
    if config.max_steps is not None:
        return config.max_steps
    return max(1, math.ceil(config.num_epochs * micro_batches_per_epoch / config.grad_accum))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps: int) -> Any:
    """Linear warmup over ``warmup_ratio`` of the steps, then cosine decay to 0 (transformers' schedule)."""
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * steps), steps)
