"""`avlm caption` killed with SIGKILL at random moments, then rerun: every clip exactly once, no torn line; Ctrl-C
stops with status 130 after the finished lines."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from infer_support import tiny_folder, write_clips


def _count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _kill_after_progress(process_id: int, out: Path, rng: random.Random, timeout: float = 60.0) -> int:
    """Wait until the run has written a new line, SIGKILL it a random moment later; returns the lines written."""
    before, start = _count(out), time.monotonic()
    while _count(out) == before and time.monotonic() - start < timeout:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.08))
    os.kill(process_id, signal.SIGKILL)
    return _count(out)


def _caption_in_child(argv: list[str], batch_delay: float = 0.0) -> None:
    """``avlm caption`` in a forked child; ``batch_delay`` seconds are added to every batch, so that a signal sent
    after the first line always lands mid-run, however fast the machine is."""
    import torch

    import avlm.inference.runner as runner
    from avlm.cli import main

    torch.set_num_threads(1)
    generate_texts = runner.generate_texts

    def slowed(*args, **kwargs):
        time.sleep(batch_delay)
        return generate_texts(*args, **kwargs)

    runner.generate_texts = slowed
    sys.exit(main(argv))


def _caption_until_first_line(argv: list[str], out: Path, batch_delay: float) -> multiprocessing.Process:
    """Start ``avlm caption`` in a forked child (``batch_delay`` s per batch) and return once it wrote a line."""
    child = multiprocessing.get_context("fork").Process(target=_caption_in_child, args=(argv, batch_delay))
    child.start()
    start = time.monotonic()
    while _count(out) == 0 and time.monotonic() - start < 60:
        time.sleep(0.01)
    return child


def _caption_job(tmp_path_factory, tmp_path: Path, clips: int, new_tokens: int) -> tuple[list[str], Path, list[Path]]:
    """``clips`` generated clips and the ``avlm caption`` arguments that caption them one per batch into
    ``captions.jsonl``: ``(argv, out, clip paths)``."""
    model = tiny_folder(tmp_path_factory)
    paths = write_clips(tmp_path / "clips", clips)
    out = tmp_path / "captions.jsonl"
    argv = ["caption", "--model", str(model), str(tmp_path / "clips"), "-o", str(out), "--batch-size", "1",
            "--num-workers", "0", "--threads", "1", "--max-new-tokens", str(new_tokens)]
    return argv, out, paths


def test_kill_at_random_moments_then_rerun(tmp_path_factory, tmp_path) -> None:
    argv, out, clips = _caption_job(tmp_path_factory, tmp_path, 12, new_tokens=24)
    rng = random.Random()
    process = subprocess.Popen([sys.executable, "-m", "avlm", *argv], cwd=Path(__file__).resolve().parents[1],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})  # see infer_support.one_torch_thread
    written = [_kill_after_progress(process.pid, out, rng)]
    process.wait()
    fork = multiprocessing.get_context("fork")  # the same command in a forked child: no 4 s import per kill
    for _ in range(3):
        child = fork.Process(target=_caption_in_child, args=(argv, 0.05))
        child.start()
        written.append(_kill_after_progress(child.pid, out, rng))
        child.join()
    child = fork.Process(target=_caption_in_child, args=(argv,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    data = out.read_bytes()
    assert data.endswith(b"\n")
    videos = [json.loads(line)["video"] for line in data.decode().splitlines()]
    assert sorted(videos) == sorted(str(clip) for clip in clips)  # each clip exactly once
    assert 0 < written[0] < len(clips)  # the first kill, at least, landed in the middle of the run


def test_ctrl_c_stops_cleanly_with_status_130(tmp_path_factory, tmp_path) -> None:
    argv, out, _ = _caption_job(tmp_path_factory, tmp_path, 12, new_tokens=24)
    child = _caption_until_first_line(argv, out, batch_delay=0.3)
    os.kill(child.pid, signal.SIGINT)
    child.join(timeout=60)
    assert child.exitcode == 130
    assert 0 < _count(out) < 12 and out.read_bytes().endswith(b"\n")


def test_first_ctrl_c_finishes_the_batch_second_stops_at_once(tmp_path_factory, tmp_path) -> None:
    argv, out, _ = _caption_job(tmp_path_factory, tmp_path, 6, new_tokens=4)
    child = _caption_until_first_line(argv, out, batch_delay=3.0)
    os.kill(child.pid, signal.SIGINT)  # the next batch is in its 3 s delay: a graceful stop would wait for it
    time.sleep(0.2)
    os.kill(child.pid, signal.SIGINT)  # the second one stops it now
    stopped = time.monotonic()
    child.join(timeout=60)
    assert child.exitcode == 130 and time.monotonic() - stopped < 2.5
    assert _count(out) == 1 and out.read_bytes().endswith(b"\n")
