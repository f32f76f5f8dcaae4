"""Line-located reading of JSON list / JSONL files, so validation messages can say ``file:line``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SPACE = re.compile(r"\s*")


@dataclass(frozen=True)
class MalformedLine:
    """A JSONL line that is not valid JSON; ``message`` is the decoder's."""

    message: str


def read_json_records(path: Path) -> tuple[list[tuple[str, Any]], str | None]:
    """Read a JSON list or JSONL file into ``[(location, object)]`` plus a file-level problem (or None).

    Locations are ``file:line`` (JSONL) or ``file:line (item i)`` (JSON list, the line where item i starts). A
    malformed JSONL line becomes ``(file:line:column, MalformedLine(message))`` and reading goes on; a malformed JSON
    list, an unreadable file or a top level that is not a list is a file-level problem (no items).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return [], f"{path}: cannot read the annotation file ({error})"
    is_list = path.suffix == ".json" or (path.suffix != ".jsonl" and text.lstrip().startswith("["))
    if not is_list:
        items: list[tuple[str, Any]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append((f"{path}:{number}", json.loads(line)))
                except json.JSONDecodeError as error:
                    items.append((f"{path}:{number}:{error.colno}", MalformedLine(error.msg)))
        return items, None
    decoder, items, index, line = json.JSONDecoder(), [], 0, 1
    try:
        index = _skip_space(text, 0)
        if text[index:index + 1] != "[":
            return [], f"{path}:{text.count(chr(10), 0, index) + 1}: expected a JSON list of records ('[ ... ]')"
        index, counted = _skip_space(text, index + 1), 0
        while text[index:index + 1] != "]":
            line += text.count("\n", counted, index)
            counted = index
            item, end = decoder.raw_decode(text, index)
            items.append((f"{path}:{line} (item {len(items)})", item))
            index = _skip_space(text, end)
            if text[index:index + 1] == ",":
                index = _skip_space(text, index + 1)
            elif text[index:index + 1] != "]":
                raise json.JSONDecodeError("expected ',' or ']' after a record", text, index)
    except json.JSONDecodeError as error:
        return [], f"{path}:{error.lineno}:{error.colno}: malformed JSON: {error.msg}"
    return items, None


def _skip_space(text: str, index: int) -> int:
    return _SPACE.match(text, index).end()
