"""Shared base of the Hugging Face ViT towers (SigLIP, CLIP): truncated encoder, chunked frames, strict loading.

Notation:
    b: batch, t: frames per sample, n: patch tokens per frame (grid_size ** 2), d: width (hidden size),
    H, W: image height and width in pixels (both image_size).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from einops import rearrange
from torch import nn

from vision.preprocess import ImageProcessorConfig
from vision.weights import check_state_dict, read_weights

if TYPE_CHECKING:
    from transformers import PretrainedConfig


class HFVisionTower(nn.Module):
    """A transformers ViT vision model run up to ``select_layer``, returning per-frame patch tokens.

    Only the layers needed for ``hidden_states[select_layer]`` are built and run (no last layers, no
    ``post_layernorm``, no pooling head). Its state_dict keys are the upstream vision-model keys of the kept parts.

    Subclasses set the upstream names below and, if needed, override ``_embed``.
    """

    model_class_name: str  # transformers class, e.g. "SiglipVisionModel"
    config_class_name: str  # e.g. "SiglipVisionConfig"
    full_config_class_name: str  # the text + vision config, e.g. "SiglipConfig"
    model_types: tuple[str, ...]  # accepted config.json model_type values (full model, vision-only)
    other_tower_prefixes: tuple[str, ...]  # checkpoint keys of a full model that belong to other towers
    num_prefix_tokens: int  # class tokens dropped from the output
    default_image_processor: ImageProcessorConfig  # used (at image_size) when a folder has none
    tiny_config: dict[str, Any] = {  # config values of tiny(): 16x16 images, 4x4 patches of 4 px
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 16,
        "patch_size": 4,
    }

    def __init__(
        self,
        config: PretrainedConfig,
        select_layer: int = -2,
        chunk_size: int = 64,
        attn_implementation: str = "sdpa",
        frozen: bool = True,
        image_processor: ImageProcessorConfig | None = None,
    ) -> None:
        """Build a random-init tower.

        Args:
            config: the transformers vision config, or a full (text + vision) config whose ``vision_config`` is used.
            select_layer: index into the upstream ``hidden_states`` tuple (0 = embeddings, -1 = last layer);
                VideoLLaMA2 uses -2.
            chunk_size: frames per forward pass, bounding activation memory.
            attn_implementation: transformers attention backend ("sdpa", "eager", ...).
            frozen: disable gradients on every parameter and put the module in eval mode.
            image_processor: how frames are resized and normalised; defaults to the family's standard values
                at ``image_size``. Its output size must equal the config's ``image_size``.
        """
        super().__init__()
        import transformers

        if isinstance(config, getattr(transformers, self.full_config_class_name)):
            config = config.vision_config
        if not isinstance(config, getattr(transformers, self.config_class_name)):
            raise TypeError(f"config must be a {self.config_class_name}, got {type(config).__name__}")
        num_layers = config.num_hidden_layers
        if not -(num_layers + 1) <= select_layer <= num_layers:
            raise ValueError(
                f"select_layer={select_layer} is out of range for {num_layers} layers; "
                f"use a value in [{-(num_layers + 1)}, {num_layers}] (hidden_states index)"
            )
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.config = config
        self.select_layer = select_layer
        self.chunk_size = chunk_size
        self.num_layers_run = select_layer if select_layer >= 0 else num_layers + 1 + select_layer
        truncated = copy.deepcopy(config)
        truncated.num_hidden_layers = self.num_layers_run
        model_class = getattr(transformers, self.model_class_name)
        model = model_class._from_config(truncated, attn_implementation=attn_implementation)
        self._keep_parts(model)
        self.attn_implementation: str = model.config._attn_implementation  # as resolved by transformers
        self.image_size: int = config.image_size
        self.grid_size: int = config.image_size // config.patch_size
        self.num_patches: int = self.grid_size**2
        self.output_dim: int = config.hidden_size
        self.image_processor = image_processor or dataclasses.replace(
            self.default_image_processor, size=config.image_size
        )
        if self.image_processor.size != config.image_size:
            raise ValueError(
                f"image_processor.size={self.image_processor.size} differs from the model's image_size="
                f"{config.image_size}; frames must be preprocessed to the size the position embeddings expect"
            )
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def _keep_parts(self, model: nn.Module) -> None:
        """Keep the upstream submodules that the truncated forward uses (names kept for checkpoint keys)."""
        self.embeddings = model.embeddings
        self.encoder = model.encoder

    def _embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Patch (+ class) embeddings with positions: [b, 3, H, W] -> [b, n + prefix, d]."""
        return self.embeddings(pixel_values)

    @classmethod
    def from_config(cls, config: PretrainedConfig, **options: Any) -> HFVisionTower:
        """Random-init tower from a transformers config (options as in ``__init__``)."""
        return cls(config, **options)

    @classmethod
    def tiny(cls, **options: Any) -> HFVisionTower:
        """Random-init test-size tower: width 32, 2 layers, 16x16 images in 4x4 patches of 4 px."""
        import transformers

        return cls(getattr(transformers, cls.config_class_name)(**cls.tiny_config), **options)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **options: Any) -> HFVisionTower:
        """Load a local checkpoint folder: a full (text + vision) model or a vision-only model.

        Only ``vision_config`` and the vision weights are used. Loading is strict: every key of the upstream
        vision model (all layers, post-layernorm and head included) must be present with its shape, and no key
        may be left over except those of the other towers (text model, projections, logit scale).
        """
        import transformers
        from transformers.initialization import no_init_weights

        folder = Path(folder)
        config_path = folder / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{folder}: no config.json; pass a local {cls.model_class_name} checkpoint folder")
        model_type = json.loads(config_path.read_text()).get("model_type")
        if model_type not in cls.model_types:
            raise ValueError(
                f"{folder}: config model_type is {model_type!r}; {cls.__name__} loads one of {list(cls.model_types)}"
            )
        config = getattr(transformers, cls.config_class_name).from_pretrained(folder)
        if (folder / "preprocessor_config.json").is_file():
            options.setdefault("image_processor", ImageProcessorConfig.from_pretrained(folder))
        with no_init_weights():  # skip the random init: the strict load below overwrites every tensor
            tower = cls(config, **options)
        tower.load_upstream_state_dict(read_weights(folder), source=str(folder))
        return tower

    def load_upstream_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "state_dict") -> None:
        """Strictly load upstream keys (``vision_model.*`` of a full model, or vision-model-relative keys)."""
        import transformers

        prefixed = any(key.startswith("vision_model.") for key in state_dict)
        if prefixed:
            state_dict = {
                key.removeprefix("vision_model."): value
                for key, value in state_dict.items()
                if key.startswith("vision_model.") or not key.startswith(self.other_tower_prefixes)
            }
        with torch.device("meta"):
            full_model = getattr(transformers, self.model_class_name)._from_config(self.config)
        check_state_dict({key: value.shape for key, value in full_model.state_dict().items()}, state_dict, source)
        kept = self.state_dict().keys()
        self.load_state_dict({key: value for key, value in state_dict.items() if key in kept}, strict=True)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Encode every frame of the batch, ``chunk_size`` frames per pass.

        Args:
            pixel_values: normalised frames [b, t, 3, H, W].

        Returns:
            Patch tokens [b, t, n, d] of ``hidden_states[select_layer]`` (class token dropped), in row-major
            patch order, in the tower's dtype.
        """
        expected = (3, self.image_size, self.image_size)
        if pixel_values.ndim != 5 or tuple(pixel_values.shape[2:]) != expected:
            raise ValueError(
                f"pixel_values must have shape [b, t, {expected[0]}, {expected[1]}, {expected[2]}], "
                f"got {list(pixel_values.shape)}; resize frames to image_size={self.image_size}"
            )
        frames = rearrange(pixel_values, "b t c h w -> (b t) c h w")
        tokens = torch.cat([self._encode(chunk) for chunk in frames.split(self.chunk_size)])
        return rearrange(tokens, "(b t) n d -> b t n d", b=pixel_values.shape[0])

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        """[b, 3, H, W] -> [b, n, d]."""
        hidden_states = self.encoder(inputs_embeds=self._embed(frames)).last_hidden_state
        return hidden_states[:, self.num_prefix_tokens :]
