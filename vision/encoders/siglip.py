"""SigLIP vision tower: all patch tokens of ``hidden_states[select_layer]``, without ``post_layernorm``.

Notation:
    b: batch, t: frames per sample, n: patch tokens per frame (grid_size ** 2), d: width (hidden size).

VideoLLaMA2 (google/siglip-so400m-patch14-384, select_layer -2): 384 px frames -> [b, t, 729, 1152].
"""

from __future__ import annotations

from vision.encoders._hf_tower import HFVisionTower
from vision.preprocess import SIGLIP


class SiglipVisionEncoder(HFVisionTower):
    """transformers ``SiglipVisionModel`` truncated to ``select_layer``; forward [b, t, 3, H, W] -> [b, t, n, d].

    Build with ``from_config(SiglipVisionConfig | SiglipConfig)`` (random init), ``from_pretrained(folder)`` (a full
    ``SiglipModel`` such as google/siglip-so400m-patch14-384, or a vision-only checkpoint) or ``tiny()``.
    Frozen (no gradients, eval mode) unless ``frozen=False``.
    """

    model_class_name = "SiglipVisionModel"
    config_class_name = "SiglipVisionConfig"
    full_config_class_name = "SiglipConfig"
    model_types = ("siglip", "siglip_vision_model")
    other_tower_prefixes = ("text_model.", "logit_scale", "logit_bias")
    num_prefix_tokens = 0
    default_image_processor = SIGLIP  # squash to a square, mean = std = 0.5
