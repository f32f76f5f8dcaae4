"""The run's last output: ``output_dir/final``, a model folder that ``AVLMForCausalLM.from_pretrained`` /
``avlm.load`` read directly (LoRA adapters folded in), written atomically like the checkpoints."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from avlm.modeling.lora import merge_lora, save_adapter
from avlm.modeling.model import AVLMForCausalLM
from avlm.processing.processor import Processor
from avlm.train.checkpoints import _fsync_dir, _fsync_tree, load_trainables
from avlm.train.recipe import Recipe
from avlm.train.setup import prepare_model


def write_final(recipe: Recipe, accelerator: Any, wrapped: nn.Module, model: AVLMForCausalLM, processor: Processor,
                sharded: bool) -> Path:
    """Write ``final/`` (main process; all processes call this). With ``train.merge_lora`` false the unmerged
    adapters are kept in ``final/adapter`` too (``avlm merge-lora`` can fold them later)."""
    out = Path(recipe.train.output_dir)
    final, temp = out / "final", out / ".tmp-final"
    if sharded:  # parameters are sharded: gather a full state dict, then fill a fresh CPU copy of the model
        state = accelerator.get_state_dict(wrapped)
        if accelerator.is_main_process:

            model, _, _ = prepare_model(recipe)
            trainable = {name for name, value in model.named_parameters() if value.requires_grad}
            load_trainables(model, {name: state["model." + name] for name in trainable}, "the gathered state")
    if accelerator.is_main_process:
        shutil.rmtree(temp, ignore_errors=True)
        if any(mode == "lora" for _, mode in recipe.trainable.items()):
            if not recipe.train.merge_lora:
                save_adapter(model, temp / "adapter", recipe.lora, base_model=recipe.model)
            merge_lora(model)
        model.save_pretrained(temp)
        processor.save_pretrained(temp)
        _fsync_tree(temp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(temp, final)
        _fsync_dir(out)
    accelerator.wait_for_everyone()
    return final
