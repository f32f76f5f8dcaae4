"""Turn the specs of an :class:`~avlm.config.AVLMConfig` into modules through the registries, and modules into specs.

``vision.VISION_ENCODERS`` serves the ``video`` modality, ``audio.AUDIO_ENCODERS`` the ``audio`` modality and
``fusion.CONNECTORS`` both connectors. Encoder configs are stored as dicts: a transformers config carries its
``model_type`` (rebuilt with ``AutoConfig.for_model``), other configs are dataclasses read by :data:`CONFIG_READERS`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avlm.config import AVLMConfig, ConnectorSpec, EncoderSpec


def _read_beats_config(values: dict[str, Any]) -> Any:
    from audio.encoders.beats import BEATsConfig

    return BEATsConfig.from_dict(values)


# Encoder registry name -> reader of its (non-transformers) config dict.
CONFIG_READERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "beats": _read_beats_config,
}


def build_llm(text_config: Any) -> nn.Module:
    """Random-init Hugging Face causal LM from its config (Qwen2, LLaMA, Mistral, ... any ``AutoModelForCausalLM``)."""
    from transformers import AutoModelForCausalLM

    if text_config is None:
        raise ValueError("AVLMConfig.text_config is None; give the LLM config (e.g. from a preset or an LLM folder)")
    return AutoModelForCausalLM.from_config(text_config)


def encoder_config_from_dict(name: str, values: dict[str, Any]) -> Any:
    """The config object an encoder's ``from_config`` takes, from its stored dict."""
    if "model_type" in values:
        from transformers import AutoConfig

        values = dict(values)
        return AutoConfig.for_model(values.pop("model_type"), **values)
    if name not in CONFIG_READERS:
        raise ValueError(f"encoder {name!r}: its config dict has no 'model_type' and no reader is registered in "
                         f"avlm.builders.CONFIG_READERS (known: {sorted(CONFIG_READERS)})")
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
        from vision import build_vision_encoder

        return build_vision_encoder(spec.name, config=config, **spec.options)
    if modality == "audio":
        from audio import build_audio_encoder

        return build_audio_encoder(spec.name, config=config, **spec.options)
    raise ValueError(f"unknown modality {modality!r}; use 'video' or 'audio'")


def build_connector(spec: ConnectorSpec, input_dim: int, output_dim: int) -> nn.Module:
    """Random-init connector from ``fusion.CONNECTORS``: encoder width ``input_dim`` -> LLM width ``output_dim``."""
    import fusion

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


def build_model(preset: str | None = "avlm-tiny", llm: str | os.PathLike | None = None,
                vision: str | os.PathLike | None = None, audio: str | os.PathLike | None = None,
                connector: str | None = None, audio_connector: str | None = None, av_fusion: str | None = None,
                seed: int = 0, connector_options: dict[str, Any] | None = None) -> tuple[nn.Module, Any]:
    """Assemble a new model and its processor: the preset's random-init parts, each replaced by a pretrained one when
    its path is given (the LLM folder also gives the tokenizer, with ``<video>``/``<audio>``/``<image>`` added).

    Args:
        preset: name in ``avlm.presets.PRESETS`` giving the defaults; None: every part must be given.
        llm: local Hugging Face causal-LM folder (weights, config, tokenizer).
        vision: local SigLIP / CLIP folder.
        audio: BEATs ``.pt`` file or local Whisper folder.
        connector: video connector (``fusion.CONNECTORS`` key); default the preset's.
        audio_connector: audio projector; default the preset's.
        av_fusion: ``"separate"`` or ``"concat_at_video"``; default the preset's (``"separate"`` without one).
        seed: seed of the random-init parts.
        connector_options: options of the video connector (e.g. ``{"num_queries": 64}`` for ``ccam``); they replace
            the preset's options when ``connector`` is None.

    Returns:
        ``(AVLMForCausalLM, Processor)``.
    """
    from avlm.model import AVLMForCausalLM
    from avlm.presets import PRESETS, from_name, media_config
    from avlm.processor import Processor

    torch.manual_seed(seed)
    base = from_name(preset) if preset is not None else AVLMConfig()
    if preset is None and (llm is None or not (vision or audio) or (vision and not connector)
                           or (audio and not audio_connector)):
        raise ValueError("without a preset, give --llm, at least one of --vision / --audio, and a connector for each")
    language_model, tokenizer = _llm_and_tokenizer(llm, base, preset is not None and PRESETS[preset].tokenizer)
    media = media_config(preset) if preset is not None else _default_media()
    encoders, specs = {}, {}
    for modality, path in (("video", vision), ("audio", audio)):
        if path is not None:
            specs[modality], encoders[modality] = _pretrained_encoder(modality, path, base)
            media = _media_for(modality, specs[modality].name, encoders[modality], media)
        elif modality in base.encoders:
            specs[modality] = base.encoders[modality]
            encoders[modality] = build_encoder(modality, specs[modality])
    names = {"video": connector, "audio": audio_connector}
    connector_specs = {m: ConnectorSpec(names[m]) if names[m] else base.connectors[m] for m in encoders}
    if connector_options is not None:
        if "video" not in connector_specs:
            raise ValueError("connector_options are for the video connector, but this model has no video encoder")
        connector_specs["video"] = ConnectorSpec(connector_specs["video"].name, dict(connector_options))
    width = language_model.get_input_embeddings().embedding_dim
    connectors = {m: build_connector(connector_specs[m], encoders[m].output_dim, width) for m in encoders}
    fusion = av_fusion or (base.av_fusion if preset is not None else "separate")
    from avlm.tokenizer import placeholder_token_ids

    ids = base.placeholder_token_ids if llm is None and preset is not None else placeholder_token_ids(tokenizer)
    config = AVLMConfig(text_config=language_model.config, encoders=specs, connectors=connector_specs,
                        placeholder_token_ids=ids, av_fusion=fusion)
    model = AVLMForCausalLM(config, llm=language_model, encoders=encoders, connectors=connectors)
    model.generation_config = _generation_config(language_model, tokenizer)
    return model, Processor(tokenizer, media, ids, fusion)


