"""Assemble a new model and its processor: an architecture preset's random-init parts, each replaced by a pretrained
part from a local folder when one is given (``avlm build``).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase

import audio as audio_package
import vision as vision_package
from avlm.modeling.configuration import AVLMConfig, ConnectorSpec, EncoderSpec
from avlm.modeling.model import AVLMForCausalLM
from avlm.modeling.parts import build_connector, build_encoder, build_llm, encoder_spec
from avlm.modeling.presets import PRESETS
from avlm.processing.media import MediaConfig
from avlm.processing.processor import Processor
from avlm.processing.tokenizer import add_placeholder_tokens, placeholder_token_ids, train_tiny_tokenizer


def build_model(preset: str | None = "avlm-tiny", llm: str | os.PathLike | None = None,
                vision: str | os.PathLike | None = None, audio: str | os.PathLike | None = None,
                connector: str | None = None, audio_connector: str | None = None, av_fusion: str | None = None,
                seed: int = 0, connector_options: dict[str, Any] | None = None,
                tokenizer: PreTrainedTokenizerBase | None = None, vision_encoder: str | None = None,
                vision_options: dict[str, Any] | None = None) -> tuple[AVLMForCausalLM, Processor]:
    """Assemble a new model and its processor: the preset's random-init parts, each replaced by a pretrained one when
    its path is given (the LLM folder also gives the tokenizer, with ``<video>``/``<audio>``/``<image>`` added).

    Args:
        preset: name in ``avlm.modeling.presets.PRESETS`` giving the defaults; None: every part must be given.
        llm: local Hugging Face causal-LM folder (weights, config, tokenizer).
        vision: local SigLIP / CLIP folder (a CLIP folder becomes a BT-Adapter encoder when the preset's is one).
        audio: BEATs ``.pt`` file or local Whisper folder.
        connector: video connector (``fusion.CONNECTORS`` key); default the preset's.
        audio_connector: audio projector; default the preset's.
        av_fusion: ``"separate"`` or ``"concat_at_video"``; default the preset's (``"separate"`` without one).
        seed: seed of the random-init parts.
        connector_options: options of the video connector (e.g. ``{"num_queries": 64}`` for ``ccam``); they replace
            the preset's options when ``connector`` is None.
        tokenizer: the tokenizer of a preset without an LLM folder, in place of the preset's own; needed for presets
            whose tokenizer is ``"tiny-avsynth"`` (``avlm.synth.avsynth_tokenizer``): the model core does not know
            AV-Synth's words.
        vision_encoder: the video encoder (``vision.VISION_ENCODERS`` key) among those that read ``vision`` (or the
            preset's encoder config), e.g. ``"bt_adapter_clip"`` for a CLIP folder; default the preset's, else the
            first that reads the folder.
        vision_options: constructor options of the video encoder (e.g. ``{"depth": 4}`` for ``bt_adapter_clip``);
            default the preset's when the encoder is the preset's, else the encoder's own defaults.

    Raises:
        ValueError: a part that does not fit (the message names it and what would).

    Returns:
        ``(AVLMForCausalLM, Processor)``.
    """
    torch.manual_seed(seed)
    base = AVLMConfig.from_preset(preset) if preset is not None else AVLMConfig()
    if preset is None and (llm is None or not (vision or audio) or (vision and not connector)
                           or (audio and not audio_connector)):
        raise ValueError("without a preset, give --llm, at least one of --vision / --audio, and a connector for each")
    language_model, tokenizer = _llm_and_tokenizer(llm, base, preset is not None and PRESETS[preset].tokenizer,
                                                   tokenizer)
    media = MediaConfig.from_preset(preset) if preset is not None else MediaConfig()
    encoders, specs = {}, {}
    choice = (vision_encoder, vision_options)
    for modality, path in (("video", vision), ("audio", audio)):
        chosen = choice if modality == "video" else (None, None)
        if path is not None:
            specs[modality], encoders[modality] = _pretrained_encoder(modality, path, base, *chosen)
            media = _media_for(modality, specs[modality].name, encoders[modality], media)
        elif modality in base.encoders:
            specs[modality] = _chosen_spec(base.encoders[modality], *chosen)
            encoders[modality] = build_encoder(modality, specs[modality])
        elif modality == "video" and choice != (None, None):
            raise ValueError("vision_encoder / vision_options choose the video encoder, but this model has none; "
                             "give --vision FOLDER or a preset with a video encoder")
    names = {"video": connector, "audio": audio_connector}
    connector_specs = {m: ConnectorSpec(names[m]) if names[m] else base.connectors[m] for m in encoders}
    if connector_options is not None:
        if "video" not in connector_specs:
            raise ValueError("connector_options are for the video connector, but this model has no video encoder")
        connector_specs["video"] = ConnectorSpec(connector_specs["video"].name, dict(connector_options))
    width = language_model.get_input_embeddings().embedding_dim
    connectors = {m: build_connector(connector_specs[m], encoders[m].output_dim, width) for m in encoders}
    fusion = av_fusion or (base.av_fusion if preset is not None else "separate")
    ids = base.placeholder_token_ids if llm is None and preset is not None else placeholder_token_ids(tokenizer)
    config = AVLMConfig(text_config=language_model.config, encoders=specs, connectors=connector_specs,
                        placeholder_token_ids=ids, av_fusion=fusion)
    model = AVLMForCausalLM(config, llm=language_model, encoders=encoders, connectors=connectors)
    model.generation_config = _generation_config(language_model, tokenizer)
    return model, Processor(tokenizer, media, ids, fusion)


def _llm_and_tokenizer(path: str | os.PathLike | None, base: AVLMConfig, tokenizer_source: str | bool,
                       given: PreTrainedTokenizerBase | None) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    if path is None:
        if tokenizer_source not in ("tiny", "tiny-avsynth"):
            raise ValueError("this preset takes its tokenizer and weights from an LLM checkpoint; pass --llm FOLDER")
        if given is not None:
            tokenizer = given
        elif tokenizer_source == "tiny":
            tokenizer = train_tiny_tokenizer()
        else:
            raise ValueError("this preset's tokenizer has AV-Synth's words as single tokens; pass "
                             "tokenizer=avlm.synth.avsynth_tokenizer(vocab_size) (`avlm build` and recipes do)")
        if placeholder_token_ids(tokenizer) != base.placeholder_token_ids:
            raise ValueError(f"the tiny tokenizer's placeholder ids {placeholder_token_ids(tokenizer)} differ from the "
                             f"preset's {base.placeholder_token_ids}")
        return build_llm(base.text_config), tokenizer
    language_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    add_placeholder_tokens(tokenizer)
    if len(tokenizer) > language_model.get_input_embeddings().num_embeddings:
        language_model.resize_token_embeddings(len(tokenizer))
    return language_model, tokenizer


def _chosen_spec(spec: EncoderSpec, name: str | None, options: dict[str, Any] | None) -> EncoderSpec:
    """The preset's random-init encoder ``spec`` with another encoder class and/or options for the same config."""
    if name is None and options is None:
        return spec
    name = name or spec.name
    model_type = spec.config.get("model_type")
    readers = [key for key, cls in vision_package.VISION_ENCODERS.items()
               if model_type in getattr(cls, "model_types", ())]
    if name not in readers:
        raise ValueError(f"vision encoder {name!r} does not take the preset's {model_type!r} encoder config; encoders "
                         f"that do: {readers} (or give --vision FOLDER with a checkpoint {name!r} reads)")
    chosen = options if options is not None else spec.options if name == spec.name else {}
    return EncoderSpec(name, spec.config, dict(chosen))


def _pretrained_encoder(modality: str, path: str | os.PathLike, base: AVLMConfig, name: str | None = None,
                        options: dict[str, Any] | None = None) -> tuple[EncoderSpec, nn.Module]:
    """Load a pretrained encoder; its registry name is read from the checkpoint (``config.json`` model_type), or
    ``name`` (video only) when several encoders read it; ``options``: the encoder's constructor options."""
    path = Path(path)
    model_type = json.loads((path / "config.json").read_text()).get("model_type") if path.is_dir() else None
    if modality == "video":
        names = [n for n, c in vision_package.VISION_ENCODERS.items() if model_type in getattr(c, "model_types", ())]
    else:
        names = ["beats"] if path.is_file() else [n for n in audio_package.AUDIO_ENCODERS if n == model_type]
    preset_spec = base.encoders.get(modality)
    if name is not None:
        if name not in names:
            raise ValueError(f"{path}: vision encoder {name!r} does not read this folder (model_type {model_type!r}); "
                             f"encoders that do: {names}")
        names = [name]
    if len(names) > 1:  # a CLIP folder feeds clip and bt_adapter_clip: the preset's encoder, else the first listed
        names = [preset_spec.name] if preset_spec is not None and preset_spec.name in names else names[:1]
    if len(names) != 1:
        raise ValueError(f"{path}: cannot tell which {modality} encoder reads it (model_type {model_type!r}); "
                         f"video: a SigLIP/CLIP folder; audio: a BEATs .pt file or a Whisper folder")
    if options is not None:
        options = dict(options)
    else:
        options = dict(preset_spec.options) if preset_spec is not None and preset_spec.name == names[0] else {}
    if modality == "video":
        if "select_layer" in inspect.signature(vision_package.VISION_ENCODERS[names[0]]).parameters:  # not BT-Adapter
            options.setdefault("select_layer", -2)
        encoder = vision_package.build_vision_encoder(names[0], path=path, **options)
    else:
        encoder = audio_package.build_audio_encoder(names[0], path=path, **options)
    return encoder_spec(names[0], encoder, options), encoder


def _media_for(modality: str, name: str, encoder: nn.Module, media: MediaConfig) -> MediaConfig:
    """Media settings matching a pretrained encoder: its image processor, or its audio front end."""
    if modality == "video":
        return dataclasses.replace(media, image_processor=encoder.image_processor)
    if name == "whisper":
        return dataclasses.replace(media, audio_features="whisper_log_mel", n_mels=encoder.num_mel_bins,
                                   max_audio_seconds=encoder.num_frames * 160 / 16000)
    return dataclasses.replace(media, audio_features="fbank", n_mels=128)


def _generation_config(language_model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    config = copy.deepcopy(language_model.generation_config) if language_model.generation_config else GenerationConfig()
    config.eos_token_id = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return config
