"""Turn the specs of an :class:`~avlm.modeling.configuration.AVLMConfig` into modules through the registries, and
modules into specs.

``vision.VISION_ENCODERS`` serves the ``video`` modality, ``audio.AUDIO_ENCODERS`` the ``audio`` modality and
``fusion.CONNECTORS`` both connectors. Encoder configs are stored as dicts: a transformers config carries its
``model_type`` (rebuilt with ``AutoConfig.for_model``), other configs are dataclasses read by :data:`CONFIG_READERS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedConfig

import fusion
from audio import build_audio_encoder
from audio.encoders.beats import BEATsConfig
from avlm.modeling.configuration import AVLMConfig, ConnectorSpec, EncoderSpec
from vision import build_vision_encoder


def _read_beats_config(values: dict[str, Any]) -> BEATsConfig:
    return BEATsConfig.from_dict(values)


# Encoder registry name -> reader of its (non-transformers) config dict.
CONFIG_READERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "beats": _read_beats_config,
}


def build_llm(text_config: PreTrainedConfig | None) -> nn.Module:
    """Random-init Hugging Face causal LM from its config (Qwen2, LLaMA, Mistral, ... any ``AutoModelForCausalLM``)."""
    if text_config is None:
        raise ValueError("AVLMConfig.text_config is None; give the LLM config (e.g. from a preset or an LLM folder)")
    return AutoModelForCausalLM.from_config(text_config)


def encoder_config_from_dict(name: str, values: dict[str, Any]) -> Any:
    """The config object an encoder's ``from_config`` takes, from its stored dict."""
    if "model_type" in values:
        values = dict(values)
        return AutoConfig.for_model(values.pop("model_type"), **values)
    if name not in CONFIG_READERS:
        raise ValueError(f"encoder {name!r}: its config dict has no 'model_type' and no reader is registered in "
                         f"avlm.modeling.parts.CONFIG_READERS (known: {sorted(CONFIG_READERS)})")
    return CONFIG_READERS[name](values)


def encoder_config_to_dict(config: Any) -> dict[str, Any]:
    """Inverse of :func:`encoder_config_from_dict`: a transformers config's ``to_dict()`` or a dataclass's fields."""
    if dataclasses.is_dataclass(config) and not hasattr(config, "to_dict"):
        return dataclasses.asdict(config)
    if hasattr(config, "to_dict"):
        values = config.to_dict()
        values.pop("transformers_version", None)
        return values
    raise TypeError(f"cannot store an encoder config of type {type(config).__name__}; use a transformers config or "
                    "a dataclass")


def build_encoder(modality: str, spec: EncoderSpec) -> nn.Module:
    """Random-init encoder of ``modality`` from its spec (registry name, config dict, options)."""
    config = encoder_config_from_dict(spec.name, spec.config)
    if modality == "video":
        return build_vision_encoder(spec.name, config=config, **spec.options)
    if modality == "audio":
        return build_audio_encoder(spec.name, config=config, **spec.options)
    raise ValueError(f"unknown modality {modality!r}; use 'video' or 'audio'")


def build_connector(spec: ConnectorSpec, input_dim: int, output_dim: int) -> nn.Module:
    """Random-init connector from ``fusion.CONNECTORS``: encoder width ``input_dim`` -> LLM width ``output_dim``."""
    return fusion.build_connector(spec.name, input_dim, output_dim, **spec.options)


def build_parts(config: AVLMConfig) -> tuple[nn.Module, dict[str, nn.Module], dict[str, nn.Module]]:
    """Random-init LLM, encoders and connectors of a config (what ``AVLMForCausalLM(config)`` holds)."""
    llm = build_llm(config.text_config)
    width = llm.get_input_embeddings().embedding_dim
    encoders = {m: build_encoder(m, config.encoders[m]) for m in config.modalities}
    connectors = {m: build_connector(config.connectors[m], encoders[m].output_dim, width) for m in config.modalities}
    return llm, encoders, connectors


def encoder_spec(name: str, encoder: nn.Module, options: Mapping[str, Any] | None = None) -> EncoderSpec:
    """The spec that rebuilds ``encoder`` (an instance of registry entry ``name``) offline, e.g. after loading it
    with ``from_pretrained``. ``options``: the constructor options it was built with (JSON values)."""
    if not hasattr(encoder, "config"):
        raise TypeError(f"encoder {name!r} ({type(encoder).__name__}) has no .config to store; registry encoders "
                        "keep the config they were built from as .config")
    return EncoderSpec(name=name, config=encoder_config_to_dict(encoder.config), options=dict(options or {}))
