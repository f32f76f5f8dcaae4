"""BEATsEncoder: token counts and lengths, padding rule, shared position table, gradient decay, config checks,
strict loading of original ``.pt`` checkpoints and refusal of pickled objects. Numerical parity with the reference
lives in tests/parity/beats.py (run through tests/test_fixtures.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from test_fixtures import fixtures_root

from audio import AUDIO_ENCODERS, build_audio_encoder
from audio.encoders._beats_layers import relative_position_buckets
from audio.encoders.beats import BEATsConfig, BEATsEncoder, reduce_padding_mask

FIXTURES = fixtures_root() or Path("/nonexistent")  # $AVLM_FIXTURES or ../shared/fixtures
TABLE = "encoder.layers.{}.self_attn.relative_attention_bias.weight"
UNPICKLED: list[str] = []  # filled only if a refused checkpoint's pickled code ever runs


def _record_unpickling(note: str) -> str:
    UNPICKLED.append(note)
    return note


class _PickledConfig:
    """A custom object in a checkpoint: unpickling it calls _record_unpickling (arbitrary code)."""

    def __reduce__(self):
        return _record_unpickling, ("ran",)


@pytest.fixture
def encoder() -> BEATsEncoder:
    torch.manual_seed(0)
    return BEATsEncoder.tiny()


def fbank(batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    """Random fbank-like values (raw log-mel scale, mean ~15, spread ~13)."""
    generator = torch.Generator().manual_seed(seed)
    return 15.0 + 13.0 * torch.randn(batch, frames, 128, generator=generator)


def test_frozen_by_default_and_trainable_on_request(encoder: BEATsEncoder) -> None:
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    trainable = BEATsEncoder.tiny(frozen=False)
    assert trainable.training and all(p.requires_grad for p in trainable.parameters())
    assert AUDIO_ENCODERS["beats"] is BEATsEncoder


def test_num_tokens_and_lengths(encoder: BEATsEncoder) -> None:
    assert [encoder.num_tokens(f) for f in (15, 16, 98, 135, 2998)] == [0, 8, 48, 64, 1496]
    tokens, lengths = encoder(fbank(3, 64), torch.tensor([64, 40, 48]))
    assert tokens.shape == (3, 32, encoder.output_dim) == (3, encoder.num_tokens(64), 32)
    # Token k is padded iff fbank frames 2k and 2k+1 both are (the reference's consecutive-frame rule).
    assert lengths.tolist() == [32, 20, 24]
    with pytest.raises(ValueError, match="lengths must lie in"):
        encoder(fbank(1, 64), torch.tensor([65]))
    with pytest.raises(ValueError, match=r"fbank must have shape \[b, f >= 16, 128\]"):
        encoder(fbank(1, 64)[:, :, :80])


def test_reduce_padding_mask_groups_consecutive_frames() -> None:
    frames = torch.tensor([[False, False, False, True, True, True, True, True, True, True]])
    # 10 frames onto 4 positions: the last 10 % 4 = 2 frames are dropped, then runs of 2 frames.
    assert reduce_padding_mask(frames, 4).tolist() == [[False, False, True, True]]
    assert reduce_padding_mask(frames[:, :, None].expand(1, 10, 128), 10).tolist() == frames.tolist()


def test_padded_frames_do_not_reach_valid_tokens(encoder: BEATsEncoder) -> None:
    features = fbank(1, 64)
    changed = features.clone()
    changed[:, 48:] = fbank(1, 16, seed=7)  # time patch 3 only: tokens 24..31, all padded for length 48
    lengths = torch.tensor([48])
    with torch.no_grad():
        tokens, _ = encoder(features, lengths)
        tokens_changed, _ = encoder(changed, lengths)
        unmasked, _ = encoder(features)
        unmasked_changed, _ = encoder(changed)
    torch.testing.assert_close(tokens_changed[:, :24], tokens[:, :24], atol=1e-6, rtol=0)
    assert (unmasked_changed[:, :24] - unmasked[:, :24]).abs().max() > 1e-3  # without lengths they do


def test_all_false_mask_changes_nothing(encoder: BEATsEncoder) -> None:
    features = fbank(2, 70)
    with torch.no_grad():
        plain, no_mask = encoder.extract_features(features)
        masked, token_mask = encoder.extract_features(features, torch.zeros(2, 70, 128, dtype=torch.bool))
    assert no_mask is None and not token_mask.any()
    torch.testing.assert_close(masked, plain, atol=1e-6, rtol=0)


def test_relative_position_buckets_follow_t5_rule() -> None:
    buckets = relative_position_buckets(41, 32, 40, torch.device("cpu"))
    # offset j - i: half = 16 buckets per sign, exact up to 8, then 8 + int(log(|o| / 8) / log(5) * 8), max 15.
    expected = {0: 0, 1: 17, -1: 1, 7: 23, -7: 7, 8: 24, -20: 8 + int(math.log(2.5) / math.log(5) * 8), -40: 15}
    assert {offset: buckets[max(0, -offset), max(0, offset)].item() for offset in expected} == expected


def test_position_table_shared_and_checked_on_load(encoder: BEATsEncoder) -> None:
    state = encoder.state_dict()
    tables = [TABLE.format(i) for i in range(encoder.config.encoder_layers)]
    assert all(key in state for key in tables)
    assert len({state[key].data_ptr() for key in tables}) == 1  # one parameter behind every key
    copy = {key: value.clone() for key, value in state.items()}
    copy[tables[1]] = copy[tables[1]] + 1.0
    with pytest.raises(ValueError, match="copies differ"):
        encoder.load_state_dict(copy, strict=True)


def test_gradient_decay_scales_input_gradient_only() -> None:
    torch.manual_seed(0)
    decayed = BEATsEncoder.tiny()
    plain = BEATsEncoder(replace(decayed.config, layer_wise_gradient_decay_ratio=1.0))
    plain.load_state_dict(decayed.state_dict())
    grads, outputs = [], []
    for model in (decayed, plain):
        inputs = fbank(2, 48).requires_grad_(True)
        tokens, _ = model(inputs)
        tokens.sum().backward()
        grads.append(inputs.grad)
        outputs.append(tokens.detach())
    torch.testing.assert_close(outputs[0], outputs[1], atol=0, rtol=0)
    torch.testing.assert_close(grads[0], grads[1] * 0.6**decayed.config.encoder_layers, atol=1e-9, rtol=1e-4)


def test_predict_and_predictor_free_config(encoder: BEATsEncoder) -> None:
    with torch.no_grad():
        probabilities = encoder.predict(fbank(2, 40))
    assert probabilities.shape == (2, 5) and bool(((probabilities > 0) & (probabilities < 1)).all())
    bare = BEATsEncoder(replace(encoder.config, finetuned_model=False))
    assert not any(key.startswith("predictor.") for key in bare.state_dict())
    with pytest.raises(ValueError, match="no predictor"):
        bare.predict(fbank(1, 32))


def test_default_config_is_beats_base() -> None:
    with torch.device("meta"):
        base = BEATsEncoder(BEATsConfig())
    # The released audio_tower.bin holds 90,717,055 parameters; 252 keys with the table repeated 12 times.
    assert sum(p.numel() for p in base.parameters()) == 90_717_055
    assert len(base.state_dict()) == 252 and base.output_dim == 768 and base.num_tokens(2998) == 1496


@pytest.mark.parametrize("case", ["beats_tiny_1s", "beats_small_padmask"])
def test_state_dict_keys_match_reference(case: str) -> None:
    if not (FIXTURES / case / "case.json").is_file():
        pytest.skip(f"fixture {case} not found under {FIXTURES}")
    description = json.loads((FIXTURES / case / "case.json").read_text())
    model = BEATsEncoder(BEATsConfig.from_dict(description["constructor"]["cfg_overrides"]))
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == description["state_dict_keys"]


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"unknown BEATsConfig keys \['encoder_width'\]"):
        BEATsConfig.from_dict({"encoder_width": 3})
    # Every problem in one message.
    with pytest.raises(ValueError, match="divisible by encoder_attention_heads 5.*layer_norm_first=True is not"):
        BEATsConfig(encoder_attention_heads=5, layer_norm_first=True)
    with pytest.raises(ValueError, match="encoder_layerdrop must lie in"):
        BEATsConfig(encoder_layerdrop=1.5)


def test_pt_checkpoint_loads_strictly(encoder: BEATsEncoder, tmp_path: Path) -> None:
    path = tmp_path / "BEATs_tiny.pt"
    state = {key: value.to(torch.bfloat16) for key, value in encoder.state_dict().items()}
    torch.save({"cfg": asdict(encoder.config), "model": state}, path)
    loaded = build_audio_encoder("beats", path=path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    shared = [loaded.get_parameter(TABLE.format(i)) for i in range(loaded.config.encoder_layers)]
    assert all(table is shared[0] for table in shared)
    features = fbank(2, 40)
    with torch.no_grad():
        expected = encoder.to(torch.bfloat16).float()(features)[0]
        torch.testing.assert_close(loaded(features)[0], expected, atol=1e-5, rtol=0)


def test_pt_checkpoint_with_wrong_keys_lists_them_all(encoder: BEATsEncoder, tmp_path: Path) -> None:
    state = dict(encoder.state_dict())
    del state["encoder.layer_norm.bias"]
    state["encoder.extra.weight"] = torch.zeros(2)
    state["predictor.bias"] = torch.zeros(9)
    path = tmp_path / "broken.pt"
    torch.save({"cfg": asdict(encoder.config), "model": state}, path)
    with pytest.raises(ValueError, match=r"missing keys \['encoder.layer_norm.bias'\], unexpected keys "
                                         r"\['encoder.extra.weight'\], mis-shaped keys \['predictor.bias: "):
        BEATsEncoder.from_pretrained(path)


def test_pt_checkpoint_with_pickled_objects_is_refused(encoder: BEATsEncoder, tmp_path: Path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"cfg": _PickledConfig(), "model": encoder.state_dict()}, path)
    with pytest.raises(ValueError, match=r"refused to load.*arbitrary code.*weights_only=False.*converted\.pt"):
        BEATsEncoder.from_pretrained(path)
    assert UNPICKLED == [], "the refused file's pickled code ran"
    with pytest.raises(ValueError, match="'cfg' and 'model'"):
        torch.save({"weights": encoder.state_dict()}, tmp_path / "other.pt")
        BEATsEncoder.from_pretrained(tmp_path / "other.pt")


def test_build_audio_encoder_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown audio encoder 'beat'; choose one of \['beats', "):
        build_audio_encoder("beat", config=BEATsConfig())
    with pytest.raises(ValueError, match="exactly one of path"):
        build_audio_encoder("beats")
    built = build_audio_encoder("beats", config=BEATsEncoder.tiny().config, frozen=False)
    assert isinstance(built, BEATsEncoder) and built.training


def test_bfloat16_forward_is_finite_and_close(encoder: BEATsEncoder) -> None:
    features = fbank(2, 64)
    lengths = torch.tensor([64, 30])
    with torch.no_grad():
        reference, _ = encoder(features, lengths)
        tokens, token_lengths = encoder.to(torch.bfloat16)(features.to(torch.bfloat16), lengths)
    assert tokens.dtype == torch.bfloat16 and torch.isfinite(tokens).all()
    assert token_lengths.tolist() == [32, 15]
    assert (tokens.float() - reference).abs().max() < 0.25


def test_positional_conv_stays_float32_on_cpu_under_autocast(encoder: BEATsEncoder) -> None:
    from audio.encoders._beats_layers import WeightNormConv1d

    conv = next(module for module in encoder.modules() if isinstance(module, WeightNormConv1d))
    x = torch.randn(2, conv.bias.numel(), 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = conv(x)
    assert torch.equal(under_autocast, expected)  # oneDNN's bf16 grouped conv1d is wrong for some shapes
