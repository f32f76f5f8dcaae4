"""``AVLMConfig``: the saved description of an audio-visual LLM (the LLM config, encoders, connectors, splice layout).

Everything needed to rebuild the modules offline (random init) lives here and in ``config.json``; weights come
separately (``AVLMForCausalLM.from_pretrained``). Encoders and connectors are keyed by modality (``video``,
``audio``; an image is a one-frame video), each a registry name plus the options its constructor takes.

Example ``config.json`` (abridged)::

    {"model_type": "avlm",
     "text_config": {"model_type": "qwen2", "hidden_size": 32, ...},
     "encoders": {"video": {"name": "siglip", "config": {"model_type": "siglip_vision_model", ...},
                            "options": {"select_layer": -2}},
                  "audio": {"name": "beats", "config": {...}, "options": {}}},
     "connectors": {"video": {"name": "stc_connector_v35", "options": {}},
                    "audio": {"name": "mlp2x_gelu", "options": {}}},
     "placeholder_token_ids": {"video": 7, "audio": 8, "image": 9},
     "av_fusion": "separate"}
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import AutoConfig, PreTrainedConfig

from avlm.constants import AV_FUSIONS, MODALITIES, PLACEHOLDERS
from avlm.modeling.presets import get_preset


@dataclass
class EncoderSpec:
    """Which encoder a modality uses and how to rebuild it offline."""

    name: str
    """Registry key: ``vision.VISION_ENCODERS`` for video, ``audio.AUDIO_ENCODERS`` for audio."""
    config: dict[str, Any]
    """The encoder's own config as a dict (transformers configs carry their ``model_type``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Constructor options of the encoder class, e.g. ``{"select_layer": -2}``."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"encoder name must be a registry key string, got {self.name!r}")
        if not isinstance(self.config, dict) or not isinstance(self.options, dict):
            raise TypeError(f"encoder {self.name!r}: config and options must be dicts, got "
                            f"{type(self.config).__name__} and {type(self.options).__name__}")


@dataclass
class ConnectorSpec:
    """Which connector maps a modality's encoder tokens to the LLM width (``fusion.CONNECTORS`` key + options)."""

    name: str
    """Registry key of ``fusion.CONNECTORS``, e.g. ``stc_connector_v35`` (video) or ``mlp2x_gelu`` (audio)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Constructor options beyond the input and output widths (which come from the encoder and the LLM)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"connector name must be a registry key string, got {self.name!r}")
        if not isinstance(self.options, dict):
            raise TypeError(f"connector {self.name!r}: options must be a dict, got {type(self.options).__name__}")


class AVLMConfig(PreTrainedConfig):
    """Config of :class:`avlm.modeling.model.AVLMForCausalLM` (``model_type = "avlm"``).

    Fields:
        text_config: the LLM's config (any Hugging Face causal LM; a dict needs its ``model_type``).
        encoders: modality -> :class:`EncoderSpec` (or its dict).
        connectors: modality -> :class:`ConnectorSpec` (or its dict); the same modalities as ``encoders``.
        placeholder_token_ids: placeholder -> token id in ``input_ids`` (``video``, ``audio``, ``image``). Ids may be
            negative (VideoLLaMA2 uses -201/-202/-200): placeholders never reach the embedding table.
        av_fusion: where the audio tokens of an audio-visual sample go. ``"separate"``: at the sample's own ``audio``
            placeholder (avlm prompts: ``<video><audio>\\n...``). ``"concat_at_video"``: appended to the video tokens
            at the single ``video`` placeholder (official VideoLLaMA2-AV checkpoints). Either way video comes first.
    """

    model_type = "avlm"
    sub_configs = {"text_config": AutoConfig}

    text_config: dict | PreTrainedConfig | None = None
    encoders: dict[str, Any] = field(default_factory=dict)
    connectors: dict[str, Any] = field(default_factory=dict)
    placeholder_token_ids: dict[str, int] = field(default_factory=dict)
    av_fusion: Literal["separate", "concat_at_video"] = "separate"

    def __post_init__(self, **kwargs: Any) -> None:
        if isinstance(self.text_config, dict):
            self.text_config = _llm_config_from_dict(self.text_config)
        self.encoders = {m: _spec(EncoderSpec, spec) for m, spec in self.encoders.items()}
        self.connectors = {m: _spec(ConnectorSpec, spec) for m, spec in self.connectors.items()}
        self.placeholder_token_ids = {str(k): int(v) for k, v in self.placeholder_token_ids.items()}
        self._check()
        super().__post_init__(**kwargs)

    def _check(self) -> None:
        """Report every structural problem at once."""
        errors = []
        if self.text_config is not None and not isinstance(self.text_config, PreTrainedConfig):
            errors.append(f"text_config must be a transformers config or dict, got {type(self.text_config).__name__}")
        for what, keys in (("encoders", self.encoders), ("connectors", self.connectors)):
            unknown = sorted(set(keys) - set(MODALITIES))
            if unknown:
                errors.append(f"{what} has unknown modalities {unknown}; use {list(MODALITIES)}")
        if set(self.encoders) != set(self.connectors):
            errors.append(f"encoders {sorted(self.encoders)} and connectors {sorted(self.connectors)} must name the "
                          "same modalities (each encoder needs a connector to the LLM width)")
        unknown = sorted(set(self.placeholder_token_ids) - set(PLACEHOLDERS))
        if unknown:
            errors.append(f"placeholder_token_ids has unknown keys {unknown}; use {list(PLACEHOLDERS)}")
        missing = sorted(set(self.encoders) - set(self.placeholder_token_ids))
        if missing:
            errors.append(f"modalities {missing} have no placeholder token id in placeholder_token_ids")
        ids = list(self.placeholder_token_ids.values())
        if len(set(ids)) != len(ids):
            errors.append(f"placeholder_token_ids must be distinct, got {self.placeholder_token_ids}")
        if self.av_fusion not in AV_FUSIONS:
            errors.append(f"av_fusion={self.av_fusion!r}; choose one of {list(AV_FUSIONS)}")
        if errors:
            raise ValueError("invalid AVLMConfig: " + "; ".join(errors))

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> AVLMConfig:
        """The model config of the architecture preset ``name`` (:data:`avlm.modeling.presets.PRESETS`);
        ``overrides`` replace top-level fields (e.g. ``av_fusion``)."""
        fields = copy.deepcopy(get_preset(name).model)
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(f"unknown AVLMConfig fields {unknown} for preset {name!r}; fields: {sorted(fields)}")
        return cls(**{**fields, **overrides})

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities with an encoder, in splice order."""
        return tuple(m for m in MODALITIES if m in self.encoders)

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        for key in ("encoders", "connectors"):
            output[key] = {m: dataclasses.asdict(spec) for m, spec in getattr(self, key).items()}
        return output


def _spec(spec_class: type, value: Any) -> Any:
    if isinstance(value, spec_class):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"expected a {spec_class.__name__} or dict, got {type(value).__name__}: {value!r}")
    unknown = sorted(set(value) - {f.name for f in dataclasses.fields(spec_class)})
    if unknown:
        raise ValueError(f"{spec_class.__name__} got unknown keys {unknown} in {value!r}")
    return spec_class(**value)


def _llm_config_from_dict(values: dict[str, Any]) -> PreTrainedConfig:
    if "model_type" not in values:
        raise ValueError("text_config needs a 'model_type' (e.g. 'qwen2', 'llama', 'mistral') to pick the LLM class")
    values = dict(values)
    return AutoConfig.for_model(values.pop("model_type"), **values)

