"""`avlm caption`: folders, lists and bad inputs give one line per clip with named errors; reruns add nothing."""

from __future__ import annotations

import json

import pytest
from infer_support import write_clips

from avlm.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _caption(tiny_dir, *args: str) -> int:
    return main(["caption", "--model", str(tiny_dir), "--max-new-tokens", "4", "--batch-size", "2", "--threads", "1",
                 *args])


def test_folder_with_bad_clips_then_rerun(tiny_dir, bikes, tmp_path) -> None:
    clips = write_clips(tmp_path / "clips", 3)
    (tmp_path / "clips" / "corrupt.mp4").write_bytes(b"\x00not a video" * 50)
    (tmp_path / "clips" / "bikes.mp4").symlink_to(bikes)
    out = tmp_path / "captions.jsonl"
    missing = tmp_path / "missing.mp4"
    assert _caption(tiny_dir, str(tmp_path / "clips"), str(missing), "-o", str(out), "--num-workers", "1") == 0
    records = {record["video"]: record for record in _lines(out)}
    assert len(records) == len(_lines(out)) == 6
    assert str(tmp_path / "clips" / "corrupt.mp4") in records[str(tmp_path / "clips" / "corrupt.mp4")]["error"]
    assert records[str(missing)]["error"] == f"{missing}: no such file"
    no_audio = records[str(tmp_path / "clips" / "bikes.mp4")]
    assert no_audio["has_audio"] is False and no_audio["num_frames"] == 4 and no_audio["seconds"] == 10.0
    first = records[str(clips[0])]
    assert set(first) == {"video", "caption", "num_frames", "has_audio", "seconds"}
    assert first["has_audio"] is True and records[str(clips[1])]["has_audio"] is False
    assert first["caption"] and first["seconds"] == pytest.approx(0.6, abs=0.05)
    before = out.read_bytes()
    assert _caption(tiny_dir, str(tmp_path / "clips"), str(missing), "-o", str(out)) == 0
    assert out.read_bytes() == before


def test_list_file_no_audio_num_frames_partial_resume_and_video_backend(tiny_dir, tmp_path) -> None:
    clips = write_clips(tmp_path / "clips", 3, audio_every=1)
    listing = tmp_path / "clips.txt"
    listing.write_text("# three clips\n" + "\n".join(f"clips/{clip.name}" for clip in clips) + "\n")
    out = tmp_path / "captions.jsonl"
    assert _caption(tiny_dir, str(listing), "-o", str(out), "--no-audio", "--num-workers", "0", "--num-frames",
                    "2") == 0
    records = _lines(out)
    assert sorted(r["video"] for r in records) == sorted(str(c) for c in clips)
    assert all(r["has_audio"] is False and r["num_frames"] == 2 for r in records)
    out.write_text("".join(json.dumps(r) + "\n" for r in records[:1]))  # as if killed after the first line
    assert _caption(tiny_dir, str(listing), "-o", str(out), "--no-audio", "--num-workers", "0", "--num-frames",
                    "2", "--video-backend", "pyav") == 0  # the other decoder reads the same frames
    again = _lines(out)
    assert again[0] == records[0] and sorted(r["video"] for r in again) == sorted(str(c) for c in clips)
    assert {r["video"]: r["caption"] for r in again} == {r["video"]: r["caption"] for r in records}


def test_exit_status_and_retry_errors(tiny_dir, tmp_path, capsys) -> None:
    clip = write_clips(tmp_path / "clips", 1)[0]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    out = tmp_path / "out.jsonl"
    assert _caption(tiny_dir, str(bad), str(tmp_path / "gone.mp4"), "-o", str(out), "--num-workers", "0") == 1
    assert len(_lines(out)) == 2 and all("error" in r for r in _lines(out))
    assert _caption(tiny_dir, str(bad), "-o", str(out)) == 0  # nothing left to do is not a failure
    bad.write_bytes(clip.read_bytes())  # fixed since
    assert _caption(tiny_dir, str(bad), "-o", str(out), "--retry-errors") == 0
    assert [("error" in r, r["video"]) for r in _lines(out)] == [(True, str(tmp_path / "gone.mp4")), (False, str(bad))]
    assert _caption(tiny_dir, str(tmp_path / "gone.mp4"), "-o", str(out), "--retry-errors") == 1  # still gone
    assert [("error" in r, r["video"]) for r in _lines(out)] == [(False, str(bad)), (True, str(tmp_path / "gone.mp4"))]
    (tmp_path / "empty").mkdir()
    assert _caption(tiny_dir, str(tmp_path / "empty"), "-o", str(out)) == 2
    assert "no video files found" in capsys.readouterr().err
    assert _caption(tiny_dir, str(bad), "-o", str(tmp_path / "x.jsonl"), "--temperature", "0.7") == 2
    assert "add --do-sample" in capsys.readouterr().err
