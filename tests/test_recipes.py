"""Every shipped recipe parses strictly, says what it trains, and its tiny variant trains for two steps on CPU; the
shipped recipes are found by name from any folder, listed with their purpose, and never ask for more DataLoader
workers than the machine has cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from train_support import tiny_data_dir, tiny_model_dir, tiny_recipe

from avlm.cli import main
from avlm.data.settings import AUTO_WORKERS_CAP
from avlm.recipe_docs import shipped_recipes
from avlm.recipe_loading import ConfigError, dump_config
from avlm.train.loop import train
from avlm.train.recipe import load_recipe

ROOT = Path(__file__).parents[1]
RECIPES = ROOT / "avlm" / "recipes"
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
    assert sorted(path.stem for path in RECIPES.glob("*.yaml")) == sorted(SHIPPED) == list(shipped_recipes())
    # scripts/recipes (the path issue #3 asked for) is a link to the one copy, not a second one
    assert (ROOT / "scripts" / "recipes").resolve() == RECIPES.resolve()


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
    assert main(["train", str(RECIPES / "align.yaml"), "train.mixed_precision=fp8"]) == 2
    error = capsys.readouterr().err
    assert "train.mixed_precision: 'fp8' is not one of ['fp32', 'bf16', 'fp16']" in error


@pytest.mark.parametrize("given", ["finetune_lora", "finetune_lora.yaml"])
def test_a_shipped_recipe_is_found_by_name_from_any_folder(given, tmp_path, monkeypatch):
    """As after ``pip install avlm``: the working directory holds no avlm/recipes, the name still resolves (through
    importlib.resources, the package's data), with overrides."""
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(given, ["train.lr=1e-4"])
    expected = load_recipe(RECIPES / "finetune_lora.yaml", ["train.lr=1e-4"])
    assert dump_config(recipe) == dump_config(expected) and recipe.train.lr == 1e-4


def test_a_file_of_ones_own_wins_over_the_shipped_recipe_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "align.yaml").write_text("model: avlm-tiny\ntrain:\n  lr: 0.5\n")
    assert load_recipe("align.yaml").train.lr == 0.5
    assert load_recipe("align").train.lr != 0.5  # no file called "align": the shipped one


def test_an_unknown_recipe_name_lists_the_shipped_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shipped = ", ".join(sorted(SHIPPED))
    with pytest.raises(FileNotFoundError, match=f"'finetune-lora': no such file.*shipped recipes: {shipped} "):
        load_recipe("finetune-lora")
    with pytest.raises(FileNotFoundError, match=r"a shipped recipe is named without a folder: align"):
        load_recipe("configs/align.yaml")  # a missing path is not silently replaced by the shipped file
    for command in ("train", "check"):
        assert main([command, "finetune-lora"]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"avlm {command}: error: recipe 'finetune-lora': no such file") and "av_joint" in error


def test_list_recipes_prints_each_shipped_recipe_with_its_purpose(capsys):
    assert main(["train", "--list-recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    purposes = shipped_recipes()
    for name in SHIPPED:
        first_line = (RECIPES / f"{name}.yaml").read_text().splitlines()[0]
        assert first_line.startswith(f"# {name}: ") and first_line.removeprefix(f"# {name}: ") in purposes[name]
        assert any(line.split() == [name, *purposes[name].split()] for line in lines), name
    assert lines[-1].endswith(str(RECIPES))


@pytest.mark.parametrize(("cores", "processes", "workers"), [(2, 1, 1), (1, 1, 0), (2, 2, 0), (64, 1, 4), (64, 8, 4)])
def test_shipped_recipes_never_ask_for_more_workers_than_cores(cores, processes, workers, monkeypatch):
    """``num_workers: auto`` is a core each but one for the training process, shared among torchrun's processes on
    the node, at most AUTO_WORKERS_CAP (on 2 cores DataLoader would warn about 4 workers)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    assert workers <= AUTO_WORKERS_CAP
    for name in SHIPPED:
        recipe = load_recipe(name)
        assert recipe.data.num_workers == workers, name
        assert processes * (1 + recipe.data.num_workers) <= max(cores, processes)
    assert load_recipe("align", ["data.num_workers=3"]).data.num_workers == 3  # a number is taken as given
