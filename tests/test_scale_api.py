"""avlm.scale without the CLI: the documented Parquet-in / Parquet-out example equals the single-process runner, the
two stages stay two pools, settings are checked together, --plan projects a cluster, and without Ray the import
error says how to install it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from infer_support import write_clips
from scale_support import ray_cluster  # noqa: F401

import avlm
from avlm.cli import main

pytest.importorskip("ray")

from avlm.scale import ScaleConfig, answer  # noqa: E402
from avlm.scale.plan import StageCosts, describe, project  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.xdist_group("ray")
def test_parquet_in_parquet_out_equals_the_single_process_runner(tiny_dir, ray_cluster, tmp_path) -> None:  # noqa: F811
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    clips = [str(clip) for clip in write_clips(tmp_path / "clips", 3)] + [str(tmp_path / "missing.mp4")]
    pq.write_table(pa.table({"video": clips, "clip_id": [10, 11, 12, 13]}), tmp_path / "clips.parquet")

    # the example of avlm/scale/pipeline.py and docs/scale.md
    requests = ray.data.read_parquet(str(tmp_path / "clips.parquet"))
    config = ScaleConfig(model=str(tiny_dir), batch_size=2, generate={"max_new_tokens": 4})
    results = answer(requests, config)
    results.write_parquet(str(tmp_path / "captions"))

    rows = {row["video"]: row for row in pq.read_table(tmp_path / "captions").to_pylist()}
    expected = avlm.load(tiny_dir, device="cpu").caption(clips, batch_size=2, num_workers=0, max_new_tokens=4)
    assert set(rows) == set(clips) and len(pq.read_table(tmp_path / "captions")) == 4
    for clip, result in zip(clips, expected, strict=True):
        row = rows[clip]
        assert (row["text"], row["error"], row["num_frames"], row["has_audio"]) == \
            (result.text, result.error, result.num_frames, result.has_audio)
        assert row["clip_id"] == 10 + clips.index(clip)  # other columns are carried through
    assert rows[clips[3]]["error"] == f"{clips[3]}: no such file" and rows[clips[3]]["text"] is None
    stats = results.stats()  # decode tasks and model replicas ran as two operators, not fused into one
    assert "MapBatches(decode_batch)" in stats and "MapBatches(ModelReplica)" in stats
    assert "MapBatches(decode_batch)->MapBatches(ModelReplica)" not in stats


def test_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ValueError) as error:
        ScaleConfig(model="m", batch_size=0, concurrency=0, dtype="int8", ablate="sound", max_retries=-1)
    message = str(error.value)
    for part in ("batch_size=0", "concurrency=0", "dtype='int8'", "ablate='sound'", "max_retries=-1"):
        assert part in message
    config = ScaleConfig(model="m", num_gpus=1)
    assert (config.replica_device, config.model_batch_size, str(config.media_dtype)) == ("cuda", 16, "torch.bfloat16")


def test_projection_arithmetic() -> None:
    costs = StageCosts(sampled=8, unreadable=1, decode_seconds=0.5, batch_seconds=2.0, batch_size=16, device="cuda:0")
    config = ScaleConfig(model="m", num_gpus=1, num_cpus=1)
    busy = project(costs, gpus=8, config=config, clips=1_000_000)
    # 8 replicas x 8 clips/s = 64 clips/s; 64 x 0.5 s = 32 decode CPUs + 8 replica CPUs
    assert (busy.replicas, busy.cpus_needed, busy.bound) == (8, 40, "model")
    assert busy.clips_per_hour == pytest.approx(64 * 3600) and busy.hours == pytest.approx(1e6 / (64 * 3600))
    short = project(costs, gpus=8, config=config, clips=1000, cpus=24)  # 16 decode CPUs: 32 clips/s
    assert short.bound == "decode" and short.clips_per_hour == pytest.approx(32 * 3600)
    assert "5.0 CPUs per GPU" in describe(costs, busy)


def test_plan_measures_both_stages_and_prints_the_projection(tiny_dir, tmp_path, capsys) -> None:
    write_clips(tmp_path / "clips", 3)
    out = tmp_path / "captions.jsonl"
    assert main(["caption", "--model", str(tiny_dir), str(tmp_path / "clips"), "-o", str(out), "--plan",
                 "--plan-sample", "3", "--plan-gpus", "4", "--batch-size", "2", "--max-new-tokens", "4"]) == 0
    printed = capsys.readouterr().out
    assert "decode stage:" in printed and "s per clip on one CPU core" in printed
    assert "s per batch of 2 on cpu" in printed and "CPUs per GPU" in printed
    assert "cluster of 4 GPUs" in printed and "clips/hour" in printed and "3 clips to do" in printed
    assert out.read_text() == ""  # nothing was captioned


def test_ray_rejects_the_single_process_options(tiny_dir, tmp_path, capsys) -> None:
    clip = write_clips(tmp_path, 1)[0]
    argv = ["caption", "--model", str(tiny_dir), str(clip), "-o", str(tmp_path / "out.jsonl"), "--ray"]
    assert main([*argv, "--num-workers", "2"]) == 2
    assert "--num-workers sets the single-process runner; with --ray use --decode-concurrency" in \
        capsys.readouterr().err
    assert main(["ask", "--model", str(tiny_dir), "--video", str(clip), "--question", "?", "--ray"]) == 2
    assert "--questions FILE" in capsys.readouterr().err


def test_without_ray_the_import_error_says_how_to_install() -> None:
    code = "import sys; sys.modules['ray'] = None\ntry:\n import avlm.scale\nexcept ImportError as e:\n print(e)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert 'pip install "avlm[ray]"' in done.stdout, done.stderr
