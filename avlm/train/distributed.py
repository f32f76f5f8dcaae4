"""The accelerate ``Accelerator`` of a run, built from the recipe: DDP by default, FSDP2 or DeepSpeed ZeRO on request.

Processes come from the launcher (``torchrun --nproc_per_node N -m avlm train ...`` or ``accelerate launch``); one
process needs no launcher. CPU processes talk through gloo, GPUs through NCCL (accelerate's choice).
"""

from __future__ import annotations

import datetime
from typing import Any

from torch import nn

from avlm.train.recipe import DistributedConfig, TrainConfig


def process_info() -> tuple[int, int]:
    """``(rank, world_size)`` of this process, initialising the process group when launched with several."""
    from accelerate import PartialState

    state = PartialState(cpu=on_cpu())
    return state.process_index, state.num_processes


def on_cpu() -> bool:
    """No CUDA device: accelerate then needs ``cpu=True`` to run several processes (gloo) under torchrun."""
    import torch

    return not torch.cuda.is_available()


def layer_classes(model: nn.Module) -> list[str]:
    """Class names of the repeated blocks to shard as units (the LLM's decoder layers, the encoders' layers)."""
    names = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    present = {type(module).__name__ for module in model.modules()}
    return sorted(names & present)


def make_accelerator(train: TrainConfig, distributed: DistributedConfig, model: nn.Module, world_size: int) -> Any:
    """An Accelerator with the run's precision and, for several processes, the recipe's strategy."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    handlers = [InitProcessGroupKwargs(timeout=datetime.timedelta(minutes=distributed.timeout_minutes)),
                DistributedDataParallelKwargs(find_unused_parameters=not run_all_encoders(distributed, world_size))]
    precision = "no" if train.mixed_precision == "fp32" else train.mixed_precision
    options: dict[str, Any] = {"mixed_precision": precision, "kwargs_handlers": handlers, "cpu": on_cpu()}
    if world_size > 1 and distributed.strategy == "fsdp":
        from accelerate.utils import FullyShardedDataParallelPlugin

        options["fsdp_plugin"] = FullyShardedDataParallelPlugin(
            fsdp_version=2, reshard_after_forward=distributed.fsdp_reshard_after_forward,
            cpu_offload=distributed.cpu_offload, auto_wrap_policy="transformer_based_wrap",
            transformer_cls_names_to_wrap=layer_classes(model), state_dict_type="SHARDED_STATE_DICT",
            activation_checkpointing=False)
    elif world_size > 1 and distributed.strategy == "deepspeed":
        if train.grad_accum != 1:
            raise ValueError(f"distributed.strategy=deepspeed with train.grad_accum={train.grad_accum}: DeepSpeed "
                             "accumulates gradients itself; use grad_accum=1 and a larger batch_size, or ddp/fsdp")
        from accelerate.utils import DeepSpeedPlugin

        options["deepspeed_plugin"] = DeepSpeedPlugin(
            zero_stage=distributed.zero_stage, gradient_accumulation_steps=1,
            gradient_clipping=train.max_grad_norm or 0.0,
            offload_optimizer_device="cpu" if distributed.cpu_offload else "none")
    # accelerate keeps one AcceleratorState per process and refuses a second run with another precision; start each
    # run from a fresh one, as transformers' TrainingArguments does (the process group, in PartialState, is kept).
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(**options)
    wanted = {"fsdp": "FSDP", "deepspeed": "DEEPSPEED"}.get(distributed.strategy)
    if world_size > 1 and wanted and accelerator.distributed_type.name != wanted:
        raise ValueError(f"distributed.strategy={distributed.strategy} was not applied: accelerate runs "
                         f"{accelerator.distributed_type.name} here (FSDP and DeepSpeed need GPUs); use "
                         f"distributed.strategy=ddp on CPU")
    return accelerator


def run_all_encoders(distributed: DistributedConfig, world_size: int) -> bool:
    """The recipe's choice, or on by default with several processes."""
    return world_size > 1 if distributed.run_all_encoders is None else distributed.run_all_encoders


def is_sharded(distributed: DistributedConfig, world_size: int) -> bool:
    """FSDP / DeepSpeed: model and optimizer state are sharded, checkpoints go through accelerate's save_state."""
    return world_size > 1 and distributed.strategy in ("fsdp", "deepspeed")
