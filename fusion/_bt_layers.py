"""BT-Adapter branch layers and the reference checkpoint key names (private to ``fusion.bt_adapter``).

Notation:
    b: batch
    t: frames
    n: patch tokens per frame (kept patches when tube-masked)
    d: CLIP width

Branch tokens are ``[b, 1 + n t, d]``: the video CLS, then the patches ordered ``(n t)`` (index ``p * t + frame``),
as in farewellthree/BT-Adapter.
"""

from __future__ import annotations

import copy
import re

import torch
from einops import rearrange, repeat
from torch import Tensor, nn


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth: drop the whole residual of a sample with probability ``rate`` (training only)."""
    if rate == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - rate)
    return x * keep / (1.0 - rate)


class TemporalLayer(nn.Module):
    """Attention over frames for every patch; the CLS passes through. ``[b, 1 + n t, d] -> same``.

    ``patches + output_proj(DropPath(MHA_t(LN(patches))))`` with ``output_proj`` zero-initialised, so the layer is
    the identity at init (reference ``BTAdapterLayer_Time``; ``output_proj`` is its ``temporal_fc``).
    """

    def __init__(self, clip_config, drop_path: float) -> None:
        super().__init__()
        from transformers.models.clip.modeling_clip import CLIPAttention

        self.layer_norm1 = nn.LayerNorm(clip_config.hidden_size, eps=clip_config.layer_norm_eps)
        self.self_attn = CLIPAttention(clip_config)
        self.output_proj = nn.Linear(clip_config.hidden_size, clip_config.hidden_size)
        nn.init.zeros_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)
        self.drop_path = drop_path

    def forward(self, tokens: Tensor, num_frames: int) -> Tensor:
        cls, patches = tokens[:, :1], tokens[:, 1:]
        per_patch = rearrange(patches, "b (n t) d -> (b n) t d", t=num_frames)
        attended, _ = self.self_attn(self.layer_norm1(per_patch), attention_mask=None)
        update = self.output_proj(drop_path(attended, self.drop_path, self.training))
        patches = patches + rearrange(update, "(b n) t d -> b (n t) d", b=tokens.shape[0])
        return torch.cat([cls, patches], dim=1)


class SpatialLayer(nn.Module):
    """A CLIP encoder layer applied per frame, the video CLS shared by all frames (its update averaged over t).

    Built as a deep copy of a CLIP layer (reference ``BTAdapterLayer_Spatial``); stochastic depth on attention only.
    """

    def __init__(self, clip_layer: nn.Module, drop_path: float) -> None:
        super().__init__()
        copied = copy.deepcopy(clip_layer)
        self.layer_norm1, self.self_attn = copied.layer_norm1, copied.self_attn
        self.layer_norm2, self.mlp = copied.layer_norm2, copied.mlp
        self.drop_path = drop_path

    def forward(self, tokens: Tensor, num_frames: int) -> Tensor:
        cls, patches = tokens[:, :1], tokens[:, 1:]
        per_frame = torch.cat([repeat(cls, "b 1 d -> (b t) 1 d", t=num_frames),
                               rearrange(patches, "b (n t) d -> (b t) n d", t=num_frames)], dim=1)
        attended, _ = self.self_attn(self.layer_norm1(per_frame), attention_mask=None)
        attended = drop_path(attended, self.drop_path, self.training)
        cls_update = rearrange(attended[:, :1], "(b t) 1 d -> b t 1 d", t=num_frames).mean(1)
        patch_update = rearrange(attended[:, 1:], "(b t) n d -> b (n t) d", t=num_frames)
        tokens = tokens + torch.cat([cls_update, patch_update], dim=1)
        return tokens + self.mlp(self.layer_norm2(tokens))


# Reference (mmaction ``VITCLIPPretrained_BTAdapter``, module-relative) -> avlm key, first match wins.
_KEY_MAP: list[tuple[str, str]] = [
    (r"btadapter_T_layers\.(\d+)\.temporal_fc\.", r"temporal_layers.\1.output_proj."),
    (r"btadapter_T_layers\.", "temporal_layers."),
    (r"btadapter_S_layers\.", "spatial_layers."),
    (r"btadapter_time_embed\.", "time_embedding."),
    (r"btadapter_cls_token$", "cls_token"),
    (r"balance1$", "output_gate"),
    (r"balance2$", "middle_gate"),
    (r"(class_embedding$|patch_embedding\.|position_embedding\.)", r"clip_vision.embeddings.\1"),
    (r"layers\.", "clip_vision.encoder.layers."),
    (r"(pre_layrnorm|post_layernorm)\.", r"clip_vision.\1."),
    (r"visual_projection\.", "visual_projection."),
]


def reference_to_avlm_key(key: str) -> str | None:
    """The avlm name of a reference key (legacy ``timesFPN`` read as ``btadapter``), or None if it has none."""
    key = key.replace("timesFPN", "btadapter")
    for pattern, replacement in _KEY_MAP:
        if re.match(pattern, key):
            return re.sub("^" + pattern, replacement, key, count=1)
    return None


def avlm_to_reference_key(key: str) -> str:
    """Inverse of :func:`reference_to_avlm_key` on the keys a ``BTAdapter`` state dict holds."""
    inverse = [
        (r"temporal_layers\.(\d+)\.output_proj\.", r"btadapter_T_layers.\1.temporal_fc."),
        (r"temporal_layers\.", "btadapter_T_layers."), (r"spatial_layers\.", "btadapter_S_layers."),
        (r"time_embedding\.", "btadapter_time_embed."), (r"cls_token$", "btadapter_cls_token"),
        (r"output_gate$", "balance1"), (r"middle_gate$", "balance2"),
        (r"clip_vision\.embeddings\.", ""), (r"clip_vision\.encoder\.", ""), (r"clip_vision\.", ""),
    ]
    for pattern, replacement in inverse:
        if re.match(pattern, key):
            return re.sub("^" + pattern, replacement, key, count=1)
    return key
