"""`avlm caption --segment`: one line per window with frame-exact times, named errors for bad windows and files, a
summary per video, subtitle files that subtitle libraries read and that match the lines; the Python API and
`avlm ask --segment` give the same windows."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
from infer_support import write_clips
from windows_support import damage_packets, truncate, variable_frame_times, write_scene_clip

from avlm.api import load
from avlm.cli import main
from avlm.inference.subtitles import cues_from_records
from avlm.inference.windows import plan_video

srt = pytest.importorskip("srt")
webvtt = pytest.importorskip("webvtt")
pytestmark = pytest.mark.usefixtures("one_thread")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _caption(tiny_dir: Path, *args: str) -> int:
    return main(["caption", "--model", str(tiny_dir), "--max-new-tokens", "4", "--threads", "1", *args])


def _zero_length(path: Path) -> Path:
    """An mp4 with a video and an audio stream and not one frame in either."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width = video.height = 32
        video.pix_fmt = "yuv420p"
        container.add_stream("aac", rate=16000)
        container.start_encoding()
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("window-videos")
    pcm = write_scene_clip(folder / "pcm.mkv", audio_codec="pcm_s16le")
    return {"long": write_scene_clip(folder / "long.mp4"),
            "vfr": write_scene_clip(folder / "vfr.mp4", frame_times=variable_frame_times()),
            "short_audio": write_scene_clip(folder / "short_audio.mp4", audio_seconds=6.5),
            "truncated": truncate(pcm, folder / "truncated.mkv", 0.6),
            "damaged": damage_packets(folder / "damaged.mkv", 4.0, 6.0),
            "zero": _zero_length(folder / "zero.mp4"),
            **{f"short{i}": clip for i, clip in enumerate(write_clips(folder / "short", 2))}}


