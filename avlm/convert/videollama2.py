"""Official VideoLLaMA2 / VideoLLaMA2.1(-AV) checkpoint folders, loaded unchanged into ``AVLMForCausalLM``.

The loader follows the rules the official code follows (``videollama2/model/__init__.py::load_pretrained_model``):

- the LLM is the HF model named by ``model_type`` (``videollama2_qwen2`` -> Qwen2, ...), configured by the LLM keys of
  ``config.json``; its weights are ``model.*`` / ``lm_head.*``;
- the vision tower is loaded from the folder named by ``mm_vision_tower`` (a hub id or a path; never downloaded:
  resolved as an absolute path, next to the checkpoint, under the working directory, or in the local HF cache), the
  class chosen by substring (``clip`` -> CLIP, else ``siglip``), features ``hidden_states[mm_vision_select_layer]``;
  the checkpoint's own copy under ``model.vision_tower.*`` is ignored, as the official loader ignores it;
- the BEATs audio tower has no config in ``config.json``: BEATs defaults, updated by the ``cfg`` of the file named by
  ``mm_audio_tower`` when that file exists; its weights are ``model.audio_tower.*`` (never the file's own weights);
- connectors: ``mm_projector_type`` (``model.mm_projector.*``) and ``mm_projector_a_type``
  (``model.mm_projector_a.*``); audio-visual tokens go ``[video ; audio]`` at the single ``<video>`` placeholder;
- placeholders are the negative ids -200 ``<image>``, -201 ``<video>``, -202 ``<audio>`` (never tokenized).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)
from transformers.initialization import no_init_weights

import fusion
from audio.encoders.beats import BEATsConfig, BEATsEncoder
from avlm.modeling.configuration import AVLMConfig, ConnectorSpec
from avlm.modeling.model import AVLMForCausalLM
from avlm.modeling.parts import encoder_spec
from avlm.modeling.serialization import check_state_dict, read_weights
from avlm.processing.media import MediaConfig
from avlm.processing.processor import Processor
from vision import build_vision_encoder
from vision.preprocess import ImageProcessorConfig

LLM_TYPES = {"videollama2_qwen2": "qwen2", "videollama2_mistral": "mistral", "videollama2": "mistral",
             "videollama2_mixtral": "mixtral", "videollama2_llama": "llama", "videollama2_gemma2": "gemma2",
             "videollama2_phi3": "phi3"}
PLACEHOLDER_IDS = {"image": -200, "video": -201, "audio": -202}
# config.json keys that describe the multimodal parts or training, not the LLM.
NON_LLM_KEYS = {"architectures", "_name_or_path", "transformers_version", "torch_dtype", "model_type",
                "hidden_size_a", "image_aspect_ratio", "num_frames", "tokenizer_model_max_length",
                "tokenizer_padding_side", "use_mm_proj"}
NON_LLM_PREFIXES = ("mm_", "tune_mm_", "freeze_mm_")

# Official key prefix -> avlm key prefix; None: ignored (see the module docstring). First match wins.
KEY_MAP: list[tuple[str, str | None]] = [
    ("model.vision_tower.", None),
    ("model.mm_projector_a.", "connectors.audio."),
    ("model.mm_projector.", "connectors.video."),
    ("model.audio_tower.", "encoders.audio."),
    ("model.", "llm.model."),
    ("lm_head.", "llm.lm_head."),
]


def is_videollama2_folder(folder: str | os.PathLike) -> bool:
    """True when ``folder/config.json`` is an official VideoLLaMA2 config."""
    path = Path(folder) / "config.json"
    return path.is_file() and json.loads(path.read_text()).get("model_type") in LLM_TYPES


def convert_videollama2_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official keys -> avlm keys by :data:`KEY_MAP`; returns the converted dict and the ignored keys.

    Raises:
        ValueError: a key matches no rule.
    """
    converted, ignored, unknown = {}, [], []
    for key, value in state.items():
        rule = next(((old, new) for old, new in KEY_MAP if key.startswith(old)), None)
        if rule is None:
            unknown.append(key)
        elif rule[1] is None:
            ignored.append(key)
        else:
            converted[rule[1] + key[len(rule[0]):]] = value
    if unknown:
        raise ValueError(f"checkpoint keys that no VideoLLaMA2 rule maps: {unknown[:20]} ({len(unknown)} in all)")
    return converted, ignored


