"""avlm demo end to end at toy size: data, a short training run, evaluation with ablations, captions, the report;
the avlm-demo preset's tokenizer; the --full settings at toy size."""

from __future__ import annotations

import json

from avlm.cli import main
from avlm.modeling.model import AVLMForCausalLM


def test_demo_runs_end_to_end_and_reuses_its_data(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n-train", "3", "--n-test", "2", "--steps", "2", "--batch-size", "4"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert {"held_out", "no_audio", "no_video", "summary", "captions", "seconds", "targets"} <= set(report)
    names = {row["name"] for row in report["summary"]}
    assert {"caption attributes", "audio_qa", "video_qa"} <= names
    assert report["held_out"]["records"] == len((out / "data" / "test_meta.jsonl").read_text().splitlines())
    assert not report["held_out"]["errors"]
    assert report["no_audio"]["ablate"] == "audio" and report["no_video"]["ablate"] == "video"
    captions = (out / "captions.jsonl").read_text().splitlines()
    assert len(captions) == 3 and "bigbuckbunny.mp4" in captions[-1]  # 2 held-out clips + the real clip
    assert (out / "model" / "config.json").is_file() and (out / "train" / "metrics.jsonl").is_file()
    printed = capsys.readouterr().out
    assert "avlm demo" in printed and "bigbuckbunny.mp4" in printed
    assert main(args) == 0  # a rerun reuses the data set and the finished run
    assert "reusing the AV-Synth set" in capsys.readouterr().out


def test_demo_preset_tokenizer_has_every_answer_word_as_one_token() -> None:
    from avlm.assembly import build_model
    from avlm.synth.tokenizer import tokenizer_for_preset, vocabulary_words

    model, processor = build_model("avlm-demo", tokenizer=tokenizer_for_preset("avlm-demo"))
    tokenizer = processor.tokenizer
    assert len(tokenizer) <= model.config.text_config.vocab_size == 1024
    for word in vocabulary_words():
        assert len(tokenizer.encode(word, add_special_tokens=False)) == 1, word
    assert model.num_media_tokens(processor.config.num_frames) == {"video": 16}
    assert model.config.text_config.hidden_size == 64  # the width the second study chose (docs/avsynth.md)


def test_demo_full_settings_smoke_run(tmp_path, capsys) -> None:
    # `avlm demo --full` at toy size (2 steps): the d=128 preset, the video-heavy mix, direction questions twice
    out = tmp_path / "full"
    args = ["demo", "--full", "--out", str(out), "--n-train", "3", "--n-test", "2", "--steps", "2", "--batch-size", "8",
            "--curve-every", "1"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    config = report["config"]
    assert config["model"] == "avlm-demo-full" and config["mix"] == {"av": 3, "video": 4, "audio": 1}
    assert config["oversample"] == {"direction": 2} and config["steps"] == 2 and config["n_train"] == 3
    records = json.loads((out / "data" / "train_oversampled.json").read_text())
    originals = json.loads((out / "data" / "train.json").read_text())
    direction = [record for record in originals if record["id"].endswith("-direction")]
    assert len(records) == len(originals) + len(direction) == len(originals) + 3
    assert AVLMForCausalLM.from_pretrained(out / "model").config.text_config.hidden_size == 128
    points = json.loads((out / "curves" / "curves.json").read_text())  # checkpoint 1, then the finished model
    assert [point["step"] for point in points] == [1, 2] and points[-1]["accuracy"]["audio_qa"] == \
        next(row["accuracy"] for row in report["summary"] if row["name"] == "audio_qa")
    assert {"audio_qa", "video_qa", "caption attributes"} <= set(points[0]["accuracy"])
    assert {"audio_qa.png", "captions.png", "video_qa.png"} <= {path.name for path in (out / "curves").glob("*.png")}
    assert "avlm demo" in capsys.readouterr().out
