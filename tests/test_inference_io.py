"""Input discovery and the crash-safe, resumable JSONL writer behind `avlm caption` / `avlm ask`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from avlm.inference import ResultWriter, discover_inputs, read_done


def test_discover_folders_lists_and_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/x.mp4", "a/b/y.MKV", "a/notes.txt.bak", "a/b/z.webm"]:
        (tmp_path / name).write_bytes(b"0")
    listing = tmp_path / "clips.txt"
    listing.write_text("# my clips\na/x.mp4\n\nmissing.mp4\n")
    found = discover_inputs([tmp_path / "a", listing, tmp_path / "a" / "x.mp4"])
    assert found == [tmp_path / "a/b/y.MKV", tmp_path / "a/b/z.webm", tmp_path / "a/x.mp4", tmp_path / "missing.mp4"]


def test_missing_list_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="clips.txt"):
        discover_inputs([tmp_path / "clips.txt"])


def test_writer_resumes_and_repairs_a_torn_line(tmp_path):
    out = tmp_path / "captions.jsonl"
    with ResultWriter(out, key="video") as writer:
        writer.write({"video": "a.mp4", "caption": "a cat"})
        writer.write({"video": "b.mp4", "error": "b.mp4: is an empty (0-byte) file"})
    with open(out, "a") as handle:
        handle.write('{"video": "c.mp4", "capt')  # killed mid-write
    done = read_done(out, "video")
    assert sorted(done) == ["a.mp4", "b.mp4"]
    assert out.read_text().endswith("\n")
    with ResultWriter(out, key="video") as writer:
        writer.write({"video": "c.mp4", "caption": "a dog"})
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["video"] for r in lines] == ["a.mp4", "b.mp4", "c.mp4"]


def test_foreign_file_is_refused(tmp_path):
    out = tmp_path / "other.jsonl"
    out.write_text("not json\n{}\n")
    with pytest.raises(ValueError, match="other.jsonl:1"):
        read_done(out, "video")


WRITER = """
import sys, time
from avlm.inference import ResultWriter
with ResultWriter(sys.argv[1], key="video") as out:
    for i in range(100000):
        if str(i) not in out.done:
            out.write({"video": str(i), "caption": "x" * 2000})
"""


def test_kill_at_any_moment_then_resume_gives_each_clip_once(tmp_path):
    out = tmp_path / "captions.jsonl"
    for delay in (1.0, 0.4, 0.7):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(out)])
        time.sleep(delay)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    done = read_done(out, "video")
    ids = [json.loads(line)["video"] for line in out.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == len(done) > 0
    assert ids == [str(i) for i in range(len(ids))]
