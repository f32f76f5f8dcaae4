"""Strict YAML recipes onto nested dataclasses, with dotted command-line overrides.

A recipe is resolved as: dataclass defaults <- YAML file (or a dict) <- overrides such as ``train.lr=1e-4`` or
``data.paths=[a.json,b.json]`` (each value is parsed with ``yaml.safe_load``). Nested dataclasses and
``dict[str, Dataclass]`` merge key by key onto their defaults; lists and scalars replace. Every problem (unknown key,
wrong type, value outside a ``Literal``, a failing ``__post_init__`` check) is collected and raised together in one
:class:`ConfigError`. Unknown keys name the dataclass, the valid keys and the closest match.

Supported field types: dataclasses, ``dict[str, X]``, ``list[X]``, ``tuple[X, ...]``, ``Literal[...]``, ``X | None``
(and other unions), ``Enum``, ``bool``, ``int``, ``float``, ``str``, ``Path``, ``Any``. Field help for ``--help`` comes
from :func:`avlm.recipe_docs.describe`.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")
_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """One or more recipe problems; ``errors`` holds one line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__(f"{len(errors)} config problem(s):\n" + "\n".join(f"  - {line}" for line in errors))


def load_config(cls: type[T], source: str | Path | Mapping[str, Any] | None = None, overrides: Sequence[str] = ()) -> T:
    """Build ``cls`` from its defaults, a YAML file or mapping, and dotted overrides.

    Args:
        cls: the top-level config dataclass.
        source: path of a YAML file, an already-parsed mapping, or None for defaults only.
        overrides: ``"dotted.key=value"`` strings applied after the file, in order.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: listing every problem found.
    """
    import yaml

    errors: list[str] = []
    if source is None:
        data: Any = {}
    elif isinstance(source, Mapping):
        data = _copy(source)
    else:
        with open(source, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError([f"{source}: the top level must be a mapping of keys to values, got {type(data).__name__}"])
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            errors.append(f"override {override!r} is not of the form dotted.key=value (e.g. train.lr=1e-4)")
            continue
        _set_dotted(data, key.strip().split("."), yaml.safe_load(text) if text.strip() else None, errors)
    instance = _convert(cls, data, None, "", errors)
    if errors:
        raise ConfigError(errors)
    return instance


def dump_config(instance: Any) -> Any:
    """Return plain YAML-safe data (dicts, lists, scalars) that :func:`load_config` turns back into ``instance``."""
    if dataclasses.is_dataclass(instance) and not isinstance(instance, type):
        return {f.name: dump_config(getattr(instance, f.name)) for f in dataclasses.fields(instance) if f.init}
    if isinstance(instance, Mapping):
        return {str(key): dump_config(value) for key, value in instance.items()}
    if isinstance(instance, list | tuple):
        return [dump_config(value) for value in instance]
    if isinstance(instance, enum.Enum):
        return instance.value
    if isinstance(instance, Path):
        return str(instance)
    return instance


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _set_dotted(data: dict, keys: list[str], value: Any, errors: list[str]) -> None:
    node = data
    for depth, key in enumerate(keys[:-1]):
        if not isinstance(node.get(key), Mapping):
            if node.get(key) is not None:
                where = ".".join(keys[: depth + 1])
                errors.append(f"override {'.'.join(keys)}: {where} is a {type(node[key]).__name__}, not a mapping")
                return
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


def _convert(kind: Any, value: Any, base: Any, path: str, errors: list[str]) -> Any:
    """Check ``value`` against the type ``kind`` and convert it; ``base`` is the default it merges onto."""
    where = path or "<root>"
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if dataclasses.is_dataclass(kind):
        if isinstance(value, kind):
            return value
        if not isinstance(value, Mapping):
            errors.append(f"{where}: expected a mapping for {kind.__name__}, got {value!r}")
            return base
        return _build_dataclass(kind, value, base if isinstance(base, kind) else None, path, errors)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        for option in options:
            trial: list[str] = []
            converted = _convert(option, value, base, path, trial)
            if not trial or len(options) == 1:
                errors.extend(trial)
                return converted
        errors.append(f"{where}: {value!r} matches none of {_type_name(kind)}")
        return base
    if origin is Literal:
        if value not in args:
            errors.append(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (dict, Mapping) or kind is dict:
        return _convert_dict(args, value, base, path, errors)
    if origin in (list, tuple, Sequence) or kind in (list, tuple):
        if not isinstance(value, list | tuple):
            errors.append(f"{where}: expected a list, got {value!r}")
            return base
        item = args[0] if args else Any
        items = [_convert(item, v, None, f"{path}[{i}]", errors) for i, v in enumerate(value)]
        return tuple(items) if (origin or kind) is tuple else items
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        choices = [member.value for member in kind]
        if value not in choices:
            errors.append(f"{where}: {value!r} is not one of {choices}")
            return base
        return kind(value)
    return _convert_scalar(kind, value, base, where, errors)


def _convert_dict(args: tuple, value: Any, base: Any, path: str, errors: list[str]) -> Any:
    if not isinstance(value, Mapping):
        errors.append(f"{path or '<root>'}: expected a mapping, got {value!r}")
        return base
    item = args[1] if len(args) == 2 else Any
    merged = dict(base) if isinstance(base, Mapping) else {}
    for key, entry in value.items():
        if not isinstance(key, str):
            errors.append(f"{path}: key {key!r} must be a string")
            continue
        merged[key] = _convert(item, entry, merged.get(key), f"{path}.{key}", errors)
    return merged


def _convert_scalar(kind: Any, value: Any, base: Any, where: str, errors: list[str]) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif kind in (str, Path):
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return kind(str(value))
    else:
        errors.append(f"{where}: unsupported field type {_type_name(kind)} in the config dataclass")
        return base
    errors.append(f"{where}: expected {kind.__name__}, got {value!r} ({type(value).__name__})")
    return base


def _build_dataclass(cls: type, data: Mapping, base: Any, path: str, errors: list[str]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            errors.append(f"{path + '.' if path else ''}{key}: unknown key for {cls.__name__}{hint}; "
                          f"valid keys: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    before = len(errors)
    for name, field in fields.items():
        default = _default(field) if base is None else getattr(base, name)
        if name in data:
            merge_onto = None if default is _MISSING else default
            kwargs[name] = _convert(hints[name], data[name], merge_onto, f"{path + '.' if path else ''}{name}", errors)
        elif default is not _MISSING:
            kwargs[name] = default
        else:
            errors.append(f"{path + '.' if path else ''}{name}: required by {cls.__name__} (no default)")
    if len(errors) > before:
        return base
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        errors.append(f"{path or '<root>'}: {cls.__name__} rejected these values: {error}")
        return base


def _default(field: dataclasses.Field) -> Any:
    if field.default is not _MISSING:
        return field.default
    if field.default_factory is not _MISSING:
        return field.default_factory()
    return _MISSING


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        return " | ".join(_type_name(arg) for arg in typing.get_args(kind))
    if typing.get_origin(kind) is None and isinstance(kind, type):
        return kind.__name__
    return str(kind).replace("typing.", "")
