"""Append-only JSONL results that survive a crash or Ctrl-C at any moment, and resume without duplicates.

Each finished clip is written as one complete line, flushed and fsynced. On restart the file is read back:
every complete line counts as done; a torn last line (the process died mid-write) is cut off first, so the
file never holds a partial record and every clip appears exactly once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _repair(path: Path) -> None:
    """Cut a torn final line left by a killed writer: everything after the last newline.

    A record is written as one ``line + "\n"``, so a complete record always ends with a newline.
    """
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    with open(path, "r+b") as handle:
        handle.truncate(data.rfind(b"\n") + 1)
        handle.flush()
        os.fsync(handle.fileno())


def record_key(record: dict[str, Any], key: str | tuple[str, ...]) -> str:
    """The resume key of ``record``: ``str(record[key])``; for several fields (e.g. ``("video", "segment")``) the
    JSON list of their values, a missing field after the first counting as null (a video's summary line)."""
    if isinstance(key, str):
        return str(record[key])
    return json.dumps([record.get(name) for name in key], ensure_ascii=False)


def read_done(path: str | os.PathLike, key: str | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Records already in a results file, by :func:`record_key` (repairs a torn last line first).

    Raises:
        ValueError: a line other than the last is not valid JSON (the file was not written by avlm).
    """
    path = Path(path)
    if not path.exists():
        return {}
    _repair(path)
    done: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON line ({error.msg}); is this an avlm results file? "
                             "Move it away or pass another --output") from error
        first = key if isinstance(key, str) else key[0]
        if first not in record:
            raise ValueError(f"{path}:{number}: record has no {first!r} field; pass another --output")
        done[record_key(record, key)] = record
    return done


def drop_errors(path: str | os.PathLike, key: str, keys: Iterable[str] | None = None) -> int:
    """Remove ``error`` records from a results file, so a rerun retries those inputs; returns how many.

    Args:
        path: the results file.
        key: the record field that names the input (``"video"``, ``"id"``).
        keys: remove only the errors of these inputs (``str(record[key])``); None: every error.

    The file is rewritten to a temporary file next to it, fsynced and renamed over the original: a crash leaves
    either the old or the new file, never a mix.
    """
    path = Path(path)
    read_done(path, key)  # checks the file and cuts a torn last line
    wanted = None if keys is None else set(keys)
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        record = json.loads(line)
        if "error" in record and (wanted is None or str(record[key]) in wanted):
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        write_atomically(path, "".join(kept))
    return dropped


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) so that a crash leaves the old file or the new one, never a torn one:
    written to a temporary file, fsynced, then renamed over ``path``."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class ResultWriter:
    """Appends one JSON line per record, flushed and fsynced before ``write`` returns.

    Usage::

        with ResultWriter("captions.jsonl", key="video") as out:
            todo = [p for p in paths if str(p) not in out.done]
            ...
            out.write({"video": str(path), "caption": text})
    """

    def __init__(self, path: str | os.PathLike, key: str | tuple[str, ...]):
        self.path = Path(path)
        self.key = key
        self.done = read_done(self.path, key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a", encoding="utf-8")

    def key_of(self, record: dict[str, Any]) -> str:
        """``record``'s key in :attr:`done` (:func:`record_key`)."""
        return record_key(record, self.key)

    def write(self, record: dict[str, Any]) -> None:
        first = self.key if isinstance(self.key, str) else self.key[0]
        if first not in record:
            raise ValueError(f"result record needs a {first!r} field, got keys {sorted(record)}")
        line = json.dumps(record, ensure_ascii=False) + "\n"
        self._handle.write(line)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.done[self.key_of(record)] = record

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
