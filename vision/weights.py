"""Reading checkpoint tensors safely and checking them strictly: the one implementation every package uses.

Weights come from safetensors (``model.safetensors`` or a sharded ``model.safetensors.index.json``). A pickle file
(``pytorch_model.bin``, ``*.pt``) is read only with ``torch.load(weights_only=True)``, which unpickles tensors and
plain containers and nothing else; anything more is refused with a message saying why and how to convert. Checking
is strict: one error lists every missing, unexpected and mis-shaped key. (It lives in ``vision``, the package the
others already build on; ``audio``, ``fusion`` and ``avlm`` import it from here.)
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch


def load_pickle_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)`` of a ``{name: tensor}`` file, or a refusal explaining the risk.

    Raises:
        ValueError: the file needs arbitrary unpickling, or does not hold a flat ``{name: tensor}`` dict.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).partition("WeightsUnpickler error:")[2].strip().split("\n")[0] or str(error)[:200]
        raise ValueError(
            f"{path}: refused to load: besides tensors it holds Python objects ({reason}), and unpickling them can "
            "run arbitrary code. If you trust the file, convert it once to safetensors: "
            "from safetensors.torch import save_file; "
            f"save_file({{k: v.contiguous() for k, v in torch.load({str(path)!r}, weights_only=False).items()}}, "
            "'model.safetensors')") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a flat {{name: tensor}} dict, got {type(state).__name__}")
    return state


def read_weights(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a model folder: sharded or single safetensors, else ``pytorch_model.bin`` (weights only).

    Raises:
        FileNotFoundError: the folder holds none of these files.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {key: value for shard in shards for key, value in load_file(str(folder / shard)).items()}
    if (folder / "model.safetensors").is_file():
        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").is_file():
        return load_pickle_weights(folder / "pytorch_model.bin")
    raise FileNotFoundError(f"{folder}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def check_state_dict(expected: dict[str, torch.Size], found: dict[str, torch.Tensor], source: str) -> None:
    """Raise one ValueError listing the missing, unexpected and mis-shaped keys of ``found`` against ``expected``."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mis_shaped = [f"{key}: checkpoint {tuple(found[key].shape)} vs model {tuple(expected[key])}"
                  for key in sorted(set(expected) & set(found)) if found[key].shape != expected[key]]
    if missing or unexpected or mis_shaped:
        raise ValueError(f"{source}: weights do not match the model config; missing keys {_short(missing)}, "
                         f"unexpected keys {_short(unexpected)}, mis-shaped keys {_short(mis_shaped)}")


def _short(items: list[str], limit: int = 20) -> str:
    return str(items) if len(items) <= limit else f"{items[:limit]} ... ({len(items)} in all)"
