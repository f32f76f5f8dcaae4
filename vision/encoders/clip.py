"""CLIP vision tower: patch tokens of ``hidden_states[select_layer]`` with the class token dropped.

Notation:
    b: batch, t: frames per sample, n: patch tokens per frame (grid_size ** 2), d: width (hidden size).

VideoLLaMA2 (openai/clip-vit-large-patch14-336, select_layer -2, "patch" features): 336 px -> [b, t, 576, 1024].
"""

from __future__ import annotations

import torch
from torch import nn

from vision.encoders._hf_tower import HFVisionTower
from vision.preprocess import CLIP


class CLIPVisionEncoder(HFVisionTower):
    """transformers ``CLIPVisionModel`` truncated to ``select_layer``; forward [b, t, 3, H, W] -> [b, t, n, d].

    Build with ``from_config(CLIPVisionConfig | CLIPConfig)`` (random init), ``from_pretrained(folder)`` (a full
    ``CLIPModel`` such as openai/clip-vit-large-patch14-336, or a vision-only checkpoint) or ``tiny()``.
    Frozen (no gradients, eval mode) unless ``frozen=False``.
    """

    model_class_name = "CLIPVisionModel"
    config_class_name = "CLIPVisionConfig"
    full_config_class_name = "CLIPConfig"
    model_types = ("clip", "clip_vision_model")
    other_tower_prefixes = ("text_model.", "visual_projection.", "text_projection.", "logit_scale")
    num_prefix_tokens = 1
    default_image_processor = CLIP  # resize the shortest side, centre crop, OpenAI mean and std

    def _keep_parts(self, model: nn.Module) -> None:
        """Keep embeddings, the pre-encoder LayerNorm (upstream name ``pre_layrnorm``) and the truncated encoder."""
        super()._keep_parts(model)
        self.pre_layrnorm = model.pre_layrnorm

    def _embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Class + patch embeddings with positions, then the pre-encoder LayerNorm: [b, 3, H, W] -> [b, 1 + n, d]."""
        return self.pre_layrnorm(self.embeddings(pixel_values))
