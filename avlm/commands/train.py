"""Train from a YAML recipe, with dotted overrides; resumable. One process, or several under torchrun.

Examples::

    avlm train --list-recipes                                     # the shipped recipes and what each trains
    avlm train finetune_lora model=runs/av7b train.lr=1e-4        # a shipped recipe, by name
    avlm train av_joint model=avlm-tiny trainable.encoders.video=full train.max_steps=50
    avlm train my_recipe.yaml model=runs/av7b                     # your own file (a copy of a shipped one)
    avlm train runs/lora/recipe.yaml --resume                     # continue from the last complete checkpoint
    torchrun --nproc_per_node 8 -m avlm train av_joint distributed.strategy=fsdp

RECIPE is a YAML file, or, when no such file exists, the name of a shipped recipe. Outputs under
``train.output_dir``: ``recipe.yaml`` (the resolved recipe), ``metrics.jsonl``, ``loss.png``,
``checkpoints/step-XXXXXX`` and ``final/`` (a model folder for ``avlm.load`` / ``avlm ask``). ``--help-recipe``
lists every recipe field with its meaning.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from avlm.recipe_docs import describe, shipped_folder, shipped_recipes
from avlm.recipe_loading import dump_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", nargs="?", metavar="RECIPE",
                        help="recipe YAML, or the name of a shipped recipe (see --list-recipes)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides applied after the file, e.g. train.lr=1e-4 trainable.llm=full")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last complete checkpoint in train.output_dir (train.resume=auto)")
    parser.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                        help="stop after this step with a checkpoint (for time-limited job slots); resume later")
    parser.add_argument("--list-recipes", action="store_true", help="list the shipped recipes and exit")
    parser.add_argument("--help-recipe", action="store_true", help="list every recipe field and exit")


def run(args: argparse.Namespace) -> int:
    if args.list_recipes:
        print_recipes()
        return 0
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    from avlm.train.loop import train
    from avlm.train.recipe import Recipe, load_recipe

    if args.help_recipe:
        for name, text in describe(Recipe).items():
            print(f"{name:34} {' '.join(text.split())}")
        return 0
    if args.recipe is None:
        raise SystemExit("avlm train: give a recipe YAML or a shipped recipe's name (avlm train --list-recipes), "
                         "or --help-recipe")
    overrides = [*args.overrides, *(["train.resume=auto"] if args.resume else [])]
    recipe = load_recipe(args.recipe, overrides)
    _save_recipe(recipe)
    result = train(recipe, stop_at=args.stop_at)
    return 0 if result.final is not None or args.stop_at is not None else 1


def print_recipes() -> None:
    """The shipped recipes with their one-line purpose, and where their files are (to copy one and edit it)."""
    recipes = shipped_recipes()
    width = max(map(len, recipes))
    for name, purpose in recipes.items():
        print(f"{name:{width}}  {purpose}")
    print(f"\nrun one by name: avlm train NAME model=MODEL_DIR [KEY=VALUE ...]; check it first: avlm check NAME ...\n"
          f"files (copy one to edit it): {shipped_folder()}")


def _save_recipe(recipe) -> None:
    """Write the resolved recipe next to the run's outputs (main process), so the run can be repeated or resumed."""
    if os.environ.get("RANK", "0") != "0":
        return
    out = Path(recipe.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(dump_config(recipe), sort_keys=False)
    (out / "recipe.yaml").write_text(f"# resolved by: avlm train {' '.join(sys.argv[2:])}\n" + text)