def _llm_and_tokenizer(path: str | os.PathLike | None, base: AVLMConfig, tokenizer_source: str | bool) -> tuple:
    from avlm.tokenizer import add_placeholder_tokens, placeholder_token_ids, train_tiny_tokenizer

    if path is None:
        if tokenizer_source not in ("tiny", "tiny-avsynth"):
            raise ValueError("this preset takes its tokenizer and weights from an LLM checkpoint; pass --llm FOLDER")
        if tokenizer_source == "tiny":
            tokenizer = train_tiny_tokenizer()
        else:
            from avlm.synth.vocab import vocabulary_words

            tokenizer = train_tiny_tokenizer(base.text_config.vocab_size, extra_words=vocabulary_words())
        if placeholder_token_ids(tokenizer) != base.placeholder_token_ids:
            raise ValueError(f"the tiny tokenizer's placeholder ids {placeholder_token_ids(tokenizer)} differ from the "
                             f"preset's {base.placeholder_token_ids}")
        return build_llm(base.text_config), tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    language_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    add_placeholder_tokens(tokenizer)
    if len(tokenizer) > language_model.get_input_embeddings().num_embeddings:
        language_model.resize_token_embeddings(len(tokenizer))
    return language_model, tokenizer


def _pretrained_encoder(modality: str, path: str | os.PathLike, base: AVLMConfig) -> tuple[EncoderSpec, nn.Module]:
    """Load a pretrained encoder; its registry name is read from the checkpoint (``config.json`` model_type)."""
    import audio as audio_package
    import vision as vision_package

    path = Path(path)
    model_type = json.loads((path / "config.json").read_text()).get("model_type") if path.is_dir() else None
    if modality == "video":
        names = [n for n, c in vision_package.VISION_ENCODERS.items() if model_type in getattr(c, "model_types", ())]
    else:
        names = ["beats"] if path.is_file() else [n for n in audio_package.AUDIO_ENCODERS if n == model_type]
    if len(names) != 1:
        raise ValueError(f"{path}: cannot tell which {modality} encoder reads it (model_type {model_type!r}); "
                         f"video: a SigLIP/CLIP folder; audio: a BEATs .pt file or a Whisper folder")
    preset_spec = base.encoders.get(modality)
    options = dict(preset_spec.options) if preset_spec is not None and preset_spec.name == names[0] else {}
    if modality == "video":
        options.setdefault("select_layer", -2)
        encoder = vision_package.build_vision_encoder(names[0], path=path, **options)
    else:
        encoder = audio_package.build_audio_encoder(names[0], path=path, **options)
    return encoder_spec(names[0], encoder, options), encoder


def _media_for(modality: str, name: str, encoder: nn.Module, media: Any) -> Any:
    """Media settings matching a pretrained encoder: its image processor, or its audio front end."""
    if modality == "video":
        return dataclasses.replace(media, image_processor=encoder.image_processor)
    if name == "whisper":
        return dataclasses.replace(media, audio_features="whisper_log_mel", n_mels=encoder.num_mel_bins,
                                   max_audio_seconds=encoder.num_frames * 160 / 16000)
    return dataclasses.replace(media, audio_features="fbank", n_mels=128)


def _default_media() -> Any:
    from avlm.media import MediaConfig

    return MediaConfig()


def _generation_config(language_model: nn.Module, tokenizer: Any) -> Any:
    from transformers import GenerationConfig

    config = copy.deepcopy(language_model.generation_config) if language_model.generation_config else GenerationConfig()
    config.eos_token_id = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return config
