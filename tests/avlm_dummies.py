"""Small stand-in encoders and connectors for model tests (the model takes modules in), plus a tiny-LLM factory.

Notation: b batch, t frames, n tokens per frame, d encoder width, D LLM width, f audio frames, m mel bins.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

TEXT_CONFIGS = {  # tiny causal LMs of two families, built from their HF configs (no weights)
    "qwen2": {"model_type": "qwen2", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 48, "initializer_range": 0.2},
    "llama": {"model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 48, "initializer_range": 0.2},
}
PLACEHOLDERS = {"video": 3, "audio": 4, "image": 5}


class DummyVision(nn.Module):
    """[b, t, 3, 8, 8] -> [b, t, 4, d]: 2x2 grid of 4x4-pixel patches, one linear layer. Counts its calls."""

    def __init__(self, width: int = 12) -> None:
        super().__init__()
        self.proj = nn.Linear(48, width)
        self.output_dim, self.num_patches, self.calls = width, 4, 0

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.proj(rearrange(pixels, "b t c (h p) (w q) -> b t (h w) (c p q)", p=4, q=4))


class DummyVideoConnector(nn.Module):
    """[b, t, n, d] -> [b, (t // 2) * n, D]: frame pairs averaged, then a linear layer (frame count matters)."""

    def __init__(self, input_dim: int, output_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pairs = rearrange(x[:, : x.shape[1] // 2 * 2], "b (t two) n d -> b (t n) two d", two=2)
        return self.proj(pairs.mean(2))

    def num_output_tokens(self, num_frames: int, num_patches: int) -> int:
        return num_frames // 2 * num_patches


class DummyAudio(nn.Module):
    """[b, f, m] -> [b, f // 2, d] (frame pairs, one linear layer: padding cannot leak), lengths // 2."""

    def __init__(self, mel_bins: int = 10, width: int = 6) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * mel_bins, width)
        self.output_dim = width

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None):
        even = features.shape[1] // 2 * 2
        tokens = self.proj(rearrange(features[:, :even], "b (f two) m -> b f (two m)", two=2))
        lengths = torch.full((len(features),), features.shape[1]) if lengths is None else lengths
        return tokens, lengths // 2

    def num_tokens(self, num_feature_frames: int) -> int:
        return num_feature_frames // 2


class DummyProjector(nn.Module):
    """[b, n, d] -> [b, n, D]."""

    def __init__(self, input_dim: int, output_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def dummy_model(family: str = "qwen2", av_fusion: str = "separate", seed: int = 0):
    """AVLMForCausalLM over a tiny random LLM of ``family`` and the dummy encoders / connectors."""
    from transformers import AutoModelForCausalLM

    from avlm.modeling.configuration import AVLMConfig
    from avlm.modeling.model import AVLMForCausalLM

    torch.manual_seed(seed)
    config = AVLMConfig(text_config=dict(TEXT_CONFIGS[family]), placeholder_token_ids=PLACEHOLDERS,
                        av_fusion=av_fusion)
    llm = AutoModelForCausalLM.from_config(config.text_config)
    width = config.text_config.hidden_size
    encoders = {"video": DummyVision(), "audio": DummyAudio()}
    connectors = {"video": DummyVideoConnector(12, width), "audio": DummyProjector(6, width)}
    return AVLMForCausalLM(config, llm=llm, encoders=encoders, connectors=connectors).eval()
