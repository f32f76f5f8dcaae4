"""Read a questions file for ``avlm ask --questions``: one JSON object per line, malformed lines reported by number.

Line format: ``{"question": str, "video"?: path, "audio"?: path | null, "id"?: str | int}``.

- ``video``/``audio`` paths are taken relative to the questions file's folder; the record keeps them as written.
- ``audio`` absent: the video file's own soundtrack when it has one; ``null``: no audio.
- ``id`` absent: the line number. Ids (and line numbers standing in for them) key the results and must be unique; a
  malformed line (or a repeated id) is reported under its line number.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avlm.inference.requests import AUTO, Request

FIELDS = ("id", "video", "audio", "question")


@dataclass
class Questions:
    """A parsed questions file.

    Attributes:
        requests: one request per good line, in file order.
        records: the base output record of each request (``{"id", "video"?, "audio"?, "question"}``).
        failed: an error record ``{"id", "error"}`` per malformed line (the error names file and line).
    """

    requests: list[Request]
    records: list[dict[str, Any]]
    failed: list[dict[str, Any]]


def read_questions(path: str | os.PathLike, use_audio: bool = True) -> Questions:
    """Parse ``path``; ``use_audio=False`` drops every audio (``--no-audio``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file holds no question line at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: questions file not found")
    parsed = Questions([], [], [])
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = _parse(line)
            key = values.get("id", number)
            if str(key) in seen:
                raise ValueError(f"id {key!r} already used on line {seen[str(key)]}; give every line its own id")
            request, record = _request(values, key, path.parent, use_audio)
        except ValueError as error:  # reported under the line number
            seen.setdefault(str(number), number)
            parsed.failed.append({"id": number, "error": f"{path}:{number}: {error}"})
            continue
        seen[str(key)] = number
        parsed.requests.append(request)
        parsed.records.append(record)
    if not parsed.requests and not parsed.failed:
        raise ValueError(f"{path}: no questions (expected JSON lines like "
                         '{"video": "clip.mp4", "question": "What happens?"})')
    return parsed


def _parse(line: str) -> dict[str, Any]:
    try:
        values = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at column {error.colno})") from error
    if not isinstance(values, dict):
        raise ValueError(f"expected a JSON object, got {type(values).__name__}")
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown fields {unknown}; a line has {list(FIELDS)}")
    if not isinstance(values.get("question"), str) or not values["question"].strip():
        raise ValueError('needs a non-empty "question" string')
    for name in ("video", "audio"):
        if values.get(name) is not None and not isinstance(values[name], str):
            raise ValueError(f'"{name}" must be a path string, got {values[name]!r}')
    if "id" in values and not isinstance(values["id"], (str, int)):
        raise ValueError(f'"id" must be a string or an integer, got {values["id"]!r}')
    return values


def _request(values: dict[str, Any], key: Any, folder: Path, use_audio: bool) -> tuple[Request, dict[str, Any]]:
    video = _resolve(folder, values.get("video"))
    audio = _resolve(folder, values["audio"]) if "audio" in values else AUTO
    record = {"id": key, **{name: values[name] for name in ("video", "audio") if name in values},
              "question": values["question"]}
    return Request(values["question"], video, audio if use_audio else None), record


def _resolve(folder: Path, value: str | None) -> str | None:
    if value is None:
        return None
    path = Path(value)
    return str(path if path.is_absolute() else folder / path)
