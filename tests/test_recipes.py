"""Every shipped recipe parses strictly, says what it trains, and its tiny variant trains for two steps on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_support import tiny_data_dir, tiny_model_dir, tiny_recipe

from avlm.recipe_loading import ConfigError
from avlm.train.loop import train
from avlm.train.recipe import load_recipe

RECIPES = Path(__file__).parents[1] / "avlm" / "recipes"
SHIPPED = ["align", "audio_pretrain", "audio_finetune", "av_joint", "avsynth_gpu", "finetune_lora"]
# What each stage trains (videollama2.md 5.1): part -> mode.
TRAINS = {
    "align": {"llm": "frozen", "encoders.audio": "frozen", "connectors.video": "full", "connectors.audio": "full"},
    "audio_pretrain": {"llm": "frozen", "encoders.audio": "frozen", "connectors.video": "frozen",
                       "connectors.audio": "full"},
    "audio_finetune": {"llm": "frozen", "encoders.audio": "full", "connectors.video": "frozen",
                       "connectors.audio": "full"},
    "av_joint": {"llm": "full", "encoders.video": "frozen", "encoders.audio": "full", "connectors.video": "full",
                 "connectors.audio": "full"},
    "avsynth_gpu": {"llm": "full", "encoders.video": "full", "encoders.audio": "full", "connectors.video": "full",
                    "connectors.audio": "full"},
    "finetune_lora": {"llm": "lora", "encoders.audio": "frozen", "connectors.video": "full",
                      "connectors.audio": "full"},
}


def test_the_shipped_recipes_are_the_documented_ones():
    assert sorted(path.stem for path in RECIPES.glob("*.yaml")) == sorted(SHIPPED)
    assert (Path(__file__).parents[1] / "scripts" / "recipes" / "av_joint.yaml").is_file()  # the path


@pytest.mark.parametrize("name", SHIPPED)
def test_recipe_parses_strictly_and_documents_itself(name):
    path = RECIPES / f"{name}.yaml"
    assert path.read_text().startswith(f"# {name}: ")
    recipe = load_recipe(path)
    modes = dict(recipe.trainable.items())
    assert {part: modes[part] for part in TRAINS[name]} == TRAINS[name]
    if name in ("av_joint", "avsynth_gpu"):
        assert recipe.data.mix_ratios == {"av": 2, "video": 1, "audio": 1} and recipe.train.batch_size % 4 == 0
    if name == "av_joint":
        assert recipe.data.sources[0].audio_from_video
    if name == "avsynth_gpu":  # the preset it names exists (test_build_cli checks its 64 video tokens per connector)
        from avlm.modeling.presets import PRESETS

        assert recipe.model == "avsynth-100m" and "avsynth-100m" in PRESETS


@pytest.mark.parametrize("name", SHIPPED)
def test_tiny_variant_trains(name, tmp_path_factory, tmp_path):
    model = tiny_model_dir(tmp_path_factory)
    overrides = [f"model={model}", "train.max_steps=2", "train.batch_size=1"]
    if name in ("av_joint", "avsynth_gpu"):  # keep the 2:1:1 mix (no text-only group), every part trainable
        data = tiny_data_dir(tmp_path_factory, {"av": 2, "video": 1, "audio": 1}, name="av-video-audio")
        overrides += ["train.batch_size=4", "trainable.encoders.video=full"]
    else:
        data = tiny_data_dir(tmp_path_factory)
        overrides.append("data.mix_ratios=null")
    recipe = tiny_recipe(RECIPES / f"{name}.yaml", data, tmp_path, *overrides)
    result = train(recipe, say=lambda _: None)
    assert len(result.losses) == 2 and all(0 < loss < 20 for loss in result.losses)
    assert (result.final / "model.safetensors").is_file() or list(result.final.glob("*.safetensors"))


def test_unknown_recipe_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: avlm-tiny\ntrain:\n  learning_rate: 1e-3\n")
    with pytest.raises(ConfigError, match=r"train\.learning_rate: unknown key for TrainConfig"):
        load_recipe(path)
    with pytest.raises(ConfigError, match=r"distributed\.stratgy: unknown key .*did you mean 'strategy'"):
        load_recipe(RECIPES / "align.yaml", ["distributed.stratgy=fsdp"])


def test_train_cli_reports_a_bad_recipe_in_one_line(tmp_path, capsys):
    from avlm.cli import main

    assert main(["train", str(RECIPES / "align.yaml"), "train.mixed_precision=fp8"]) == 2
    error = capsys.readouterr().err
    assert "train.mixed_precision: 'fp8' is not one of ['fp32', 'bf16', 'fp16']" in error
