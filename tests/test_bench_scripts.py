"""The benchmark scripts run end to end at tiny sizes: the training-step paths agree on the loss, the decode
benchmark's frames match a full decode."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import bench_av_step  # noqa: E402
import bench_lora_step  # noqa: E402


@pytest.fixture(autouse=True)
def keep_threads():
    """The scripts set torch's CPU threads; give the test process its setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def numbers(line: str) -> list[float]:
    return [float(value) for value in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", line)]


@pytest.mark.parametrize("options", [[], ["--hf-loss", "--checkpoint-every", "2", "--label-fraction", "0.25"]])
def test_bench_lora_step_same_first_loss(options: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_lora_step.main(["--shape", "tiny", "--warmup", "0", "--steps", "1", *options]) == 0
    out = capsys.readouterr().out
    first = next(line for line in out.splitlines() if line.startswith("first-step loss"))
    baseline, ours, _ = numbers(first)
    assert abs(ours - baseline) < 1e-5 and baseline > 1.0
    assert re.search(r"^avlm .* tokens/s \(\d+\.\d\dx\)", out, re.MULTILINE)


def test_bench_av_step_same_loss_and_fewer_positions_packed(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_av_step.main(["--shape", "tiny", "--warmup", "0", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    lines = {line[:22].strip(): line[22:] for line in out.splitlines()}
    baseline, ours = numbers(lines["loss before update"])
    assert abs(ours - baseline) < 1e-5
    padded, packed = numbers(lines["LLM positions"])
    assert packed < padded
    assert all(value > 0 for value in numbers(lines["samples/s"]))
    assert re.search(r"^avlm / baseline: \d+\.\d\dx samples/s; loss difference", out, re.MULTILINE)


def test_bench_av_step_avlm_stages_equal_the_model_forward() -> None:
    """The staged avlm path of the benchmark computes what ``AVLMForCausalLM.forward(..., pack=...)`` does."""
    torch.set_num_threads(1)
    shape = bench_av_step.SHAPES["tiny"]
    model = bench_av_step.build_model(shape, "cpu", torch.float32)
    batch = bench_av_step.make_batch(model, shape, ["av", "video", "audio", "av"], "cpu", torch.float32)
    watch = bench_av_step.Stopwatch("cpu")
    for pack in (True, False):
        staged, _ = bench_av_step.avlm_loss(model, batch, watch, pack)
        torch.testing.assert_close(staged, model(**batch, pack=pack).loss, rtol=1e-6, atol=1e-6)
    reference, positions = bench_av_step.baseline_loss(model, batch, watch)
    torch.testing.assert_close(reference, model(**batch).loss, rtol=1e-5, atol=1e-5)
    merged = model.embed_multimodal(**{key: value for key, value in batch.items() if key != "labels"})
    assert positions == merged.attention_mask.numel()
    assert set(watch.times) >= {"vision", "audio", "connectors", "splice", "llm_forward", "loss"}


def test_bench_av_step_layout_shape_has_the_real_token_counts() -> None:
    """The ``layout`` shape: the real preset's ids and sizes (2,912-token AV samples) with narrow parts."""
    torch.set_num_threads(1)
    shape = bench_av_step.SHAPES["layout"]
    model = bench_av_step.build_model(shape, "cpu", torch.float32)
    assert model.num_media_tokens(num_frames=16, num_audio_frames=3000) == {"video": 1352 + 1496}
    batch = bench_av_step.make_batch(model, shape, ["av", "av", "video", "audio"], "cpu", torch.float32)
    assert int(batch["input_ids"].min()) == -202 and int(batch["input_ids"].max()) < 1024
    watch = bench_av_step.Stopwatch("cpu")
    with torch.no_grad():
        packed, positions = bench_av_step.avlm_loss(model, batch, watch, pack=True)
        padded, padded_positions = bench_av_step.baseline_loss(model, batch, watch)
    assert (positions, padded_positions) == (2 * 2912 + 1416 + 1560, 4 * 2912)
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)


def test_bench_decode_runs_and_its_frames_match_a_full_decode(capsys: pytest.CaptureFixture[str]) -> None:
    import bench_decode

    assert bench_decode.main(["--clips", "1", "--repeats", "1", "--seconds", "1.5", "--gop", "10",
                              "--backends", "decord", "pyav"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "naive PyAV" in line]
    assert len(rows) == 4  # 360p and 720p, one row per backend
    for line in rows:
        fast, slow, ratio = numbers(line.split("every")[1])[1:]
        assert fast > 0 and slow > 0 and abs(ratio - fast / slow) < 0.06
