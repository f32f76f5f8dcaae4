"""Safe, strict weight loading for avlm model folders.

Weights are read from safetensors (``model.safetensors`` or a sharded ``model.safetensors.index.json``). A pickle
file (``pytorch_model.bin``, ``*.pt``) is read only with ``torch.load(weights_only=True)``, which unpickles tensors
and plain containers and nothing else; anything more is refused with a message saying why and how to convert.
Loading is strict: one error lists every missing, unexpected and mis-shaped key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from vision.weights import check_state_dict, load_pickle_weights, read_weights

__all__ = ["check_state_dict", "load_pickle_weights", "read_weights", "save_model", "load_model"]

# Keyword arguments that AutoModelForCausalLM.from_pretrained adds on its own; for a local folder they change nothing.
_AUTO_BOOKKEEPING = {"_from_auto", "trust_remote_code", "adapter_kwargs", "cache_dir", "force_download",
                     "local_files_only", "proxies", "revision", "subfolder", "token", "code_revision", "_commit_hash"}


def save_model(model: PreTrainedModel, folder: str | os.PathLike, max_shard_size: int | str = "5GB",
               state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``config.json``, ``generation_config.json`` and safetensors weights (sharded above ``max_shard_size``).

    Every parameter is stored under its own name, except the targets of the LLM's tied weights (e.g.
    ``llm.lm_head.weight``, restored from ``llm.model.embed_tokens.weight`` at load). Other shared tensors (BEATs
    shares one relative-position table across layers) are stored once per name, as the official checkpoints do.

    Raises:
        ValueError: LoRA adapters are applied (save them with ``avlm.modeling.lora.save_adapter`` or merge them first).
    """
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = dict(state_dict if state_dict is not None else model.state_dict())
    adapters = [key for key in state if "lora_" in key]
    if adapters:
        raise ValueError(f"the model has LoRA adapters ({adapters[0]}, ...): save them with "
                         "avlm.modeling.lora.save_adapter, or merge them (avlm.modeling.lora.merge_lora) before "
                         "save_pretrained")
    for target in model.all_tied_weights_keys:
        state.pop(target, None)
    seen: set[int] = set()
    for key, value in state.items():
        pointer = value.untyped_storage().data_ptr()
        state[key] = value.detach().clone().contiguous() if pointer in seen else value.detach().contiguous()
        seen.add(pointer)
    split = split_torch_state_dict_into_shards(state, max_shard_size=max_shard_size)
    for filename, keys in split.filename_to_tensors.items():
        save_file({key: state[key] for key in keys}, str(folder / filename), metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in state.values())},
                 "weight_map": split.tensor_to_filename}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)


def load_model(model_class: type, folder: str | os.PathLike, config: Any | None = None,
               dtype: torch.dtype | str | None = None, device: str | torch.device | None = None,
               **kwargs: Any) -> Any:
    """Build ``model_class(config)`` without random init and fill it strictly from ``folder``.

    Args:
        model_class: ``AVLMForCausalLM``.
        folder: a local model folder written by ``save_pretrained``.
        config: the model config; None reads ``folder/config.json``.
        dtype: parameter dtype (``torch.bfloat16``, ``"float16"``, ``"auto"`` = as saved); None: float32.
        device: where the parameters are created (``"cuda"``, ``"cpu"``); None: CPU.
        **kwargs: ``attn_implementation``, ``device_map`` (a single device) or ``torch_dtype``; the bookkeeping
            arguments that ``AutoModelForCausalLM.from_pretrained`` adds are accepted and have no effect.
    """
    from transformers import GenerationConfig
    from transformers.initialization import no_init_weights

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json; give a local folder written by save_pretrained")
    dtype = kwargs.pop("torch_dtype", None) if dtype is None else dtype
    device = _device(kwargs.pop("device_map", None)) if device is None else device
    attn_implementation = kwargs.pop("attn_implementation", None)
    unknown = sorted(key for key, value in kwargs.items() if key not in _AUTO_BOOKKEEPING and value is not None)
    if unknown:
        raise TypeError(f"{model_class.__name__}.from_pretrained got unsupported arguments {unknown}; supported: "
                        "config, dtype, device, device_map (one device), attn_implementation")
    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if config is None and model_type != model_class.config_class.model_type:
        raise ValueError(f"{folder}: config.json has model_type {model_type!r}, not "
                         f"{model_class.config_class.model_type!r}; it is not an avlm model folder. Load official "
                         "VideoLLaMA2 folders (and avlm folders alike) with avlm.load(path) or "
                         "avlm.assembly.load_pretrained(path)")
    config = config if config is not None else model_class.config_class.from_pretrained(folder)
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    state = read_weights(folder)
    dtype = _dtype(dtype, state)
    with no_init_weights(), torch.device(device or "cpu"), _default_dtype(dtype):
        model = model_class(config)
    tied = model.all_tied_weights_keys  # e.g. llm.lm_head.weight -> llm.model.embed_tokens.weight
    for target, source in tied.items():
        if target not in state and source in state:
            state[target] = state[source]
    check_state_dict({k: v.shape for k, v in model.state_dict().items()}, state, str(folder))
    model.load_state_dict(state, strict=True)
    model.tie_weights()
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(folder)
    model.name_or_path = str(folder)
    model.config.name_or_path = str(folder)
    return model.eval()


def _device(device_map: Any) -> str | torch.device | None:
    if device_map is None or isinstance(device_map, (str, torch.device)) and device_map != "auto":
        return device_map
    raise ValueError(f"device_map={device_map!r} is not supported; load onto one device (device='cuda:0') and shard "
                     "with your training framework")


def _dtype(dtype: torch.dtype | str | None, state: dict[str, torch.Tensor]) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if dtype == "auto":
        floating = [value.dtype for value in state.values() if value.is_floating_point()]
        return max(set(floating), key=floating.count) if floating else torch.float32
    resolved = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype={dtype!r} is not a floating-point torch dtype; use e.g. torch.bfloat16 or 'auto'")
    return resolved


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


