"""BEATs transformer blocks: weight-normalised positional convolution, gated relative-position attention, deep-norm
post-LN layers and the encoder stack that ties them together (the ``encoder.*`` part of a BEATs checkpoint).

Notation:
    b: batch, n: tokens, d: width (encoder_embed_dim), h: heads, e: head width (d / h), k: conv kernel taps.

Module and parameter names are the upstream BEATs names, because released checkpoints use them as keys.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

if TYPE_CHECKING:
    from audio.encoders._beats_config import BEATsConfig

LAYER_NORM_EPS = 1e-5
WEIGHT_NORM_EPS = 1e-6  # the vendored BEATs adds this inside the rsqrt of the positional conv's weight norm


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Return ``x`` unchanged, but scale the gradient flowing back through it by ``scale``."""
    return _ScaleGradient.apply(x, scale)


@lru_cache(maxsize=8)
def relative_position_buckets(
    num_tokens: int, num_buckets: int, max_distance: int, device: torch.device
) -> torch.Tensor:
    """Bidirectional T5-style bucket of the offset j - i for every (query i, key j): LongTensor [n, n].

    Half of the buckets hold positive offsets. Offsets below ``num_buckets // 4`` get one bucket each; larger ones are
    spaced logarithmically up to ``max_distance`` (float32 log, truncated toward zero) and clamped to the last bucket.
    The result is cached per (n, buckets, distance, device); do not modify it in place.
    """
    with torch.inference_mode(False), torch.no_grad():  # a normal tensor, reusable with autograd whoever cached it
        positions = torch.arange(num_tokens, device=device)
        offset = positions[None, :] - positions[:, None]
        half = num_buckets // 2
        max_exact = half // 2
        distance = offset.abs()
        scaled = torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
        large = (max_exact + scaled.long()).clamp(max=half - 1)
        return (offset > 0).long() * half + torch.where(distance < max_exact, distance, large)


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d whose weight is ``weight_g * weight_v / sqrt(sum_{out,in} weight_v**2 + 1e-6)`` per tap
    (weight norm along dim 2, computed in float32), padded by k // 2; the last output step is dropped when k is even
    so that the output keeps the input length.
    """

    def __init__(self, width: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.kernel_size, self.groups = kernel_size, groups
        self.weight_g = nn.Parameter(torch.empty(1, 1, kernel_size))
        self.weight_v = nn.Parameter(torch.empty(width, width // groups, kernel_size))
        self.bias = nn.Parameter(torch.zeros(width))
        if self.weight_v.is_meta:  # built on the meta device to be loaded: no init
            return
        nn.init.normal_(self.weight_v, std=math.sqrt(4.0 / (kernel_size * width)))
        with torch.no_grad():
            self.weight_g.copy_(self.weight_v.square().sum(dim=(0, 1), keepdim=True).sqrt())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [b, d, n] -> [b, d, n]."""
        direction = self.weight_v.float()
        scale = self.weight_g.float() * torch.rsqrt(direction.square().sum(dim=(0, 1), keepdim=True) + WEIGHT_NORM_EPS)
        # oneDNN's reduced-precision grouped conv1d on CPU returns wrong values for some shapes (torch 2.14.1: bf16,
        # 4 groups, kernel 8 -> cosine 0.06 to the float32 result), so on CPU the convolution runs in float32, also
        # under autocast (which would otherwise run it in bf16 whatever the input dtype).
        compute = torch.float32 if x.device.type == "cpu" else x.dtype
        weight = (direction * scale).to(compute)
        with torch.autocast("cpu", enabled=False):  # CPU autocast only: a CUDA input keeps CUDA autocast
            out = F.conv1d(x.to(compute), weight, self.bias.to(compute), padding=self.kernel_size // 2,
                           groups=self.groups)
        out = out.to(x.dtype)
        return out[..., :-1] if self.kernel_size % 2 == 0 else out


