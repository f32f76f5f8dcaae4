"""BEATs hyperparameters (the reference ``BEATsConfig``), filled from defaults or a checkpoint's ``cfg`` dict."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

NUM_MEL_BINS = 128  # BEATs takes 128-bin Kaldi fbanks


@dataclass
class BEATsConfig:
    """BEATs hyperparameters; defaults are BEATs-base (iter3+ AS2M), i.e. the reference ``BEATsConfig()``.

    Field names are the upstream ones, because a checkpoint's ``cfg`` dict fills them.
    """

    input_patch_size: int = 16  # side of the square fbank patches; tokens = (f // p) * (128 // p)
    embed_dim: int = 512  # patch-embedding width e; post_extract_proj maps it to d only when e != d
    conv_bias: bool = False  # bias in the patch-embedding convolution
    encoder_layers: int = 12  # transformer layers; also sets the deep-norm alpha (2 * layers) ** 0.25
    hidden_size: int = 4096  # unused by the encoder; VideoLLaMA2 sizes its audio projector output from it
    encoder_embed_dim: int = 768  # width d of the tokens returned
    encoder_ffn_embed_dim: int = 3072  # hidden width of each layer's feed-forward block
    encoder_attention_heads: int = 12  # attention heads h (d must be divisible by h)
    activation_fn: str = "gelu"  # feed-forward activation; only "gelu" (erf form) is implemented
    layer_wise_gradient_decay_ratio: float = 0.6  # backward multiplies the gradient entering every layer by this
    layer_norm_first: bool = False  # pre-LN variant; only False (post-LN, as every released BEATs) is implemented
    deep_norm: bool = True  # residual scaled by alpha = (2 * layers) ** 0.25 before each LayerNorm
    dropout: float = 0.0  # dropout after attention, feed-forward and the positional conv (train mode only)
    attention_dropout: float = 0.0  # dropout on attention probabilities (train mode only)
    activation_dropout: float = 0.0  # dropout after the feed-forward activation (train mode only)
    encoder_layerdrop: float = 0.05  # probability of skipping a whole layer per forward (train mode only)
    dropout_input: float = 0.0  # dropout on the projected patch tokens (train mode only)
    conv_pos: int = 128  # kernel taps of the positional convolution (even: last output step trimmed)
    conv_pos_groups: int = 16  # groups of the positional convolution (d must be divisible by it)
    relative_position_embedding: bool = True  # only True is implemented
    num_buckets: int = 320  # relative-position buckets (half for positive offsets)
    max_distance: int = 800  # offset at which the logarithmic buckets saturate
    gru_rel_pos: bool = True  # gate the relative-position bias per query; only True is implemented
    finetuned_model: bool = True  # has the audio-tagging predictor (key predictor.*)
    predictor_dropout: float = 0.0  # dropout before the predictor (train mode only)
    predictor_class: int = 527  # predictor outputs (AudioSet classes)

    def __post_init__(self) -> None:
        integers = ("input_patch_size", "embed_dim", "encoder_layers", "hidden_size", "encoder_embed_dim",
                    "encoder_ffn_embed_dim", "encoder_attention_heads", "conv_pos", "conv_pos_groups", "num_buckets",
                    "max_distance", "predictor_class")
        problems = [f"{name} must be a positive integer, got {getattr(self, name)!r}" for name in integers
                    if not isinstance(getattr(self, name), int) or getattr(self, name) < 1]
        if not problems:  # relations between the sizes, once each size is valid
            problems += self._size_problems()
        problems += [f"{name} must lie in [0, 1), got {getattr(self, name)!r}" for name in (
            "dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop", "dropout_input",
            "predictor_dropout") if not 0.0 <= getattr(self, name) < 1.0]
        if not self.layer_wise_gradient_decay_ratio > 0:
            problems.append(f"layer_wise_gradient_decay_ratio must be > 0, got {self.layer_wise_gradient_decay_ratio}")
        unsupported = {"activation_fn": "gelu", "layer_norm_first": False, "relative_position_embedding": True,
                       "gru_rel_pos": True}
        problems += [f"{name}={getattr(self, name)!r} is not implemented; use {value!r} (every released BEATs does)"
                     for name, value in unsupported.items() if getattr(self, name) != value]
        if problems:
            raise ValueError("invalid BEATsConfig: " + "; ".join(problems))

    def _size_problems(self) -> list[str]:
        problems = []
        if NUM_MEL_BINS % self.input_patch_size:
            problems.append(f"input_patch_size must divide {NUM_MEL_BINS}, got {self.input_patch_size}")
        for name in ("encoder_attention_heads", "conv_pos_groups"):
            if self.encoder_embed_dim % getattr(self, name):
                problems.append(f"encoder_embed_dim {self.encoder_embed_dim} must be divisible by {name} "
                                f"{getattr(self, name)}")
        if self.num_buckets < 4 or self.max_distance <= self.num_buckets // 4:
            problems.append(f"need num_buckets >= 4 and max_distance > num_buckets // 4, got num_buckets "
                            f"{self.num_buckets}, max_distance {self.max_distance}")
        return problems

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BEATsConfig:
        """Defaults updated by a checkpoint's ``cfg`` dict; an unknown key is an error."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown BEATsConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)
