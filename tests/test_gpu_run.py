"""``scripts/gpu_run.sh`` (the one command that takes the 7B GPU figures, issue 19) runs end to end on CPU at the
tiny shapes, as the GPU image would run it (PyAV, decord, librosa and soundfile made unimportable), and
``bench_infer.py --media memory`` imports neither PyAV nor decord."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ABSENT_ON_GPU_IMAGE = ("av", "decord", "librosa", "soundfile")
STEPS = ("b1_lora", "b2_av_b4", "b2_av_b8", "b3_infer")


def test_gpu_run_tiny_cpu_end_to_end_without_decoders(tmp_path: Path) -> None:
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(  # None in sys.modules: `import av` fails, find_spec says absent
        "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in ABSENT_ON_GPU_IMAGE))
    env = {**os.environ, "PYTHONPATH": str(block), "SHAPES": "tiny", "DEVICE": "cpu", "PYTHON": sys.executable,
           "OUT": str(tmp_path / "out")}
    assert subprocess.run([sys.executable, "-c", "import av"], env=env, capture_output=True).returncode != 0

    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_run.sh")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    files = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert files == sorted([*(f"{step}.log" for step in STEPS), "summary.json"])  # the device returns <= 8 files
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["final"] and summary["all_ok"], run.stdout
    assert [step["name"] for step in summary["steps"]] == list(STEPS)
    for step in summary["steps"]:
        result = step["result"]
        assert step["status"] == "ok" and step["exit_code"] == 0 and step["seconds"] > 0, step
        assert result["complete"] and result["device"] == "cpu" and result["env"]["torch"], step
        assert all(figure > 0 for figure in _throughputs(result)), result["paths"]
    results = {step["name"]: step["result"] for step in summary["steps"]}
    assert set(results["b2_av_b8"]["paths"]) == {"avlm"} and results["b2_av_b8"]["batch"] == 8
    assert abs(results["b1_lora"]["first_loss_difference"]) < 1e-5
    assert results["b3_infer"]["media"] == "memory" and results["b3_infer"]["identical_captions"] == 3
    for name in ("b1_lora", "b2_av_b4", "b3_infer"):
        assert set(results[name]["paths"]) == {"baseline", "avlm"} and results[name]["ratio_avlm_over_baseline"] > 0
    assert "b3_infer   ok" in run.stdout


def _throughputs(result: dict) -> list[float]:
    keys = ("tokens_per_s", "samples_per_s", "clips_per_s")
    return [figures[key] for figures in result["paths"].values() for key in keys if key in figures]


def test_bench_infer_memory_media_imports_no_video_decoder(tmp_path: Path) -> None:
    """Run in its own interpreter with the decoders installed: the in-memory mode must not even load them."""
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.path[:0] = [{str(ROOT / "scripts")!r}, {str(ROOT)!r}]
        sys.argv = ["bench_infer.py", "--shape", "tiny", "--media", "memory", "--clips", "2", "--new-tokens", "2",
                    "--threads", "1", "--num-workers", "0", "--json", {str(tmp_path / "b3.json")!r}]
        try:
            runpy.run_path({str(ROOT / "scripts" / "bench_infer.py")!r}, run_name="__main__")
        except SystemExit as exit:
            assert not exit.code, exit.code
        print("DECODERS", sorted(name for name in ("av", "decord") if name in sys.modules))
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "DECODERS []" in run.stdout
    record = json.loads((tmp_path / "b3.json").read_text())
    assert record["complete"] and record["media"] == "memory" and record["identical_captions"] == 2