class BEATsAttention(nn.Module):
    """Multi-head self-attention with a gated relative-position bias added to the scores.

    The gate of head h at query i is ``a * (b * grep_a[h] - 1) + 2`` with ``(a, b) = sigmoid`` of ``grep_linear``
    applied to the unscaled per-head query and summed in two groups of four. ``relative_attention_bias`` is the bucket
    table shared by every layer; the encoder turns it into the ungated bias once per forward.
    """

    def __init__(self, width: int, num_heads: int, relative_attention_bias: nn.Embedding, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        head_width = width // num_heads
        self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        self.relative_attention_bias = relative_attention_bias
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)
        self.grep_linear = nn.Linear(head_width, 8)

    def forward(
        self, x: torch.Tensor, position_bias: torch.Tensor, key_padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x [b, n, d], position_bias [h, n, n] (ungated), key_padding_mask bool [b, n] (True = padded) -> [b, n, d]."""
        query, key, value = (
            rearrange(projection(x), "b n (h e) -> b h n e", h=self.num_heads)
            for projection in (self.q_proj, self.k_proj, self.v_proj)
        )
        gate_logits = reduce(self.grep_linear(query), "b h n (two four) -> b h n two", "sum", two=2, four=4)
        gate_a, gate_b = gate_logits.sigmoid().chunk(2, dim=-1)  # [b, h, n, 1] each
        bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * position_bias
        if key_padding_mask is not None:
            bias = bias.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias.to(query.dtype), dropout_p=dropout)
        return self.out_proj(rearrange(out, "b h n e -> b n (h e)"))


class BEATsLayer(nn.Module):
    """Post-LN deep-norm layer: ``x = LN(alpha * x + attention(x))``, then ``x = LN(alpha * x + fc2(gelu(fc1(x))))``
    with alpha = (2 * encoder_layers) ** 0.25 (1 without deep norm) and the erf GELU computed in float32.
    """

    def __init__(self, config: BEATsConfig, relative_attention_bias: nn.Embedding) -> None:
        super().__init__()
        width, hidden = config.encoder_embed_dim, config.encoder_ffn_embed_dim
        self.alpha = (2.0 * config.encoder_layers) ** 0.25 if config.deep_norm else 1.0
        self.dropout, self.activation_dropout = config.dropout, config.activation_dropout
        self.self_attn = BEATsAttention(
            width, config.encoder_attention_heads, relative_attention_bias, config.attention_dropout
        )
        self.self_attn_layer_norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.final_layer_norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)

    def forward(
        self, x: torch.Tensor, position_bias: torch.Tensor, key_padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x [b, n, d] -> [b, n, d]."""
        attended = F.dropout(self.self_attn(x, position_bias, key_padding_mask), self.dropout, self.training)
        x = self.self_attn_layer_norm(self.alpha * x + attended)
        hidden = F.gelu(self.fc1(x).float()).to(x.dtype)
        hidden = F.dropout(hidden, self.activation_dropout, self.training)
        hidden = F.dropout(self.fc2(hidden), self.dropout, self.training)
        return self.final_layer_norm(self.alpha * x + hidden)


class BEATsTransformer(nn.Module):
    """Positional conv + LayerNorm, then the deep-norm layers (checkpoint prefix ``encoder.``).

    The relative-position table is ONE ``nn.Embedding(num_buckets, h)`` shared by every layer, as in the reference:
    ``state_dict()`` repeats it as ``layers.{i}.self_attn.relative_attention_bias.weight`` and strict loading expects
    every copy. A load pre-hook refuses a state_dict whose copies differ (``ValueError`` naming the layers), so no copy
    silently overwrites another.
    """

    def __init__(self, config: BEATsConfig) -> None:
        super().__init__()
        width = config.encoder_embed_dim
        self.num_buckets, self.max_distance = config.num_buckets, config.max_distance
        self.dropout, self.layerdrop = config.dropout, config.encoder_layerdrop
        self.gradient_decay = config.layer_wise_gradient_decay_ratio
        self.pos_conv = nn.Sequential(WeightNormConv1d(width, config.conv_pos, config.conv_pos_groups), nn.GELU())
        self.layer_norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        # Initialised by the owner (BEATsEncoder); passing _weight skips nn.Embedding's own init.
        table = nn.Embedding(config.num_buckets, config.encoder_attention_heads,
                             _weight=torch.empty(config.num_buckets, config.encoder_attention_heads))
        self.layers = nn.ModuleList(BEATsLayer(config, table) for _ in range(config.encoder_layers))
        self.register_load_state_dict_pre_hook(_check_shared_table_copies)

    def position_bias(self, num_tokens: int) -> torch.Tensor:
        """Ungated relative-position bias [h, n, n] from the shared bucket table."""
        table = self.layers[0].self_attn.relative_attention_bias
        buckets = relative_position_buckets(num_tokens, self.num_buckets, self.max_distance, table.weight.device)
        return rearrange(table(buckets), "i j h -> h i j")

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [b, n, d], padding_mask bool [b, n] (True = padded: zeroed here and never attended to) -> [b, n, d]."""
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[:, :, None], 0.0)
        x = x + rearrange(self.pos_conv(rearrange(x, "b n d -> b d n")), "b d n -> b n d")
        x = F.dropout(self.layer_norm(x), self.dropout, self.training)
        position_bias = self.position_bias(x.shape[1])
        for layer in self.layers:
            if self.gradient_decay != 1.0:
                x = scale_gradient(x, self.gradient_decay)
            if self.training and self.layerdrop > 0 and torch.rand(()).item() <= self.layerdrop:
                continue  # LayerDrop: the reference keeps a layer when its draw exceeds the probability
            x = layer(x, position_bias, padding_mask)
        return x


def _check_shared_table_copies(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    """Load pre-hook: every copy of the shared relative-position table in ``state_dict`` must equal layer 0's."""
    keys = [f"{prefix}layers.{i}.self_attn.relative_attention_bias.weight" for i in range(len(module.layers))]
    present = [key for key in keys if key in state_dict]
    if not present:
        return
    first = state_dict[present[0]]
    differing = [key for key in present[1:] if state_dict[key].shape != first.shape or not torch.equal(
        state_dict[key], first)]
    if differing:
        raise ValueError(
            f"the relative-position table is shared by all BEATs layers, but these copies differ from {present[0]}: "
            f"{differing}; a BEATs checkpoint repeats the same table under every layer, so fix the state_dict "
            f"(e.g. copy layer 0's table to every layer) before loading"
        )
