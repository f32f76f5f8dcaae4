"""Which parameters train: one policy (``frozen | lora | adapter | full`` per part), applied in one place.

Parts: the LLM, each encoder and each connector (keyed by modality). ``lora`` trains only the LoRA adapters of a
part (the part must have been wrapped by :func:`avlm.modeling.lora.apply_lora`; :func:`prepare_for_training` does both).
``adapter`` (encoders only) trains only the modules an encoder names in its ``adapter_modules`` (top-level submodule or
parameter names) and keeps its pretrained backbone frozen: BT-Adapter's temporal branch over a frozen CLIP
(``vision.encoders.BTAdapterVisionEncoder``), as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from avlm.modeling.lora import LoRAConfig, apply_lora, get_part, is_lora

Mode = Literal["frozen", "lora", "adapter", "full"]
MODES = ("frozen", "lora", "adapter", "full")


@dataclass
class TrainablePolicy:
    """What trains in each part. Default: LoRA on the LLM, connectors fully trained, encoders frozen."""

    llm: Mode = "lora"
    """The language model."""
    encoders: dict[str, Mode] = field(default_factory=lambda: {"video": "frozen", "audio": "frozen"})
    """Per modality; VideoLLaMA2-AV's joint stage trains the audio encoder ("full") and freezes the vision one.
    "adapter": only the encoder's adapter modules (BT-Adapter's temporal branch; CLIP stays frozen)."""
    connectors: dict[str, Mode] = field(default_factory=lambda: {"video": "full", "audio": "full"})
    """Per modality: "frozen" or "full" (connectors are small and new; no LoRA)."""

    def __post_init__(self) -> None:
        errors = [f"{part}={mode!r}" for part, mode in self.items() if mode not in MODES]
        errors += [f"{part}='lora' (connectors train fully or not at all)" for part, mode in self.items()
                   if part.startswith("connectors.") and mode == "lora"]
        errors += [f"{part}='adapter' (only encoders have adapter modules)" for part, mode in self.items()
                   if not part.startswith("encoders.") and mode == "adapter"]
        if errors:
            raise ValueError(f"invalid TrainablePolicy: {', '.join(errors)}; modes are {list(MODES)}")

    def items(self) -> list[tuple[str, str]]:
        """``[("llm", mode), ("encoders.video", mode), ..., ("connectors.audio", mode)]``."""
        pairs = [("llm", self.llm)]
        pairs += [(f"encoders.{m}", mode) for m, mode in self.encoders.items()]
        return pairs + [(f"connectors.{m}", mode) for m, mode in self.connectors.items()]

    def lora_parts(self) -> tuple[str, ...]:
        return tuple(part for part, mode in self.items() if mode == "lora")


def set_trainable(model: nn.Module, policy: TrainablePolicy) -> dict[str, int]:
    """Set ``requires_grad`` of every parameter from ``policy``; returns the trainable parameter count per part.

    Raises:
        ValueError: a part of the model has no mode in the policy, a ``lora`` part has no adapters, a ``full``
            part has adapters (merge them first), or an ``adapter`` encoder names no ``adapter_modules``.
    """
    modes = dict(policy.items())
    parts = ["llm", *(f"encoders.{m}" for m in model.encoders), *(f"connectors.{m}" for m in model.connectors)]
    missing = [part for part in parts if part not in modes]
    if missing:
        raise ValueError(f"TrainablePolicy has no mode for {missing}")
    counts = {}
    for part in parts:
        module = _module(model, part)
        mode = modes[part]
        if mode == "lora" and not is_lora(module):
            raise ValueError(f"{part} is 'lora' but has no adapters; use prepare_for_training(model, policy, lora) "
                             "or avlm.modeling.lora.apply_lora first")
        if mode != "lora" and is_lora(module):
            raise ValueError(f"{part} is {mode!r} but has LoRA adapters; merge them (avlm.modeling.lora.merge_lora) "
                             "first")
        adapters = _adapter_modules(module, part) if mode == "adapter" else ()
        for name, parameter in module.named_parameters():
            parameter.requires_grad_(mode == "full" or (mode == "lora" and "lora_" in name)
                                     or name.split(".")[0] in adapters)
        counts[part] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return counts


def prepare_for_training(model: nn.Module, policy: TrainablePolicy, lora: LoRAConfig | None = None) -> dict[str, int]:
    """Apply LoRA (``lora``, default ``LoRAConfig()``) to the policy's ``lora`` parts, then :func:`set_trainable`."""
    parts = tuple(part for part in policy.lora_parts() if not is_lora(_module(model, part)))
    if parts:
        apply_lora(model, lora or LoRAConfig(), parts)
    return set_trainable(model, policy)


def _adapter_modules(module: nn.Module, part: str) -> tuple[str, ...]:
    """The names an ``adapter`` encoder trains; an error for an encoder that names none."""
    names = tuple(getattr(module, "adapter_modules", ()))  # only encoders with an adapter declare it
    if not names:
        raise ValueError(f"{part} is 'adapter' but {type(module).__name__} has no adapter_modules (only encoders with "
                         "a trainable adapter over a frozen backbone do, e.g. bt_adapter_clip); use 'frozen' or 'full'")
    return names


def _module(model: nn.Module, part: str) -> nn.Module:
    if part.startswith("connectors."):
        return model.connectors[part.partition(".")[2]]
    return get_part(model, part)


def cast_frozen(model: nn.Module, dtype: torch.dtype) -> None:
    """Store every frozen floating-point parameter (``requires_grad`` false) in ``dtype``; trainable ones keep theirs.
    Run after :func:`set_trainable`."""
    for parameter in model.parameters():
        if not parameter.requires_grad and parameter.is_floating_point():
            parameter.data = parameter.data.to(dtype)
