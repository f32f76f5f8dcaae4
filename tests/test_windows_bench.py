"""`scripts/bench_windows.py` runs end to end on a short clip: both paths read the same frames, a ratio is printed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import bench_windows  # noqa: E402


def test_bench_windows_smoke(capsys, tmp_path) -> None:
    threads = torch.get_num_threads()
    try:
        assert bench_windows.main(["--seconds", "7", "--segment", "3", "--frames", "4", "--backends", "pyav",
                                   "--keep", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)  # the script runs on one thread
    out = capsys.readouterr().out
    assert "3 windows of 3 s" in out and "frames equal in every window" in out
    assert re.search(r"^ratio \(pyav\): \d+\.\d\dx", out, re.MULTILINE)
