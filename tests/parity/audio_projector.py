"""VideoLLaMA2 audio projector (mlp2x_gelu) fixtures: strict keys, output and input gradient."""

from __future__ import annotations

from pathlib import Path

from fusion.mlp import MLPProjector
from parity.common import assert_close, load_io, load_weights


def check_audio_projector(case_dir: Path, case: dict) -> None:
    config = case["constructor"]["config"]
    module = MLPProjector(config["mm_hidden_size_a"], config["hidden_size_a"])
    module.load_state_dict(load_weights(case_dir), strict=True)
    io = load_io(case_dir)
    x = io["input"].clone().requires_grad_(True)
    output = module(x)
    output.sum().backward()
    assert_close("output", output.detach(), io["output"], case["tolerance"]["output"])
    assert_close("input_grad", x.grad, io["input_grad"], case["tolerance"]["input_grad"])
