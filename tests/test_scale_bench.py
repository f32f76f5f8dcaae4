"""scripts/bench_scale.py runs end to end at a tiny size on the test session's Ray cluster: every stage reports a rate,
and the Ray pipeline writes the same captions as the single-process runner."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from scale_support import ray_cluster  # noqa: F401

pytest.importorskip("ray")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import bench_scale  # noqa: E402


@pytest.mark.xdist_group("ray")
def test_bench_scale_smoke(ray_cluster, tmp_path, capsys) -> None:  # noqa: F811
    threads = torch.get_num_threads()
    try:
        assert bench_scale.main(["--clips", "3", "--seconds", "1", "--resolution", "64x48", "--new-tokens", "2",
                                 "--batch-size", "2", "--clip-dir", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    for label in ("single process", "decode stage alone", "model stage alone", "ray pipeline"):
        line = next(line for line in out.splitlines() if line.startswith(label))
        assert re.search(r": +[\d.]+ clips/s", line)
    assert re.search(r"^pipeline / slower stage \((decode|model)\): ([\d.]+|nan) \(goal >= 0.85\)$", out,
                     re.MULTILINE)
    assert "identical captions 3/3" in out
