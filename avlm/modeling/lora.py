"""LoRA with peft on the LLM (and optionally on encoders): apply, save as standard PEFT adapter folders, load, merge.

Parts are named ``"llm"``, ``"encoders.video"``, ``"encoders.audio"``. Each part that gets LoRA is wrapped in a
``peft.PeftModel`` in place (``model.llm`` becomes a ``PeftModelForCausalLM``). An adapter folder holds::

    adapter_config.json, adapter_model.safetensors   the LLM adapter: a standard PEFT folder, so
                                                      peft.PeftModel.from_pretrained(llm, folder) reads it
    encoders/<modality>/adapter_*                    encoder adapters (PEFT folders too), when used
    trainables.safetensors                           every other trainable tensor (e.g. connectors.*), avlm names
    avlm_adapter.json                                the base model folder, the LoRAConfig and the parts
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from vision.container import require

PARTS = ("llm", "encoders.video", "encoders.audio")
ADAPTER_FILE = "avlm_adapter.json"
TRAINABLES_FILE = "trainables.safetensors"


@dataclass
class LoRAConfig:
    """Low-rank adapters ``W + (alpha / rank) * B A`` on linear layers."""

    rank: int = 16
    """Rank r of A [r, in] and B [out, r]; higher adapts more and costs more memory."""
    alpha: float = 32.0
    """Scale numerator: the update is multiplied by alpha / rank."""
    dropout: float = 0.05
    """Dropout on the adapter input during training."""
    target_modules: list[str] | None = None
    """Names (or name suffixes) of the LLM's linear layers to adapt; None: every nn.Linear except the output head.
    Encoders given LoRA always adapt all their linear layers."""

    def __post_init__(self) -> None:
        errors = []
        if not isinstance(self.rank, int) or self.rank < 1:
            errors.append(f"rank={self.rank!r} must be a positive integer")
        if not self.alpha > 0:
            errors.append(f"alpha={self.alpha!r} must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            errors.append(f"dropout={self.dropout!r} must lie in [0, 1)")
        if self.target_modules is not None and not self.target_modules:
            errors.append("target_modules=[] adapts nothing; use None for every linear layer of the LLM")
        if errors:
            raise ValueError("invalid LoRAConfig: " + "; ".join(errors))


def get_part(model: nn.Module, part: str) -> nn.Module:
    """``model.llm`` for ``"llm"``, ``model.encoders[m]`` for ``"encoders.m"``."""
    if part == "llm":
        return model.llm
    kind, _, modality = part.partition(".")
    if kind == "encoders" and modality in model.encoders:
        return model.encoders[modality]
    raise ValueError(f"unknown part {part!r}; this model has {['llm', *(f'encoders.{m}' for m in model.encoders)]}")


def set_part(model: nn.Module, part: str, module: nn.Module) -> None:
    if part == "llm":
        model.llm = module
    else:
        model.encoders[part.partition(".")[2]] = module


def is_lora(module: nn.Module) -> bool:
    """True for a part wrapped by :func:`apply_lora`."""
    return type(module).__module__.startswith("peft.")


def linear_layer_names(module: nn.Module, skip: nn.Module | None = None) -> list[str]:
    """Leaf names of every ``nn.Linear`` in ``module`` (``q_proj``, ``fc1``, ...), except the module ``skip``."""
    return sorted({name.rpartition(".")[2] for name, child in module.named_modules()
                   if isinstance(child, nn.Linear) and child is not skip})


def apply_lora(model: nn.Module, config: LoRAConfig, parts: tuple[str, ...] = ("llm",)) -> None:
    """Wrap each part in a peft LoRA model in place (adapters trainable, everything else in the part frozen)."""
    peft = require("peft", "peft>=0.21")
    for part in parts:
        module = get_part(model, part)
        if is_lora(module):
            raise ValueError(f"part {part!r} already has LoRA adapters")
        skip = module.get_output_embeddings() if part == "llm" else None
        targets = config.target_modules if part == "llm" and config.target_modules else linear_layer_names(module, skip)
        if part == "llm" and "lm_head" in targets and skip is not None:
            targets = [name for name in targets if name != "lm_head"]
        lora = peft.LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, bias="none",
                               target_modules=targets, task_type="CAUSAL_LM" if part == "llm" else None)
        set_part(model, part, peft.get_peft_model(module, lora))


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weights (W <- W + (alpha / r) B A) and unwrap the parts; returns ``model``."""
    for part in _lora_parts(model):
        set_part(model, part, get_part(model, part).merge_and_unload())
    return model


def save_adapter(model: nn.Module, folder: str | os.PathLike, config: LoRAConfig,
                 base_model: str | os.PathLike | None = None) -> None:
    """Write the adapter folder (layout in the module docstring).

    Args:
        model: an ``AVLMForCausalLM`` with LoRA applied.
        folder: output folder.
        config: the LoRAConfig the adapters were made with.
        base_model: the base model folder; default ``model.name_or_path`` (set by ``from_pretrained``).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    parts = _lora_parts(model)
    base = str(base_model or model.name_or_path or "")
    if not parts:
        raise ValueError("the model has no LoRA adapters; apply_lora first, or save the whole model")
    if not base:
        raise ValueError("give base_model: the model was not loaded from a folder, so the adapter cannot name its base")
    for part in parts:
        target = folder if part == "llm" else folder / part.replace(".", os.sep)
        get_part(model, part).save_pretrained(target)
    trainables = {name: value.detach().contiguous() for name, value in model.named_parameters()
                  if value.requires_grad and not _inside(name, parts)}
    save_file(trainables, str(folder / TRAINABLES_FILE), metadata={"format": "pt"})
    meta = {"base_model": base, "lora": dataclasses.asdict(config), "parts": list(parts),
            "trainables": sorted(trainables)}
    (folder / ADAPTER_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def read_adapter_meta(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / ADAPTER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not an avlm adapter folder (written by avlm.modeling.lora.save_adapter)")
    return json.loads(path.read_text())


def load_adapter(model: nn.Module, folder: str | os.PathLike, is_trainable: bool = False) -> None:
    """Attach the adapters of ``folder`` to a base ``model`` (no LoRA yet) and load its trainables strictly."""
    from safetensors.torch import load_file

    peft = require("peft", "peft>=0.21")
    folder, meta = Path(folder), read_adapter_meta(folder)
    for part in meta["parts"]:
        source = folder if part == "llm" else folder / part.replace(".", os.sep)
        set_part(model, part, peft.PeftModel.from_pretrained(get_part(model, part), source, is_trainable=is_trainable))
    trainables = load_file(str(folder / TRAINABLES_FILE))
    state = model.state_dict()
    unknown = sorted(set(trainables) - set(state))
    mis_shaped = [f"{k}: {tuple(v.shape)} vs {tuple(state[k].shape)}" for k, v in trainables.items()
                  if k in state and v.shape != state[k].shape]
    if unknown or mis_shaped:
        raise ValueError(f"{folder / TRAINABLES_FILE}: does not fit the base model; unknown keys {unknown}, "
                         f"mis-shaped keys {mis_shaped}")
    state.update(trainables)
    model.load_state_dict(state, strict=True)


def _lora_parts(model: nn.Module) -> tuple[str, ...]:
    return tuple(part for part in PARTS if _has_part(model, part) and is_lora(get_part(model, part)))


def _has_part(model: nn.Module, part: str) -> bool:
    return part == "llm" or part.partition(".")[2] in model.encoders


def _inside(name: str, parts: tuple[str, ...]) -> bool:
    return any(name.startswith(part + ".") for part in parts)

