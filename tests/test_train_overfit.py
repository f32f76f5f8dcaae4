"""A tiny model learns 8 audio-visual QA samples to their exact answers, and the trained final/ folder answers them
through the inference path (processor prompt + greedy generate), so training and inference prompts agree.

Every sample asks the same question; only its video colour and its tone differ, so the answers can only come from
the media. Marked slow: 100 optimizer steps of 8 AV samples take a few minutes on 2 shared CPU cores.
"""

from __future__ import annotations

import json

import pytest
from train_support import make_dataset, tiny_model_dir, tiny_recipe

from avlm.train.loop import train


@pytest.mark.slow
def test_tiny_model_overfits_eight_av_samples(tmp_path_factory, tmp_path):
    import avlm

    data = make_dataset(tmp_path / "data", {"av": 8})
    recipe = tiny_recipe({}, data, tmp_path / "run", f"model={tiny_model_dir(tmp_path_factory)}",
                         "trainable.llm=full", "train.batch_size=8", "train.max_steps=100", "train.lr=1e-2",
                         "train.warmup_ratio=0.03", "train.max_grad_norm=null", "train.log_every=10")
    result = train(recipe, say=lambda _: None)
    assert result.losses[-1] < 0.1
    model = avlm.load(result.final)
    records = json.loads(data.read_text())
    questions = [{"question": r["conversations"][0]["value"].removeprefix("<video>\n"),
                  "video": str(data.parent / r["video"]), "audio": str(data.parent / r["audio"])} for r in records]
    answers = [result.text for result in model.ask_many(questions, max_new_tokens=8, num_workers=0, batch_size=8)]
    assert answers == [r["conversations"][1]["value"] for r in records]
