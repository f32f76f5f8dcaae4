"""Helpers shared by the per-kind fixture checks."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file


def load_io(case_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(case_dir / "io.safetensors"))


def load_weights(case_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(case_dir / "weights.safetensors"))


def assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, tolerance: dict) -> None:
    """Compare one output against a fixture tensor with the case's tolerance entry (shape always exact)."""
    shapes = tuple(actual.shape), tuple(expected.shape)
    assert shapes[0] == shapes[1], f"{name}: shape {shapes[0]} != expected {shapes[1]}"
    if tolerance.get("exact"):
        assert torch.equal(actual.to(expected.dtype), expected), f"{name}: not exactly equal"
        return
    limit = tolerance["max_abs_diff"]
    diff = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    assert diff <= limit, f"{name}: max abs diff {diff:.3g} > tolerance {limit:.3g}"
