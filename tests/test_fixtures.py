"""Golden parity cases from the reference implementations (../shared/fixtures, or $AVLM_FIXTURES).

Every case folder is discovered at collection time and run by the check registered for its ``kind``;
shapes and tolerances come from each ``case.json``, so other folders with other shapes run unchanged.
A case whose kind has no check fails.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest
import torch

# kind -> "module:function" under tests/parity; each function takes (case_dir: Path, case: dict).
CHECKS: dict[str, str] = {
    "stc_connector": "parity.stc:check_stc_connector",
    "audio_projector_mlp2x_gelu": "parity.audio_projector:check_audio_projector",
    "beats_encoder": "parity.beats:check_beats_encoder",
    "malmm_compress_step": "parity.malmm:check_compress_step",
    "malmm_compress_ties": "parity.malmm:check_compress_ties",
    "malmm_compress_to_target": "parity.malmm:check_compress_to_target",
    "malmm_stream": "parity.malmm:check_stream",
    "videollama2_av_checkpoint": "parity.videollama2_av:check_checkpoint",
}


def fixtures_root() -> Path | None:
    """$AVLM_FIXTURES if set (must exist), else ../shared/fixtures next to the repository if present."""
    if "AVLM_FIXTURES" in os.environ:
        root = Path(os.environ["AVLM_FIXTURES"])
        if not root.is_dir():
            raise FileNotFoundError(f"AVLM_FIXTURES={root} is not a directory")
        return root
    default = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
    return default if default.is_dir() else None


def official_tiny_case() -> tuple[dict, dict, Path] | None:
    """The ``videollama2_av_tiny`` fixture as ``(case.json, io tensors, checkpoint folder)``, None when absent."""
    from safetensors.torch import load_file

    root = fixtures_root()
    case = root / "videollama2_av_tiny" if root is not None else None
    if case is None or not (case / "case.json").is_file():
        return None
    description = json.loads((case / "case.json").read_text())
    folder = case / next(name for name in description["files"] if name.endswith("/")).rstrip("/")
    return description, load_file(str(case / "io.safetensors")), folder


def discover() -> list:
    root = fixtures_root()
    if root is None:
        return [pytest.param(None, id="no-fixtures",
                             marks=pytest.mark.skip(reason="no fixtures: set AVLM_FIXTURES=/path/to/fixtures"))]
    cases = sorted(p for p in root.iterdir() if (p / "case.json").is_file())
    return [pytest.param(p, id=p.name) for p in cases]


@pytest.mark.parametrize("case_dir", discover())
def test_fixture_case(case_dir: Path) -> None:
    case = json.loads((case_dir / "case.json").read_text())
    kind = case.get("kind")
    assert kind in CHECKS, f"{case_dir.name}: unknown fixture kind {kind!r}; known kinds: {sorted(CHECKS)}"
    module_name, function_name = CHECKS[kind].split(":")
    check = getattr(importlib.import_module(module_name), function_name)
    torch.manual_seed(0)
    with torch.random.fork_rng():
        check(case_dir, case)
