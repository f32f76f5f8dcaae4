"""Video-CCAM projector invariants (seed_systems.md §1.8) at tiny size: golden mask, causality, exact-zero
gradients where masked, image case, padding invariance, order sensitivity, bf16 without NaN, group balance."""

from __future__ import annotations

import pytest
import torch

import fusion
from fusion.ccam import CCAMConfig, CCAMProjector, ccam_mask, query_groups

TINY = {"hidden_dim": 32, "num_queries": 12, "num_heads": 4, "ffn_dim": 64}


def tiny(causal: bool = True, seed: int = 0) -> CCAMProjector:
    torch.manual_seed(seed)
    return CCAMProjector(16, 24, causal=causal, **TINY).eval()


def frames(batch: int, num_frames: int, seed: int = 1, patches: int = 4) -> torch.Tensor:
    return torch.randn(batch, num_frames, patches, 16, generator=torch.Generator().manual_seed(seed))


def test_golden_mask_n8_t3() -> None:
    assert query_groups(8, torch.tensor([3])).tolist() == [[0, 0, 0, 1, 1, 1, 2, 2]]
    mask = ccam_mask(8, torch.ones(1, 3, dtype=torch.bool), num_patches=2)
    rows = [[1, 1, 0, 0, 0, 0]] * 3 + [[1, 1, 1, 1, 0, 0]] * 3 + [[1, 1, 1, 1, 1, 1]] * 2
    assert torch.equal(mask[0], torch.tensor(rows, dtype=torch.bool))
    assert torch.equal(query_groups(8, torch.tensor([4]), "ceil"), query_groups(8, torch.tensor([4]), "floor"))


@pytest.mark.parametrize("num_frames", [1, 2, 3, 5, 7, 12])
def test_groups_balanced_and_cover_every_frame(num_frames: int) -> None:
    groups = query_groups(12, torch.tensor([num_frames]))[0]
    counts = torch.bincount(groups, minlength=num_frames)
    assert groups[0] == 0 and groups[-1] == num_frames - 1
    assert counts.max() - counts.min() <= 1 and bool((counts > 0).all())
    assert bool((groups[1:] >= groups[:-1]).all())


def test_later_frames_do_not_change_earlier_query_groups() -> None:
    model, x = tiny(), frames(2, 5)
    groups = query_groups(12, torch.tensor([5]))[0]
    with torch.no_grad():
        reference = model(x)
        for last_kept in range(5):
            changed = x.clone()
            changed[:, last_kept + 1:] = torch.randn_like(changed[:, last_kept + 1:]) * 3
            output = model(changed)
            fixed = groups <= last_kept
            assert torch.equal(output[:, fixed], reference[:, fixed])
            if last_kept < 4:
                assert not torch.allclose(output[:, ~fixed], reference[:, ~fixed])


def test_gradient_exactly_zero_where_masked() -> None:
    model = tiny()
    x = frames(1, 5).requires_grad_(True)
    groups = query_groups(12, torch.tensor([5]))[0].tolist()
    output = model(x)
    for query, group in enumerate(groups):
        (gradient,) = torch.autograd.grad(output[0, query].sum(), x, retain_graph=True)
        per_frame = gradient[0].abs().flatten(1).amax(1)
        assert bool((per_frame[: group + 1] > 0).all()), f"query {query} must see frames 0..{group}"
        assert bool((per_frame[group + 1:] == 0).all()), f"query {query} must not see frames > {group}"


def test_single_frame_equals_non_causal_module() -> None:
    causal, plain = tiny(causal=True), tiny(causal=False)
    plain.load_state_dict(causal.state_dict())
    x = frames(2, 1)
    with torch.no_grad():
        assert torch.equal(causal(x), plain(x))
        assert not torch.allclose(causal(frames(2, 3)), plain(frames(2, 3)))


@pytest.mark.parametrize("causal", [True, False])
def test_padding_invariance_and_packed_form(causal: bool) -> None:
    model = tiny(causal=causal)
    short, long = frames(1, 5, seed=2), frames(1, 16, seed=3)
    padded = torch.cat([torch.cat([short, torch.randn(1, 11, 4, 16) * 5], dim=1), long])
    frame_valid = torch.arange(16)[None, :] < torch.tensor([[5], [16]])
    with torch.no_grad():
        batched = model(padded, frame_valid)
        torch.testing.assert_close(batched[0], model(short)[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(batched[1], model(long)[0], rtol=0, atol=1e-6)
        packed = model.forward_packed(torch.cat([short[0], long[0]]), [5, 16])
        torch.testing.assert_close(packed, batched, rtol=0, atol=1e-6)


def test_order_sensitivity() -> None:
    x = frames(1, 6)
    permuted = x[:, torch.randperm(6, generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        plain = tiny(causal=False)
        torch.testing.assert_close(plain(permuted), plain(x), rtol=0, atol=1e-5)
        causal = tiny(causal=True)
        assert (causal(permuted) - causal(x)).abs().max() > 1e-3


@pytest.mark.parametrize("num_frames", [1, 16, 96])
def test_bf16_no_nan(num_frames: int) -> None:
    model = tiny().to(torch.bfloat16)
    x = frames(2, num_frames).to(torch.bfloat16).requires_grad_(True)
    frame_valid = torch.arange(num_frames)[None, :] < torch.tensor([[num_frames], [max(1, num_frames // 3)]])
    output = model(x, frame_valid)
    assert output.shape == (2, 12, 24) and output.dtype == torch.bfloat16
    assert torch.isfinite(output).all()
    output.float().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_interface_and_defaults() -> None:
    model = fusion.CONNECTORS["ccam"](16, 24)
    assert model.num_output_tokens(num_frames=7, num_patches=9) == 1024
    assert model(frames(1, 2, patches=9)).shape == (1, 1024, 24)
    full = CCAMConfig()  # Video-CCAM-7B-v1.2 at its real widths
    assert (full.hidden_dim, full.num_heads, full.num_key_value_heads, full.ffn_dim) == (1024, 16, 16, 4096)
    with torch.device("meta"):
        count = sum(p.numel() for p in CCAMProjector(1152, 3584).parameters())
    assert count == 21_783_296
    assert CCAMProjector.from_config(tiny().config).config == tiny().config


def test_bad_input_errors() -> None:
    model = tiny()
    with pytest.raises(TypeError, match="unknown CCAMProjector options"):
        CCAMProjector(16, 24, num_query=8)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        CCAMProjector(16, 24, hidden_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="x must be"):
        model(torch.randn(1, 2, 4, 15))
    with pytest.raises(ValueError, match="prefix"):
        model(frames(1, 3), torch.tensor([[True, False, True]]))
    with pytest.raises(ValueError, match="prefix"):
        model(frames(1, 3), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="split_sizes"):
        model.forward_packed(torch.randn(5, 4, 16), [2, 2])
