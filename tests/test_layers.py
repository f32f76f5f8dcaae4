"""The package's layers import downward only, and no group of modules imports itself in a circle.

Every import of every module is read from the source (module level and inside functions, ``TYPE_CHECKING`` blocks
and the lazy-export tables of package ``__init__`` files included) and checked against :data:`LAYERS`: a module may
import its own layer and the layers below it. ``audio``, ``vision`` and ``fusion`` never import ``avlm``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top; a module belongs to the first layer one of whose prefixes it starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("constants", ("avlm.constants", "avlm._lazy", "avlm.resources")),
    ("modeling", ("avlm.modeling",)),
    ("processing", ("avlm.processing",)),
    ("convert", ("avlm.convert",)),
    ("assembly", ("avlm.assembly",)),
    ("recipe loading", ("avlm.recipe_loading", "avlm.recipe_docs", "avlm.assets")),
    ("data", ("avlm.synth", "avlm.data")),
    ("inference", ("avlm.inference", "avlm.api")),
    ("evaluation and training", ("avlm.eval", "avlm.train")),
    ("applications", ("avlm.demo", "avlm.serving", "avlm.scale")),
    ("entry points", ("avlm.commands", "avlm.cli", "avlm.__main__", "avlm")),
]
OUTSIDE = ("audio", "vision", "fusion")


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    raise AssertionError(f"module {module} is in no layer; add it to LAYERS in {__file__}")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """First-party modules ``path`` imports, with the line: ``import a.b``, ``from a.b import c`` (``a.b.c`` when it
    is a module), relative imports, and ``"avlm.x"`` strings in lazy-export tables (``_EXPORTS = {...}``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names
                      if _is_module(f"{base}.{alias.name}")]
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            found += [(value.value, node.lineno) for value in ast.walk(node.value)
                      if isinstance(value, ast.Constant) and isinstance(value.value, str)
                      and value.value.startswith("avlm.")]
    return [(name, line) for name, line in found if name.split(".")[0] in ("avlm", *OUTSIDE)]


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(files: list[Path]) -> list[str]:
    """Upward imports (file:line, which layers) and import cycles between files."""
    problems, graph = [], {}
    for path in files:
        source = module_name(path)
        graph[source] = set()
        for target, line in imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if source.split(".")[0] in OUTSIDE:
                if target.split(".")[0] == "avlm":
                    problems.append(f"{where}: {source} imports {target}; audio, vision and fusion never import avlm")
                continue
            if target.split(".")[0] != "avlm" or target == source:
                continue
            if _is_module(target) and target != "avlm":
                graph[source].add(target)
            if source == "avlm":  # the package root only lists lazy exports
                continue
            if layer_of(target) > layer_of(source):
                problems.append(f"{where}: {source} (layer {LAYERS[layer_of(source)][0]!r}) imports {target} "
                                f"(layer {LAYERS[layer_of(target)][0]!r}, above it)")
    return problems + [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph)]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan), as a path through it. A package imported by one
    of its own modules (``avlm.data`` <- ``avlm.data.build``) is an edge only when the package ``__init__`` imports
    that module, which makes the circle real."""
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [[*group, group[0]] for group in groups]


def package_files() -> list[Path]:
    return sorted(path for name in ("avlm", *OUTSIDE) for path in (ROOT / name).rglob("*.py"))


def test_every_import_goes_down_a_layer_and_none_closes_a_cycle() -> None:
    assert violations(package_files()) == []


def test_a_planted_upward_import_and_a_planted_cycle_are_caught(tmp_path, monkeypatch) -> None:
    """The check itself: copy the package, plant an upward import (the model core importing the training loop) and a
    circle, and see both named with file and line."""
    import shutil

    for name in ("avlm", *OUTSIDE):
        shutil.copytree(ROOT / name, tmp_path / name)
    loss = tmp_path / "avlm" / "modeling" / "loss.py"
    loss.write_text(loss.read_text() + "\n\ndef _planted():\n    from avlm.train.loop import train\n")
    constants = tmp_path / "avlm" / "constants.py"
    constants.write_text("import avlm.modeling.loss\n" + constants.read_text())
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    found = violations(sorted(path for name in ("avlm", *OUTSIDE) for path in (tmp_path / name).rglob("*.py")))
    line = len(loss.read_text().splitlines())
    assert f"avlm/modeling/loss.py:{line}: avlm.modeling.loss (layer 'modeling') imports avlm.train.loop " \
           "(layer 'evaluation and training', above it)" in found
    upward = "avlm/constants.py:1: avlm.constants (layer 'constants') imports avlm.modeling.loss"
    assert any(problem.startswith(upward) for problem in found)
    assert any(problem.startswith("import cycle:") and "avlm.constants" in problem for problem in found)


@pytest.mark.parametrize("name", ["avlm.modeling.presets", "avlm.processing.collator", "avlm.data.annotations"])
def test_modules_are_in_a_layer(name: str) -> None:
    assert 0 <= layer_of(name) < len(LAYERS)
