"""Train from a YAML recipe, with dotted overrides; resumable. One process, or several under torchrun.

Examples::

    avlm train avlm/recipes/finetune_lora.yaml model=runs/av7b train.lr=1e-4
    avlm train scripts/recipes/av_joint.yaml model=avlm-tiny trainable.encoders.video=full train.max_steps=50
    avlm train runs/lora/recipe.yaml --resume                     # continue from the last complete checkpoint
    torchrun --nproc_per_node 8 -m avlm train avlm/recipes/av_joint.yaml distributed.strategy=fsdp

Outputs under ``train.output_dir``: ``recipe.yaml`` (the resolved recipe), ``metrics.jsonl``, ``loss.png``,
``checkpoints/step-XXXXXX`` and ``final/`` (a model folder for ``avlm.load`` / ``avlm ask``). ``--help-recipe``
lists every recipe field with its meaning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", type=Path, nargs="?", help="recipe YAML (see avlm/recipes/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides applied after the file, e.g. train.lr=1e-4 trainable.llm=full")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last complete checkpoint in train.output_dir (train.resume=auto)")
    parser.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                        help="stop after this step with a checkpoint (for time-limited job slots); resume later")
    parser.add_argument("--help-recipe", action="store_true", help="list every recipe field and exit")


def run(args: argparse.Namespace) -> int:
    from avlm.train.recipe import Recipe, load_recipe

    if args.help_recipe:
        from avlm.recipe_docs import describe

        for name, text in describe(Recipe).items():
            print(f"{name:34} {' '.join(text.split())}")
        return 0
    if args.recipe is None:
        raise SystemExit("avlm train: give a recipe YAML (e.g. avlm/recipes/align.yaml) or --help-recipe")
    overrides = [*args.overrides, *(["train.resume=auto"] if args.resume else [])]
    recipe = load_recipe(args.recipe, overrides)
    from avlm.train.loop import train

    _save_recipe(recipe)
    result = train(recipe, stop_at=args.stop_at)
    return 0 if result.final is not None or args.stop_at is not None else 1


def _save_recipe(recipe) -> None:
    """Write the resolved recipe next to the run's outputs (main process), so the run can be repeated or resumed."""
    import os

    import yaml

    from avlm.recipe_loading import dump_config

    if os.environ.get("RANK", "0") != "0":
        return
    out = Path(recipe.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(dump_config(recipe), sort_keys=False)
    (out / "recipe.yaml").write_text(f"# resolved by: avlm train {' '.join(sys.argv[2:])}\n" + text)
