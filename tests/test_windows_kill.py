"""`avlm caption --segment --summary` killed with SIGKILL in the middle of a long video, then rerun: finished windows
are kept as written (never redone), every window ends up exactly once, and each video's summary once, after its
windows."""

from __future__ import annotations

import json
import multiprocessing
import random
from collections import Counter

from infer_support import tiny_folder, write_clips
from test_infer_kill import _caption_in_child, _kill_after_progress
from windows_support import write_scene_clip


def test_sigkill_mid_video_resumes_at_the_first_missing_window(tmp_path_factory, tmp_path) -> None:
    model = tiny_folder(tmp_path_factory)
    long = write_scene_clip(tmp_path / "long.mp4")  # 12 s: 12 windows of 1 s
    shorts = write_clips(tmp_path / "short", 2)  # one window each
    out = tmp_path / "windows.jsonl"
    argv = ["caption", "--model", str(model), str(long), str(tmp_path / "short"), "-o", str(out), "--segment", "1",
            "--summary", "--batch-size", "1", "--num-workers", "0", "--threads", "1", "--max-new-tokens", "6"]
    fork, rng = multiprocessing.get_context("fork"), random.Random()
    snapshots = []
    for _ in range(3):
        child = fork.Process(target=_caption_in_child, args=(argv, 0.05))
        child.start()
        _kill_after_progress(child.pid, out, rng)
        child.join()
        snapshots.append(out.read_bytes())
    child = fork.Process(target=_caption_in_child, args=(argv,))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    data = out.read_bytes()
    assert all(data.startswith(snapshot) for snapshot in snapshots)  # what was written stays, nothing is redone
    records = [json.loads(line) for line in data.decode().splitlines()]
    windows = Counter((r["video"], r["segment"]) for r in records if "segment" in r)
    expected = {(str(long), i) for i in range(12)} | {(str(clip), 0) for clip in shorts}
    assert set(windows) == expected and set(windows.values()) == {1}  # every window exactly once
    for video in [str(long), *map(str, shorts)]:
        lines = [i for i, r in enumerate(records) if r["video"] == video]
        summaries = [i for i in lines if "summary" in records[i]]
        assert len(summaries) == 1 and summaries[0] == lines[-1]  # once, after the video's windows
    half_done = [snapshot.count(str(long).encode()) for snapshot in snapshots]
    assert any(0 < count < 12 for count in half_done)  # a kill landed in the middle of the long video
