"""beats_encoder fixtures: BEATsEncoder against the reference BEATs (VideoLLaMA2 audio_visual branch).

Encoder outputs take the stored ``fbank`` (and ``padding_mask``) as input, as ``io_roles`` says; the waveform -> fbank
front end is checked afterwards by ``parity.beats_front_end.check_front_end``.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from audio.encoders.beats import BEATsConfig, BEATsEncoder, reduce_padding_mask
from parity.common import assert_close, load_io, load_weights


def _intermediate_module(encoder: BEATsEncoder, name: str) -> nn.Module:
    """The submodule whose output is the fixture tensor ``intermediate.<name>``."""
    if name == "patch_tokens_after_layer_norm":
        return encoder.layer_norm
    if name == "encoder_after_posconv_layer_norm":
        return encoder.encoder.layer_norm
    match = re.fullmatch(r"layer_(\d+)_output", name)
    assert match, f"unknown intermediate tensor {name!r}; add its module to tests/parity/beats.py"
    return encoder.encoder.layers[int(match.group(1))]


def _unmasked_outputs(encoder: BEATsEncoder, fbank: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """features, fbank_grad, lprobs, fbank_normalized and the intermediates, from one run without a mask."""
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        _intermediate_module(encoder, name.removeprefix("intermediate.")).register_forward_hook(
            lambda module, args, output, name=name: captured.__setitem__(name, output.detach())
        )
        for name in names
        if name.startswith("intermediate.")
    ]
    fbank = fbank.clone().requires_grad_(True)
    features, token_mask = encoder.extract_features(fbank)
    for hook in hooks:
        hook.remove()
    assert token_mask is None
    features.sum().backward()
    with torch.no_grad():
        captured.update(
            features=features.detach(),
            fbank_grad=fbank.grad,
            lprobs=encoder.predict(fbank.detach()),
            fbank_normalized=encoder.normalize_fbank(fbank.detach()),
        )
    return captured


def _masked_outputs(encoder: BEATsEncoder, fbank: torch.Tensor, padding_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        features, token_mask = encoder.extract_features(fbank, padding_mask)
        lprobs = encoder.predict(fbank, padding_mask)
    return {"features_masked": features, "lprobs_masked": lprobs, "padding_mask_tokens": token_mask}


def _check_interface(encoder: BEATsEncoder, io: dict[str, torch.Tensor], case: dict) -> None:
    """forward(fbank, lengths) matches extract_features: no lengths = no mask; suffix masks = lengths."""
    fbank, tolerance = io["fbank"], case["tolerance"]
    with torch.no_grad():
        tokens, lengths = encoder(fbank)
    assert tokens.shape[1] == encoder.num_tokens(fbank.shape[1]) == case["shapes"]["tokens"]
    assert lengths.tolist() == [tokens.shape[1]] * fbank.shape[0]
    assert_close("forward tokens", tokens, io["features"], tolerance["features"])
    if "padding_mask" not in io:
        return
    frame_mask = io["padding_mask"]
    frame_lengths = (~frame_mask).sum(dim=1)
    suffix = torch.arange(frame_mask.shape[1])[None, :] >= frame_lengths[:, None]
    if torch.equal(suffix, frame_mask):  # a trailing-padding mask is exactly what lengths express
        with torch.no_grad():
            tokens, lengths = encoder(fbank, frame_lengths)
        assert_close("forward tokens with lengths", tokens, io["features_masked"], tolerance["features_masked"])
        expected_tokens = io["padding_mask_tokens"] if "padding_mask_tokens" in io else None
        if expected_tokens is not None:
            assert lengths.tolist() == (~expected_tokens).sum(dim=1).tolist()
            assert torch.equal(reduce_padding_mask(reduce_padding_mask(frame_mask, frame_mask.shape[1]),
                                                   tokens.shape[1]), expected_tokens)


def check_beats_encoder(case_dir: Path, case: dict) -> None:
    constructor = case["constructor"]
    config = BEATsConfig.from_dict(constructor["cfg_overrides"])
    assert asdict(config) == constructor["full_cfg"], "BEATsConfig defaults differ from the reference's full_cfg"
    encoder = BEATsEncoder(config).float().eval()
    expected_keys = {key: list(shape) for key, shape in case["state_dict_keys"].items()}
    assert {key: list(value.shape) for key, value in encoder.state_dict().items()} == expected_keys
    encoder.load_state_dict(load_weights(case_dir), strict=True)

    io = load_io(case_dir)
    fbank = io["fbank"].float()
    names = [name for name in case["outputs"] if name not in case["also_outputs"]]
    actual = _unmasked_outputs(encoder, fbank, names)
    if "padding_mask" in io:
        actual.update(_masked_outputs(encoder, fbank, io["padding_mask"]))
    for name in names:
        assert name in actual, f"{case_dir.name}: output {name!r} is not computed by tests/parity/beats.py"
        assert_close(name, actual[name], io[name], case["tolerance"][name])
    _check_interface(encoder, io, case)

    from parity.beats_front_end import check_front_end  # helper-owned front-end check, after the encoder's

    check_front_end(case_dir, case)
