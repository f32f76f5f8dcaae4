"""The one encoder interface test, over every entry of VISION_ENCODERS and AUDIO_ENCODERS (built with tiny()).

Vision: forward [b, t, 3, H, W] -> [b, t, n, d]. Audio: forward ([b, f, m], lengths [b]) -> ([b, n, d], lengths [b]).
Encoder-specific parity and loading tests live in test_vision_towers.py and test_whisper_encoder.py.
"""

from __future__ import annotations

import pytest
import torch

from audio import AUDIO_ENCODERS
from vision import VISION_ENCODERS

DTYPES = [pytest.param(torch.float32, id="fp32"), pytest.param(torch.bfloat16, id="bf16")]


def assert_frozen(encoder: torch.nn.Module) -> None:
    trainable = [name for name, parameter in encoder.named_parameters() if parameter.requires_grad]
    assert trainable == [], f"frozen by default, but these require grad: {trainable[:5]}"
    assert not encoder.training, "frozen encoders are built in eval mode"


def assert_backward(encoder: torch.nn.Module, inputs: torch.Tensor, run) -> None:
    """Gradient reaches the inputs; parameters get gradients only when unfrozen."""
    inputs = inputs.detach().requires_grad_(True)
    run(inputs).float().square().mean().backward()
    assert inputs.grad is not None and torch.isfinite(inputs.grad).all() and inputs.grad.abs().sum() > 0
    with_grad = [name for name, parameter in encoder.named_parameters() if parameter.grad is not None]
    assert with_grad == [], f"frozen encoder accumulated gradients in {with_grad[:5]}"
    encoder.requires_grad_(True)
    inputs.grad = None
    run(inputs).float().square().mean().backward()
    with_grad = [name for name, parameter in encoder.named_parameters() if parameter.grad is not None]
    assert with_grad, "unfrozen encoder: no parameter received a gradient"
    assert all(torch.isfinite(encoder.get_parameter(name).grad).all() for name in with_grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(VISION_ENCODERS))
def test_vision_encoder_interface(name: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    encoder = VISION_ENCODERS[name].tiny()
    assert_frozen(encoder)
    assert encoder.grid_size**2 == encoder.num_patches
    assert isinstance(encoder.output_dim, int) and isinstance(encoder.image_size, int)
    encoder.to(dtype)
    batch, frames = 2, 3
    pixel_values = torch.randn(batch, frames, 3, encoder.image_size, encoder.image_size, dtype=dtype)
    tokens = encoder(pixel_values)
    assert tokens.shape == (batch, frames, encoder.num_patches, encoder.output_dim)
    assert tokens.dtype == dtype
    assert torch.isfinite(tokens).all()
    assert tokens.float().std() > 0
    # Frames are encoded independently: one frame alone gives the same tokens as inside the batch (not for an
    # encoder that mixes the frames of a video by design, BT-Adapter: tests/test_temporal_parts.py covers it).
    if not getattr(encoder, "mixes_frames", False):
        single = encoder(pixel_values[1:2, 2:3])
        tolerance = 1e-5 if dtype == torch.float32 else 5e-2
        torch.testing.assert_close(single[0, 0], tokens[1, 2], atol=tolerance, rtol=tolerance)
    assert_backward(encoder, pixel_values[:1, :2], encoder)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(AUDIO_ENCODERS))
def test_audio_encoder_interface(name: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    encoder = AUDIO_ENCODERS[name].tiny()
    assert_frozen(encoder)
    assert isinstance(encoder.output_dim, int)
    encoder.to(dtype)
    batch, num_frames = 2, 64
    features = torch.randn(batch, num_frames, encoder.num_mel_bins, dtype=dtype)
    lengths = torch.tensor([num_frames, 40])
    tokens, token_lengths = encoder(features, lengths)
    num_tokens = encoder.num_tokens(num_frames)
    assert tokens.shape == (batch, num_tokens, encoder.output_dim)
    assert tokens.dtype == dtype
    assert torch.isfinite(tokens).all()
    assert token_lengths.shape == (batch,) and token_lengths.dtype == torch.long
    assert 0 < token_lengths[1] < token_lengths[0] <= num_tokens
    _, full_lengths = encoder(features)
    assert full_lengths.tolist() == [token_lengths[0].item()] * batch
    assert_backward(encoder, features[:1], lambda x: encoder(x)[0])
