"""VideoLLaMA2 STC connector fixtures: strict keys, output, input gradient and intermediates."""

from __future__ import annotations

from pathlib import Path

import torch

from fusion.stc import STCConnector, STCConnectorV35
from parity.common import assert_close, load_io, load_weights

CLASSES = {"stc_connector": STCConnector, "stc_connector_v35": STCConnectorV35}


def check_stc_connector(case_dir: Path, case: dict) -> None:
    constructor = case["constructor"]
    connector_class = CLASSES[case["mm_projector_type"]]
    module = connector_class(constructor["config"]["mm_hidden_size"], constructor["config"]["hidden_size"],
                             downsample=tuple(constructor["downsample"]), depth=constructor["depth"],
                             mlp_depth=constructor["mlp_depth"], sampler_padding=constructor["sampler_padding"])
    module.load_state_dict(load_weights(case_dir), strict=True)
    module.eval()
    io = load_io(case_dir)
    captured: dict[str, torch.Tensor] = {}
    for name in ("s1", "sampler", "s2"):
        getattr(module, name).register_forward_hook(
            lambda _m, _i, output, name=name: captured.__setitem__(name, output.detach().contiguous()))
    x = io["input"].clone().requires_grad_(True)
    output = module(x)
    output.sum().backward()
    tolerance = case["tolerance"]
    assert_close("output", output.detach(), io["output"], tolerance["output"])
    assert_close("input_grad", x.grad, io["input_grad"], tolerance["input_grad"])
    shapes = case["shapes"]
    grid = (shapes["h"], shapes["w"])
    assert module.num_output_tokens(shapes["T"], shapes["h"] * shapes["w"], grid) == shapes["tokens_out"]
    for name, key in (("s1", "intermediate.s1_output"), ("sampler", "intermediate.sampler_output"),
                      ("s2", "intermediate.s2_output")):
        if key in io:
            assert_close(key, captured[name], io[key], tolerance[key])
