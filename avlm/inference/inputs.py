"""Turn the INPUTS of ``avlm caption`` (files, folders, text files of paths) into an ordered list of clips."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ts"})
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})


def discover_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand INPUTS into clip paths, in the order given, each path once.

    - a folder: every file with a video extension below it (recursive, sorted);
    - a ``.txt``/``.lst``/``.list`` file: one path per line (blank lines and ``#`` comments skipped; relative paths
      are taken relative to the list file's folder);
    - anything else: taken as a clip path as it is (a missing file is kept, so the batch job reports it per clip).

    Raises:
        FileNotFoundError: a folder or list file given as INPUT does not exist (nothing would be done for it).
    """
    seen: set[Path] = set()
    clips: list[Path] = []
    for raw in inputs:
        for path in _expand(Path(raw)):
            if path not in seen:
                seen.add(path)
                clips.append(path)
    return clips


def _expand(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if path.suffix.lower() in LIST_EXTENSIONS:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: list of clips not found")
        lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
        return [_relative_to(path.parent, Path(line)) for line in lines if line and not line.startswith("#")]
    return [path]


def _relative_to(folder: Path, path: Path) -> Path:
    return path if path.is_absolute() else folder / path