def resolve_tower(name: str, checkpoint: Path, what: str, overrides: dict[str, str | os.PathLike] | None) -> Path:
    """Find the local path of a tower named in config.json, or explain where to put it."""
    overrides = overrides or {}
    if name in overrides:
        return Path(overrides[name])
    candidates = [Path(name), checkpoint / name, Path.cwd() / name]
    cache = Path(os.environ.get("HF_HUB_CACHE", Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
                                / "hub"))
    snapshots = cache / f"models--{name.replace('/', '--')}" / "snapshots"
    if snapshots.is_dir():
        candidates += sorted(snapshots.iterdir())
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"{checkpoint}: the {what} {name!r} named in config.json was not found (tried {[str(c) for c in candidates]}); "
        f"download it once (e.g. `huggingface-cli download {name}`) or copy its folder next to the checkpoint as "
        f"{checkpoint / name}, or pass tower_paths={{{name!r}: '/local/path'}}")


def llm_config(official: dict[str, Any]) -> PretrainedConfig:
    """The HF config of the LLM inside an official config.json."""
    values = {key: value for key, value in official.items()
              if key not in NON_LLM_KEYS and not key.startswith(NON_LLM_PREFIXES)}
    return AutoConfig.for_model(LLM_TYPES[official["model_type"]], **values)


def _beats_config(official: dict[str, Any], checkpoint: Path) -> BEATsConfig:
    """BEATs defaults, updated by the ``cfg`` of the file named by ``mm_audio_tower`` when it exists (official rule)."""
    name = official.get("mm_audio_tower")
    for candidate in ([Path(name), checkpoint / name, Path.cwd() / name] if name else []):
        if candidate.is_file():
            saved = torch.load(candidate, map_location="cpu", weights_only=True)
            if isinstance(saved, dict) and "cfg" in saved:
                return BEATsConfig.from_dict(dict(saved["cfg"]))
    return BEATsConfig()


def _vision_encoder(official: dict[str, Any], checkpoint: Path,
                    overrides: dict | None) -> tuple[str, Any, dict[str, Any]]:
    name = official["mm_vision_tower"]
    kind = "clip" if "clip" in name.lower() else "siglip" if "siglip" in name.lower() else None
    if kind is None:
        raise ValueError(f"{checkpoint}: mm_vision_tower {name!r} names neither a CLIP nor a SigLIP tower")
    path = resolve_tower(name, checkpoint, "vision tower", overrides)
    options = {"select_layer": official.get("mm_vision_select_layer", -2)}
    return kind, build_vision_encoder(kind, path=path, **options), options


