"""Learning curves: a checkpoint's trainable weights loaded strictly into a model, points from reports, the PNGs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from avlm.eval.curves import CAPTIONS, curve_point, load_checkpoint_weights, plot_curves


def test_checkpoint_weights_are_copied_by_name_and_a_foreign_checkpoint_is_refused(tmp_path) -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    saved = {"1.weight": torch.full((1, 2), 7.0), "1.bias": torch.tensor([0.5])}
    save_file(saved, str(tmp_path / "trainables.safetensors"))
    first = model[0].weight.detach().clone()
    assert load_checkpoint_weights(model, tmp_path) == 2
    assert torch.equal(model[1].weight, saved["1.weight"]) and torch.equal(model[0].weight, first)  # others kept
    save_file({"2.weight": torch.zeros(1)}, str(tmp_path / "trainables.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected keys \['2.weight'\]"):
        load_checkpoint_weights(model, tmp_path)
    save_file({"1.weight": torch.zeros(2, 2)}, str(tmp_path / "trainables.safetensors"))
    with pytest.raises(ValueError, match=r"1.weight: checkpoint \(2, 2\) vs model \(1, 2\)"):
        load_checkpoint_weights(model, tmp_path)
    with pytest.raises(FileNotFoundError, match="no trainables.safetensors"):
        load_checkpoint_weights(model, tmp_path / "nothing")


def _report(audio: float, direction: float, colour: float) -> dict:
    return {"exact_match": {"task": {"audio_qa": {"accuracy": audio}, "video_qa": {"accuracy": direction}},
                            "kind": {"audio_qa/sound": {"accuracy": audio}, "video_qa/direction": {"accuracy":
                                                                                                    direction}}},
            "attributes": {"all": {"accuracy": colour}, "attribute": {"attribute:colour": {"accuracy": colour}}}}


def test_points_and_one_png_per_task(tmp_path) -> None:
    points = [curve_point(step, _report(*values)) for step, values in ((100, (0.5, 0.2, 0.3)), (200, (0.9, 0.6, 1)))]
    assert points[1] == {"step": 200, "accuracy": {"audio_qa": 0.9, "video_qa": 0.6, "audio_qa/sound": 0.9,
                                                   "video_qa/direction": 0.6, CAPTIONS: 1, "caption/colour": 1}}
    written = plot_curves(points, tmp_path / "curves", {"audio_qa": 0.9})
    assert sorted(path.name for path in written) == ["audio_qa.png", "captions.png", "video_qa.png"]
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in written)
    assert json.loads((tmp_path / "curves" / "curves.json").read_text()) == points
