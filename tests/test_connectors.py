"""One interface test for every entry of fusion.CONNECTORS, plus registry and golden-scalar checks."""

from __future__ import annotations

import pytest
import torch

from fusion import CONNECTORS, build_connector


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", sorted(CONNECTORS))
def test_connector_interface(name, dtype):
    torch.manual_seed(0)
    connector = build_connector(name, input_dim=12, output_dim=16).to(dtype)
    frames, patches = 4, 16
    x = torch.randn(2, frames, patches, 12, dtype=dtype, requires_grad=True)
    out = connector(x)
    assert out.shape == (2, connector.num_output_tokens(frames, patches), 16)
    assert out.dtype == dtype and torch.isfinite(out.float()).all()
    out.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad.float()).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in connector.parameters() if p.requires_grad)


def test_unknown_connector_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown connector 'stc'; choose one of \['ccam', 'linear'"):
        build_connector("stc", 4, 4)


def test_stc_token_counts_of_the_released_models():
    assert build_connector("stc_connector_v35", 8, 8).num_output_tokens(16, 27 * 27) == 1352  # VideoLLaMA2.1
    assert build_connector("stc_connector", 8, 8).num_output_tokens(8, 27 * 27) == 980  # VideoLLaMA2 7B-8F
    assert build_connector("stc_connector_v35", 8, 8).num_output_tokens(8, 27 * 27) == 676


def test_stc_parameter_count_at_the_real_shape():
    with torch.device("meta"):
        connector = build_connector("stc_connector_v35", 1152, 3584)
    assert sum(p.numel() for p in connector.parameters()) == 376_889_248  # the "377M parameters" of the issue


def test_spatial_pool_golden_mean():
    torch.manual_seed(0)
    connector = build_connector("spatial_pool", 8, 8, grid=2)
    x = torch.arange(2 * 4 * 16 * 8, dtype=torch.float32).reshape(2, 4, 16, 8) / 100
    pooled = torch.nn.functional.adaptive_avg_pool2d(x[0, 0].T.reshape(8, 4, 4), 2)  # frame 0: d x 2 x 2
    first = connector.mlp(pooled.reshape(8, 4).T[None])  # tokens of frame 0, row-major
    torch.testing.assert_close(connector(x)[0, :4], first[0])


def test_unknown_connector_option_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown options \['gird'\] for connector 'spatial_pool'; its options are "
                                         r"\['grid', 'mlp_depth', 'temporal_pool'\]"):
        build_connector("spatial_pool", 4, 4, gird=2)
