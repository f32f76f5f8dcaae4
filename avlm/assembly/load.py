"""Load a model folder with its processor: the one place that tells an official VideoLLaMA2 folder from an avlm one."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from avlm.convert.videollama2 import is_videollama2_folder, load_videollama2, load_videollama2_processor
from avlm.modeling.model import AVLMForCausalLM
from avlm.processing.processor import CONFIG_FILE, Processor


def load_model(path: str | os.PathLike, dtype: torch.dtype | str | None = None,
               device: str | torch.device | None = None) -> AVLMForCausalLM:
    """The model of an avlm folder (``AVLMForCausalLM.from_pretrained``) or of an official VideoLLaMA2(-AV) folder
    (converted on load, :mod:`avlm.convert.videollama2`).

    Args:
        path: local model folder.
        dtype: parameter dtype (``"auto"``: as saved); None: float32.
        device: where to put the model; None: CPU.
    """
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json; give a local model folder (from `avlm build`, a training "
                                "run's final/, or an official VideoLLaMA2 checkpoint)")
    if is_videollama2_folder(folder):
        return load_videollama2(folder, dtype=dtype, device=device)
    return AVLMForCausalLM.from_pretrained(folder, dtype=dtype, device=device)


def load_processor(path: str | os.PathLike) -> Processor:
    """The processor of an avlm folder, or of an official folder (its media settings, tokenizer and placeholders);
    an official folder that carries a ``processor_config.json`` is read as an avlm folder."""
    folder = Path(path)
    if is_videollama2_folder(folder) and not (folder / CONFIG_FILE).is_file():
        return load_videollama2_processor(folder)
    return Processor.from_pretrained(folder)


def load_pretrained(path: str | os.PathLike, dtype: torch.dtype | str | None = None,
                    device: str | torch.device | None = None) -> tuple[AVLMForCausalLM, Processor]:
    """``(model, processor)`` of a local folder, avlm or official VideoLLaMA2 (see :func:`load_model`)."""
    return load_model(path, dtype, device), load_processor(path)
