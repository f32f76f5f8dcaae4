"""``avlm check``: token counts per sample and in total, truncated samples listed, every problem with file and line."""

from __future__ import annotations

import json

import pytest
from train_support import tiny_data_dir, tiny_model_dir

from avlm.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory)


def check(capsys, *args: str) -> tuple[int, str]:
    code = main(["check", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_counts_and_truncated_samples(model_dir, tmp_path_factory, capsys):
    data = tiny_data_dir(tmp_path_factory)
    code, out = check(capsys, "--rows", "3", "/dev/null", f"model={model_dir}", f"data.sources=[{{path: {data}}}]",
                      "data.max_length=100")
    assert code == 0, out
    assert "10 of 10 records kept" in out and "max length 100" in out
    truncated = [line for line in out.splitlines() if line.startswith("  av-")]
    assert len(truncated) == 4 and all("tokens" in line and "train.json:" in line for line in truncated)
    assert "4 sample(s) longer than 100 tokens would be truncated" in out
    assert "audio-0" not in "\n".join(truncated)  # 48 audio + ~51 text tokens fit in 100


def test_totals_match_the_samples(model_dir, tmp_path_factory, capsys):
    from avlm.data.annotations import load_annotations
    from avlm.data.conversation import token_budget
    from avlm.train.budget import MediaTokenCounter
    from avlm.train.setup import load_model, placeholder_ids

    data = tiny_data_dir(tmp_path_factory)
    model, processor = load_model(str(model_dir), 0)
    records, _ = load_annotations([data])
    counter = MediaTokenCounter(model, processor.config)
    rows, totals = token_budget(records, processor.tokenizer, counter, 100, placeholder_ids(model))
    by_id = {row.id: row for row in rows}
    # avlm-tiny: 4 frames -> 8 video tokens; 1 s of audio -> 98 fbank frames -> 6 x 8 = 48 BEATs tokens
    assert by_id["av-0"].media_tokens == {"video": 8, "audio": 48} and by_id["text-0"].media_tokens == {}
    sample = processor.load_media(records[0])  # the counter agrees with what the loader really produces
    assert model.num_media_tokens(len(sample["video"]), len(sample["audio"])) == counter(records[0])
    assert totals.num_truncated == 4
    code, out = check(capsys, "--rows", "0", "/dev/null", f"model={model_dir}", f"data.sources=[{{path: {data}}}]",
                      "data.max_length=100")
    assert f"{totals.media_tokens['audio']}" in out and f"{totals.text_tokens}" in out


def test_every_problem_with_file_and_line(model_dir, tmp_path, capsys):
    records = [
        {"id": "ok", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {"id": "gone", "video": "missing.mp4",
         "conversations": [{"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "x"}]},
        {"id": "empty", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": ""}]},
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(record) for record in records) + "\n")
    code, out = check(capsys, "/dev/null", f"model={model_dir}", f"data.sources=[{{path: {path}}}]",
                      "trainable.llm=frozen", "trainable.connectors={video: frozen, audio: frozen}")
    assert code == 1
    assert f"{path}:2" in out and "missing.mp4" in out and f"{path}:3" in out
    assert "every part is frozen" in out


def test_unknown_recipe_key_is_named(model_dir, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(f"model: {model_dir}\ndata:\n  sourcez: []\n")
    code, out = check(capsys, str(path))
    assert code == 2 and "data.sourcez: unknown key for DataConfig (did you mean 'sources'?)" in out


def test_official_av_layout_checks_with_one_video_placeholder(model_dir, tmp_path_factory, tmp_path, capsys):
    import shutil

    copy = tmp_path / "concat-model"
    shutil.copytree(model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["av_fusion"] = "concat_at_video"  # the official VideoLLaMA2-AV layout
    (copy / "config.json").write_text(json.dumps(config))
    data = tiny_data_dir(tmp_path_factory)
    code, out = check(capsys, "--rows", "0", "/dev/null", f"model={copy}", f"data.sources=[{{path: {data}}}]")
    assert code == 0 and "ok" in out
