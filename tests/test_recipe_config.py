"""Strict YAML -> dataclass loading: defaults <- YAML <- dotted overrides, all errors at once, docs for --help."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from avlm.recipe_docs import describe
from avlm.recipe_loading import ConfigError, dump_config, load_config


class Precision(enum.Enum):
    BF16 = "bf16"
    FP32 = "fp32"


@dataclass
class ConnectorConfig:
    name: Literal["stc", "mlp2x_gelu"] = "stc"  # which connector class to build
    depth: int = 2
    """Number of RegStage blocks; higher is slower and more accurate."""


@dataclass
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0

    def __post_init__(self) -> None:
        if self.rank <= 0:
            raise ValueError(f"rank must be positive, got {self.rank}")


@dataclass
class TrainConfig:
    lr: float = 2e-5  # peak learning rate
    steps: int = 10
    bf16: bool = True
    precision: Precision = Precision.BF16
    output_dir: Path = Path("runs/default")
    tags: tuple[str, ...] = ()


@dataclass
class DataConfig:
    paths: list[Path] = field(default_factory=list)
    ratios: dict[str, float] | None = None
    max_length: int | None = None


@dataclass
class Recipe:
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    connectors: dict[str, ConnectorConfig] = field(
        default_factory=lambda: {"video": ConnectorConfig(), "audio": ConnectorConfig(name="mlp2x_gelu", depth=1)}
    )
    lora: LoRAConfig | None = None


def test_defaults_then_yaml_then_overrides(tmp_path: Path) -> None:
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(
        "train:\n  lr: 1.0e-3\n  steps: 5\ndata:\n  paths: [a.json]\nconnectors:\n  video:\n    depth: 4\n"
    )
    recipe = load_config(Recipe, recipe_file, ["train.lr=1e-4", "data.paths=[b.json, c.json]", "lora.rank=4"])
    assert recipe.train.lr == pytest.approx(1e-4)  # "1e-4" is a string to PyYAML; float fields accept it
    assert recipe.train.steps == 5 and recipe.train.bf16 is True
    assert recipe.data.paths == [Path("b.json"), Path("c.json")]
    assert recipe.connectors["video"] == ConnectorConfig(name="stc", depth=4)  # merged onto the default entry
    assert recipe.connectors["audio"] == ConnectorConfig(name="mlp2x_gelu", depth=1)  # default entry kept
    assert recipe.lora == LoRAConfig(rank=4, alpha=16.0)  # None default + override builds from class defaults
    assert load_config(Recipe) == Recipe()


def test_override_merges_into_dict_of_dataclasses_and_new_keys() -> None:
    recipe = load_config(Recipe, {}, ["connectors.audio.depth=3", "connectors.image.name=mlp2x_gelu"])
    assert recipe.connectors["audio"].name == "mlp2x_gelu" and recipe.connectors["audio"].depth == 3
    assert recipe.connectors["image"] == ConnectorConfig(name="mlp2x_gelu", depth=2)
    assert recipe.connectors["video"] == ConnectorConfig()


def test_unknown_keys_are_named_with_dataclass_valid_keys_and_suggestion() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(Recipe, {"train": {"lrr": 1.0}, "dataa": {}})
    message = str(raised.value)
    assert "train.lrr: unknown key for TrainConfig (did you mean 'lr'?)" in message
    assert "valid keys: lr, steps, bf16, precision, output_dir, tags" in message
    assert "dataa: unknown key for Recipe (did you mean 'data'?)" in message
    assert len(raised.value.errors) == 2


def test_every_error_is_reported_at_once() -> None:
    overrides = [
        "train.steps=ten",  # not an int
        "train.bf16=1",  # ints are not bools
        "train.precision=fp16",  # enum value outside the choices
        "connectors.video.name=qformer",  # Literal outside the choices
        "lora.rank=0",  # __post_init__ check
        "data.max_length=[1]",  # int | None gets a list
        "nodot",  # malformed override
    ]
    with pytest.raises(ConfigError) as raised:
        load_config(Recipe, {}, overrides)
    errors = raised.value.errors
    assert len(errors) == 7, errors
    text = "\n".join(errors)
    assert "train.steps: expected int, got 'ten'" in text
    assert "train.bf16: expected bool, got 1" in text
    assert "train.precision: 'fp16' is not one of ['bf16', 'fp32']" in text
    assert "connectors.video.name: 'qformer' is not one of ['stc', 'mlp2x_gelu']" in text
    assert "lora: LoRAConfig rejected these values: rank must be positive, got 0" in text
    assert "data.max_length: expected int, got [1] (list)" in text
    assert "'nodot' is not of the form dotted.key=value" in text


def test_type_coercion() -> None:
    recipe = load_config(Recipe, {"train": {"lr": 1, "output_dir": "out", "tags": ["a", 3], "precision": "fp32"}})
    assert isinstance(recipe.train.lr, float) and recipe.train.lr == 1.0
    assert recipe.train.output_dir == Path("out")
    assert recipe.train.tags == ("a", "3")
    assert recipe.train.precision is Precision.FP32
    assert load_config(Recipe, {}, ["data.max_length="]).data.max_length is None
    assert load_config(Recipe, {}, ["data.ratios={av: 2, video: 1}"]).data.ratios == {"av": 2.0, "video": 1.0}


def test_dump_round_trips_through_yaml(tmp_path: Path) -> None:
    recipe = load_config(Recipe, {}, ["lora.alpha=32", "data.paths=[x.json]", "train.tags=[a]"])
    dumped = dump_config(recipe)
    assert dumped["train"]["output_dir"] == "runs/default" and dumped["train"]["precision"] == "bf16"
    saved = tmp_path / "resolved.yaml"
    saved.write_text(yaml.safe_dump(dumped))
    assert load_config(Recipe, saved) == recipe


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    recipe_file = tmp_path / "bad.yaml"
    recipe_file.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Recipe, recipe_file)


def test_describe_reads_docstrings_and_comments() -> None:
    help_text = describe(Recipe)
    assert help_text["train.lr"] == "peak learning rate"
    assert help_text["connectors.<key>.name"] == "which connector class to build"
    assert help_text["connectors.<key>.depth"] == "Number of RegStage blocks; higher is slower and more accurate."
    assert help_text["lora.rank"] == ""
    assert "data.paths" in help_text and "train" in help_text


@dataclass
class Schedule:
    warmup: int | Literal["auto"] = "auto"


def test_unions_try_each_member() -> None:
    assert load_config(Schedule, {"warmup": 10}).warmup == 10
    assert load_config(Schedule, {}, ["warmup=auto"]).warmup == "auto"
    with pytest.raises(ConfigError, match=r"warmup: 'soon' matches none of int \| Literal\['auto'\]"):
        load_config(Schedule, {"warmup": "soon"})
