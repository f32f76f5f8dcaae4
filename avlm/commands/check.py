"""Dry run of a training recipe: validate everything, count tokens per sample, train nothing.

Examples::

    avlm check av_joint model=runs/av7b data.data_root=/datasets/av    # a shipped recipe, by name
    avlm check my_recipe.yaml --rows 0                 # totals and the truncated samples only

RECIPE is a YAML file, or, when no such file exists, the name of a shipped recipe (``avlm train --list-recipes``).

Checks the recipe (unknown keys and bad values, all at once), the trainable policy against the model, and every
annotation record (missing media files, unknown keys, placeholders without media and media without placeholders,
empty answers; each problem with its file and line). Then prints, per sample and in total, the visual, audio and
text tokens against the maximum length (``data.max_length``, else the LLM's position limit), and lists the samples
that would be truncated. Media lengths come from the container headers (nothing is decoded) and the model is built
on the meta device (no weights are read). Exit status 1 when there are problems, 0 otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", metavar="RECIPE", help="recipe YAML, or the name of a shipped recipe")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as for avlm train")
    parser.add_argument("--rows", type=int, default=50,
                        help="per-sample rows to print, longest first (0: totals and truncated samples only)")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    from rich.console import Console

    from avlm.data.annotations import AnnotationError, load_annotations
    from avlm.data.conversation import token_budget
    from avlm.train.budget import MediaTokenCounter
    from avlm.train.recipe import load_recipe
    from avlm.train.setup import placeholder_ids

    console = Console(highlight=False)
    recipe = load_recipe(args.recipe, args.overrides)
    model, processor = _model_on_meta(recipe.model, recipe.train.seed)
    problems = _policy_problems(recipe, model)
    try:
        records, report = load_annotations(recipe.data.sources, recipe.data.data_root,
                                           skip_invalid=recipe.data.skip_invalid, check_media=recipe.data.check_media)
    except AnnotationError as error:
        problems += error.problems
        records, report = [], None
    if report is not None:
        console.print(report.summary())
    max_length = recipe.data.max_length or model.config.text_config.max_position_embeddings
    if records:
        rows, totals = token_budget(records, processor.tokenizer, MediaTokenCounter(model, processor.config),
                                    max_length, placeholder_ids(model), recipe.data.system_prompt,
                                    model.config.av_fusion)
        _print_budget(console, rows, totals, max_length, args.rows)
    if problems:
        console.print(f"[bold red]{len(problems)} problem(s):[/]")
        for problem in problems:
            console.print(f"  {problem}", markup=False, soft_wrap=True)
        return 1
    console.print(f"[green]ok[/]: {len(records)} samples ready for {args.recipe}")
    return 0


def _model_on_meta(source: str, seed: int) -> tuple[Any, Any]:
    """The model's structure without its weights (token counts and part names), and its processor."""
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    import torch

    from avlm.assembly import build_model
    from avlm.modeling.configuration import AVLMConfig
    from avlm.modeling.model import AVLMForCausalLM
    from avlm.modeling.presets import PRESETS
    from avlm.processing.processor import Processor
    from avlm.synth.tokenizer import tokenizer_for_preset
    from avlm.train.setup import load_model

    if source in PRESETS:
        with torch.device("meta"):
            return build_model(source, seed=seed, tokenizer=tokenizer_for_preset(source))
    folder = Path(source)
    if not (folder / "config.json").is_file():
        return load_model(source, seed)  # raises the error that names the choices
    config = AVLMConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AVLMForCausalLM(config)
    return model, Processor.from_pretrained(folder)


def _policy_problems(recipe: Any, model: Any) -> list[str]:
    modes = dict(recipe.trainable.items())
    parts = ["llm", *(f"encoders.{m}" for m in model.encoders), *(f"connectors.{m}" for m in model.connectors)]
    problems = [f"trainable: no mode for {part} (this model has {parts})" for part in parts if part not in modes]
    problems += [f"trainable: {part} is not a part of this model ({parts})" for part in modes if part not in parts]
    if all(modes.get(part) == "frozen" for part in parts):
        problems.append("trainable: every part is frozen; nothing would train")
    return problems


def _print_budget(console: Any, rows: list, totals: Any, max_length: int, limit: int) -> None:
    # Imported here, not at the top, to keep `avlm --help` light.
    from rich.table import Table

    modalities = sorted({m for row in rows for m in row.media_tokens})
    table = Table(title=f"tokens per sample (max length {max_length})", show_footer=True)
    table.add_column("sample", footer="total")
    table.add_column("where", footer=f"{totals.num_samples} samples")
    for modality in modalities:
        table.add_column(modality, justify="right", footer=str(totals.media_tokens.get(modality, 0)))
    table.add_column("text", justify="right", footer=str(totals.text_tokens))
    table.add_column("answer", justify="right", footer=str(totals.answer_tokens))
    table.add_column("total", justify="right", footer=f"longest {totals.longest}")
    ordered = sorted(rows, key=lambda row: -row.total)
    shown = ordered[:limit] + [row for row in ordered[limit:] if row.truncated]
    for row in shown:
        style = "red" if row.truncated else None
        table.add_row(row.id, row.location, *(str(row.media_tokens.get(m, 0)) for m in modalities),
                      str(row.text_tokens), str(row.answer_tokens), str(row.total), style=style)
    console.print(table)
    if totals.num_truncated:
        console.print(f"[bold yellow]{totals.num_truncated} sample(s) longer than {max_length} tokens would be "
                      f"truncated[/] (text cut from the end):")
        for row in ordered:
            if row.truncated:
                console.print(f"  {row.id} ({row.location}): {row.total} tokens", markup=False, soft_wrap=True)
    else:
        console.print(f"no sample exceeds {max_length} tokens")