def test_windows_summary_subtitles_and_bad_input(tiny_dir, videos, tmp_path) -> None:
    out, subtitles = tmp_path / "windows.jsonl", tmp_path / "subtitles"
    inputs = [str(path) for path in videos.values()]
    args = [*inputs, "-o", str(out), "--segment", "4", "--frames-per-segment", "2", "--summary", "--batch-size", "3",
            "--num-workers", "1", "--subtitles", str(subtitles)]
    assert _caption(tiny_dir, *args) == 0
    records = _lines(out)
    by_video = {path: [r for r in records if r["video"] == path] for path in inputs}
    for name in ("long", "vfr", "short0", "short1"):
        path = str(videos[name])
        windows = plan_video(path, 4)
        lines = sorted((r for r in by_video[path] if "segment" in r), key=lambda r: r["segment"])
        assert [(r["segment"], r["start"], r["end"]) for r in lines] == [
            (w.segment, round(w.start, 6), round(w.end, 6)) for w in windows]  # each window once, frame times
        assert all(set(r) == {"video", "segment", "start", "end", "caption", "num_frames", "has_audio", "seconds"}
                   and r["num_frames"] == 2 for r in lines)
        assert [r["has_audio"] for r in lines] == [name != "short1"] * len(lines)
        summary = [r for r in by_video[path] if "segment" not in r]
        assert len(summary) == 1 and set(summary[0]) == {"video", "summary", "segments"}
        assert summary[0]["segments"] == len(lines) and by_video[path].index(summary[0]) == len(by_video[path]) - 1
        cues = list(srt.parse((subtitles / f"{videos[name].stem}.srt").read_text()))
        assert [(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in cues] == [
            (round(c.start, 3), round(c.end, 3), c.text) for c in cues_from_records(lines)]
    assert [r["end"] for r in by_video[str(videos["long"])] if "segment" in r] == [4.0, 8.0, 12.0]
    zero = by_video[str(videos["zero"])]
    assert len(zero) == 1 and zero[0]["error"].startswith(f"{videos['zero']}: ") and "segment" not in zero[0]
    damaged = {r["segment"]: r for r in by_video[str(videos["damaged"])] if "segment" in r}
    assert "caption" in damaged[0] and "caption" in damaged[2]
    assert damaged[1]["error"].startswith(f"{videos['damaged']}: frames in 4.000-8.000 s cannot be decoded")
    short = {r["segment"]: r for r in by_video[str(videos["short_audio"])] if "segment" in r}
    assert short[1]["has_audio"] is True and "caption" in short[1]  # the track ends inside: the part there is
    assert "the audio track ends at 6.5" in short[2]["error"]
    truncated = {r["segment"]: r for r in by_video[str(videos["truncated"])] if "segment" in r}
    assert "caption" in truncated[0] and "caption" in truncated[1] and truncated[1]["end"] == pytest.approx(7.2)
    assert "no video frames after 7.200 s" in truncated[2]["error"] and truncated[2]["end"] == 12.0
    before = out.read_bytes()
    assert _caption(tiny_dir, *args) == 0 and out.read_bytes() == before  # everything done: nothing added
    assert _caption(tiny_dir, *args[:-2], "--format", "vtt") == 0 and out.read_bytes() == before
    vtt = webvtt.read(str(videos["long"].with_suffix(".vtt")))  # next to the video without --subtitles
    assert [cue.start for cue in vtt] == ["00:00:00.000", "00:00:04.000", "00:00:08.000"]


def test_api_and_ask_give_the_same_windows(tiny_dir, videos, tmp_path, capsys) -> None:
    out = tmp_path / "one.jsonl"
    assert _caption(tiny_dir, str(videos["long"]), "-o", str(out), "--segment", "3", "--overlap", "1",
                    "--num-workers", "0", "--batch-size", "4") == 0
    lines = sorted(_lines(out), key=lambda r: r["segment"])
    assert [(r["start"], r["end"]) for r in lines] == [(0, 3), (2, 5), (4, 7), (6, 9), (8, 11), (10, 12)]
    model = load(tiny_dir, device="cpu")
    windows = model.caption(str(videos["long"]), segment=3, overlap=1, max_new_tokens=4, batch_size=1,
                            num_workers=0)
    assert [(w.segment, w.start, w.end, w.text) for w in windows] == [
        (r["segment"], r["start"], r["end"], r["caption"]) for r in lines]  # batched in the CLI, alone here
    assert main(["ask", "--model", str(tiny_dir), "--video", str(videos["long"]), "--question", "What happens?",
                 "--segment", "5", "--max-new-tokens", "3", "--threads", "1"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line[:29] for line in printed] == ["00:00:00.000 --> 00:00:05.000", "00:00:05.000 --> 00:00:10.000",
                                               "00:00:10.000 --> 00:00:12.000"]
    with pytest.raises(TypeError, match="segment= reads the windows of one video file"):
        model.caption([str(videos["long"])], segment=3)


@pytest.mark.parametrize("options, message", [
    (["--summary"], "--summary only apply to windows; add --segment"),
    (["--format", "srt", "--overlap", "1"], "--format srt, --overlap only apply to windows"),
    (["--segment", "2", "--overlap", "2"], "--overlap 2.0: must be >= 0 and less than --segment"),
    (["--segment", "0"], "--segment 0.0: must be a positive number"),
])
def test_usage_errors(tiny_dir, videos, tmp_path, capsys, options, message) -> None:
    assert _caption(tiny_dir, str(videos["short0"]), "-o", str(tmp_path / "x.jsonl"), *options) == 2
    assert message in capsys.readouterr().err


def test_resuming_with_other_windows_is_refused(tiny_dir, videos, tmp_path, capsys) -> None:
    out = tmp_path / "w.jsonl"
    assert _caption(tiny_dir, str(videos["short0"]), "-o", str(out), "--segment", "0.5", "--num-workers", "0") == 0
    assert _caption(tiny_dir, str(videos["short0"]), "-o", str(out), "--segment", "0.3") == 2
    assert "resume with the same --segment and --overlap" in capsys.readouterr().err