def load_videollama2(folder: str | os.PathLike, dtype: torch.dtype | str | None = None,
                     device: str | torch.device | None = None,
                     tower_paths: dict[str, str | os.PathLike] | None = None) -> AVLMForCausalLM:
    """Load an official VideoLLaMA2 checkpoint folder as an ``AVLMForCausalLM`` (strict keys, see module docstring).

    Args:
        folder: the downloaded checkpoint folder (config.json, model*.safetensors, tokenizer files).
        dtype: compute dtype (default float32; ``"auto"``: bfloat16, what the official weights are stored in).
        device: where to put the model.
        tower_paths: ``{name in config.json: local path}`` for towers stored elsewhere.
    """
    checkpoint = Path(folder)
    official = json.loads((checkpoint / "config.json").read_text())
    dtype = torch.bfloat16 if dtype == "auto" else getattr(torch, dtype) if isinstance(dtype, str) else dtype
    text_config = llm_config(official)
    video_kind, vision, vision_options = _vision_encoder(official, checkpoint, tower_paths)
    encoders, specs = {"video": vision}, {"video": encoder_spec(video_kind, vision, vision_options)}
    connectors = {"video": ConnectorSpec(official["mm_projector_type"])}
    with no_init_weights():
        llm = AutoModelForCausalLM.from_config(text_config)
        if official.get("mm_audio_tower"):
            encoders["audio"] = BEATsEncoder(_beats_config(official, checkpoint))
            specs["audio"] = encoder_spec("beats", encoders["audio"])
            connectors["audio"] = ConnectorSpec(official["mm_projector_a_type"])
        modules = {m: fusion.build_connector(spec.name, encoders[m].output_dim, text_config.hidden_size, **spec.options)
                   for m, spec in connectors.items()}
    config = AVLMConfig(text_config=text_config.to_dict(), encoders=specs, connectors=connectors,
                        placeholder_token_ids=PLACEHOLDER_IDS, av_fusion="concat_at_video")
    model = AVLMForCausalLM(config, llm=llm, encoders=encoders, connectors=modules)
    state, _ignored = convert_videollama2_state_dict(read_weights(checkpoint))
    own = model.state_dict()
    state.update({key: value for key, value in own.items() if key.startswith("encoders.video.")})
    check_state_dict({key: value.shape for key, value in own.items()}, state, str(checkpoint))
    model.load_state_dict({key: value.to(own[key].dtype) for key, value in state.items()}, strict=True)
    if (checkpoint / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(checkpoint)
    model.name_or_path = str(checkpoint)
    return model.to(device=device or "cpu", dtype=dtype or torch.float32).eval()


def prompt_ids(tokenizer: PreTrainedTokenizerBase, question: str, modal: str) -> torch.Tensor:
    """Official prompt ids [L]: chat template over ``"<modal>\\n" + question`` (no system message), the text pieces
    around the placeholder tokenized without special-token insertion, joined by the placeholder's negative id."""
    if modal not in PLACEHOLDER_IDS:
        raise ValueError(f"modal {modal!r}: choose one of {sorted(PLACEHOLDER_IDS)}")
    marker = f"<{modal}>"
    text = tokenizer.apply_chat_template([{"role": "user", "content": f"{marker}\n{question}"}], tokenize=False,
                                         add_generation_prompt=True)
    ids: list[int] = []
    for index, piece in enumerate(text.split(marker)):
        if index:
            ids.append(PLACEHOLDER_IDS[modal])
        ids += tokenizer(piece, add_special_tokens=False)["input_ids"] if piece else []
    return torch.tensor(ids, dtype=torch.long)


def videollama2_media_config(
    folder: str | os.PathLike, tower_paths: dict[str, str | os.PathLike] | None = None,
) -> tuple[MediaConfig, dict[str, int]]:
    """The processor settings of an official checkpoint: its ``num_frames``, its vision tower's image processor with
    the inference geometry (squash to S x S), the official audio front end; and the negative placeholder ids."""
    checkpoint = Path(folder)
    official = json.loads((checkpoint / "config.json").read_text())
    tower = resolve_tower(official["mm_vision_tower"], checkpoint, "vision tower", tower_paths)
    image_processor = dataclasses.replace(ImageProcessorConfig.from_pretrained(tower), mode="resize")
    media = MediaConfig(num_frames=official.get("num_frames", 16), image_processor=image_processor,
                        image_frames=official.get("num_frames", 16), preprocessing="videollama2",
                        max_audio_seconds=30.0)
    return media, dict(PLACEHOLDER_IDS)


def load_videollama2_processor(folder: str | os.PathLike,
                               tower_paths: dict[str, str | os.PathLike] | None = None) -> Processor:
    """The :class:`~avlm.processing.Processor` of an official checkpoint: its tokenizer, its media settings
    (:func:`videollama2_media_config`), the negative placeholder ids and the ``concat_at_video`` layout."""
    media, placeholders = videollama2_media_config(folder, tower_paths)
    return Processor(AutoTokenizer.from_pretrained(folder), media, placeholders, "concat_at_video")
