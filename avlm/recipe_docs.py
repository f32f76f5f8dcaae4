"""What recipes say about themselves: field help for config dataclasses, and the shipped recipes by name.

House style: every config field documents itself, and that text doubles as ``--help``::

    @dataclass
    class TrainConfig:
        lr: float = 2e-5  # peak learning rate
        warmup_ratio: float = 0.03
        '''Fraction of the steps spent warming up linearly from 0 to ``lr``.'''

The shipped recipes are package data (``avlm/recipes/*.yaml``), read through :mod:`importlib.resources` so that
``avlm train finetune_lora`` works from a plain ``pip install`` as well as from a clone. Each file starts with
``# <name>: <one-line purpose>``, which ``avlm train --list-recipes`` prints.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.resources
import inspect
import io
import os
import textwrap
import tokenize
import types
import typing
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

RECIPE_SUFFIX = ".yaml"


def describe(cls: type, prefix: str = "") -> dict[str, str]:
    """Dotted field name -> help text, from each field's attribute docstring or trailing ``#`` comment.

    Nested dataclass fields are listed under their parent's name: ``name.x``, ``name.<key>.x`` for
    ``dict[str, Dataclass]`` and ``name[].x`` for ``list[Dataclass]``.
    Fields without documentation map to an empty string.
    """
    docs = _field_docs(cls)
    hints = typing.get_type_hints(cls)
    result: dict[str, str] = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        name = prefix + field.name
        result[name] = docs.get(field.name, "")
        inner = _dataclass_inside(hints[field.name])
        if inner is not None:
            result.update(describe(inner[0], name + inner[1]))
    return result


def _dataclass_inside(kind: Any) -> tuple[type, str] | None:
    """The dataclass a field holds (directly, optionally, as dict values or list items) and the name suffix."""
    if dataclasses.is_dataclass(kind):
        return kind, "."
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        found = [_dataclass_inside(arg) for arg in args if arg is not type(None)]
        return found[0] if len(found) == 1 else None
    if origin in (dict, Mapping) and len(args) == 2 and dataclasses.is_dataclass(args[1]):
        return args[1], ".<key>."
    if origin in (list, tuple) and args and dataclasses.is_dataclass(args[0]):
        return args[0], "[]."
    return None


def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings and trailing comments of a dataclass and its dataclass bases (empty if no source)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        comments = {token.start[0]: token.string.lstrip("#").strip()
                    for token in tokenize.generate_tokens(io.StringIO(source).readline)
                    if token.type == tokenize.COMMENT}
        body = ast.parse(source).body[0].body
        for index, statement in enumerate(body):
            if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
                continue
            following = body[index + 1] if index + 1 < len(body) else None
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant) \
                    and isinstance(following.value.value, str):
                docs[statement.target.id] = inspect.cleandoc(following.value.value)
            elif statement.end_lineno in comments:
                docs[statement.target.id] = comments[statement.end_lineno]
    return docs


def shipped_recipes() -> dict[str, str]:
    """Name -> one-line purpose of every shipped recipe, sorted by name. The purpose is the file's first comment
    paragraph (up to the first empty ``#`` line) without its ``<name>:`` prefix."""
    recipes = {}
    for entry in sorted(shipped_folder().iterdir(), key=lambda entry: entry.name):
        if entry.name.endswith(RECIPE_SUFFIX):
            name = entry.name.removesuffix(RECIPE_SUFFIX)
            recipes[name] = _purpose(name, entry.read_text(encoding="utf-8"))
    return recipes


def find_recipe(recipe: str | os.PathLike) -> Path | Traversable:
    """The recipe file ``recipe`` names: an existing file, or else the shipped recipe of that name (``finetune_lora``
    or ``finetune_lora.yaml``, without a folder). A file of one's own wins over a shipped recipe of the same name.

    Raises:
        FileNotFoundError: neither a file nor a shipped recipe; the message lists the shipped names.
    """
    path = Path(recipe)
    if path.exists():  # a file of one's own (or /dev/null: the defaults); a folder fails when it is read
        return path
    name = path.name.removesuffix(RECIPE_SUFFIX)
    shipped = shipped_folder() / f"{name}{RECIPE_SUFFIX}"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    names = ", ".join(shipped_recipes())
    hint = f" (a shipped recipe is named without a folder: {name})" if shipped.is_file() else ""
    raise FileNotFoundError(f"recipe {os.fspath(recipe)!r}: no such file, and not the name of a shipped "
                            f"recipe{hint}; shipped recipes: {names} (avlm train --list-recipes)")


def shipped_folder() -> Traversable:
    """The folder of the shipped recipes, ``avlm/recipes`` inside the installed package."""
    return importlib.resources.files("avlm").joinpath("recipes")


def _purpose(name: str, text: str) -> str:
    lines = []
    for line in text.splitlines():
        words = line.removeprefix("#").strip()
        if not line.startswith("#") or not words:
            break
        lines.append(words)
    return " ".join(lines).removeprefix(f"{name}:").strip()
