"""avlm eval: questions and references from annotation files (+ AV-Synth metadata), perfect answers score 100%,
ablations replace one sense, resumable answers that refuse to mix runs, per-record errors, the report."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from avlm.cli import main
from avlm.eval.harness import chance_levels, load_eval_set
from avlm.eval.scoring import score_answers
from avlm.synth import SynthConfig, generate, parse_caption


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("evalsynth")
    generate(out, SynthConfig(n_train=0, n_test=2, seed=5))
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("evalmodel") / "tiny"
    assert main(["build", str(out), "--preset", "avlm-tiny"]) == 0
    return out


def test_references_questions_and_a_perfect_answer_sheet_scores_everything(synth_set) -> None:
    evaluation = load_eval_set(synth_set / "test.json")
    records = json.loads((synth_set / "test.json").read_text())
    assert len(evaluation.requests) == len(evaluation.references) == len(records)
    for request, row, record in zip(evaluation.requests, evaluation.references, records, strict=True):
        assert row["id"] == record["id"] and row["answer"] == record["conversations"][1]["value"]
        assert "<" not in request.question and request.question in record["conversations"][0]["value"]
        assert (request.video is not None) == ("video" in record) and (request.audio is not None) == ("audio" in record)
    assert {row["task"] for row in evaluation.references} >= {"caption", "audio_qa", "video_qa"}
    assert all("attributes" in row for row in evaluation.references if row["task"] == "caption")
    perfect = score_answers({row["id"]: row["answer"] for row in evaluation.references}, evaluation.references,
                            parse_caption)
    assert perfect["exact_match"]["all"]["accuracy"] == 1.0 and perfect["attributes"]["all"]["accuracy"] == 1.0
    wrong = score_answers({}, evaluation.references, parse_caption)
    assert wrong["exact_match"]["all"]["accuracy"] == 0.0 and len(wrong["missing"]) == len(records)
    assert all(0 < level <= 1 for level in chance_levels(evaluation.references).values())


def test_ablations_replace_one_sense_with_a_neutral_input(synth_set) -> None:
    plain = load_eval_set(synth_set / "test.json", tasks=["caption"])
    no_audio = load_eval_set(synth_set / "test.json", tasks=["caption"], ablate="audio")
    no_video = load_eval_set(synth_set / "test.json", tasks=["caption"], ablate="video", num_frames=5)
    for request, silent, dark in zip(plain.requests, no_audio.requests, no_video.requests, strict=True):
        assert silent.video == request.video and torch.count_nonzero(silent.audio) == 0
        assert abs(len(silent.audio) / 16000 - 3.0) < 0.1  # the clip's length
        assert dark.audio == request.audio and dark.video.shape[0] == 5 and torch.count_nonzero(dark.video) == 0


def test_eval_command_report_resume_and_refusal_to_mix_runs(synth_set, tiny_model, tmp_path) -> None:
    data = tmp_path / "set"
    shutil.copytree(synth_set, data)
    (data / "clips" / "test-00001.mp4").write_bytes(b"not a video")  # a broken clip: its records become errors
    records = json.loads((data / "test.json").read_text())
    question = [{"from": "human", "value": "<video>\nWhich way does it move?"}, {"from": "gpt", "value": "up"}]
    records += [{"id": "gone", "video": "clips/gone.mp4", "task": "video_qa", "conversations": question},
                {"id": "malformed", "video": "clips/test-00000.mp4", "task": "video_qa", "conversations": []}]
    (data / "test.json").write_text(json.dumps(records))
    report_path = tmp_path / "report.json"
    args = ["eval", "--model", str(tiny_model), "--data", str(data / "test.json"), "--output", str(report_path),
            "--max-new-tokens", "3", "--num-workers", "0", "--task", "video_qa", "--task", "audio_qa"]
    assert main(args) == 0
    report = json.loads(report_path.read_text())
    answers = (tmp_path / "report.predictions.jsonl").read_text().splitlines()
    assert report["records"] == len(answers) == report["answered"] + len(report["errors"])
    errors = {row["id"]: row["error"] for row in report["errors"]}
    assert "gone.mp4" in errors.pop("gone") and errors
    assert all("test-00001" in key and "test-00001.mp4" in message for key, message in errors.items())
    assert len(report["skipped"]) == 1 and "test.json" in report["skipped"][0]  # the malformed record, with its line
    assert set(report["exact_match"]["task"]) == {"video_qa", "audio_qa"}
    assert main(args) == 0  # resumed: nothing new
    assert (tmp_path / "report.predictions.jsonl").read_text().splitlines() == answers
    assert main(args + ["--ablate", "audio"]) == 2  # same answers file, another run: refused
