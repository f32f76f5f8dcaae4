"""Field help for config dataclasses, read from their source: attribute docstrings or trailing ``#`` comments.

House style: every config field documents itself, and that text doubles as ``--help``::

    @dataclass
    class TrainConfig:
        lr: float = 2e-5  # peak learning rate
        warmup_ratio: float = 0.03
        '''Fraction of the steps spent warming up linearly from 0 to ``lr``.'''
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import types
import typing
from collections.abc import Mapping
from typing import Any


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
