"""The ``avlm`` console script. Subcommands come from the one dict ``COMMANDS``.

Each command lives in ``avlm/commands/<name>.py`` and exposes ``add_arguments(parser)`` and ``run(args) -> int`` (the
exit code). Only the module of the command being run is imported, and command modules import torch, transformers
and the model code inside ``run``, so ``avlm --help`` and ``avlm COMMAND --help`` load neither
(``tests/test_cli_light.py``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module under avlm.commands, one-line help). Only commands that work are listed.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the whole pipeline on CPU: generate AV-Synth, train, evaluate with ablations, caption"),
    "inspect": ("inspect", "show a clip's streams and write a contact sheet of what the model sees"),
    "build": ("build", "assemble a new model folder from a preset and/or pretrained parts"),
    "merge-lora": ("merge_lora", "fold LoRA adapters into the base model (checked on a fixed sample)"),
    "synth": ("synth", "generate AV-Synth: audio-visual clips with known answers, train/test annotations"),
    "caption": ("caption", "caption videos into a JSONL file (batched, resumable, per-clip errors)"),
    "ask": ("ask", "answer questions about videos and their sound (one, or a JSONL file of them)"),
    "train": ("train", "train from a YAML recipe or a shipped recipe's name (overrides, --resume; torchrun)"),
    "check": ("check", "dry-run a training recipe: validate the data and count tokens per sample"),
    "eval": ("eval", "evaluate on an annotation file: accuracy per task and question kind, captions, ablations"),
    "serve": ("serve", "serve a model over an OpenAI-compatible chat API (batched, streaming, media root, API key)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``avlm`` parser with every command listed; only ``command``'s module is imported and its arguments added
    (``None``: none, enough for ``avlm --help``)."""
    parser = argparse.ArgumentParser(prog="avlm", description="Audio-visual video understanding with LLMs.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == command:
            module = importlib.import_module(f"avlm.commands.{module_name}")
            sub.description = module.__doc__
            module.add_arguments(sub)
            sub.set_defaults(_run=module.run)
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command named on the command line: the first argument that is not an option (``avlm`` itself takes no
    option with a value), or None."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; a user error (bad file, bad value) prints one line and exits with status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(chosen_command(argv)).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, OSError) as error:
        print(f"avlm {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
