"""The columns of the pipeline's rows: a request row in, the same row plus result columns out.

A request row has a ``video`` column (a path, or null for audio only) and optionally ``question`` (missing or null:
:attr:`ScaleConfig.prompt`, i.e. captioning) and ``audio`` (a path; ``"auto"``: the video's own soundtrack when it has
one; null: none; a missing column: ``"auto"``, or none with ``ScaleConfig(audio=False)``). Other
:class:`avlm.inference.requests.Request` fields may be columns too; any further column is carried through untouched
(ids, metadata). A result row adds :data:`RESULT_COLUMNS`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from avlm.inference.requests import AUTO, Request
from avlm.inference.runner import Result
from avlm.scale.config import ScaleConfig

RESULT_COLUMNS = {"text": pa.string(), "error": pa.string(), "num_frames": pa.int64(), "has_audio": pa.bool_(),
                  "seconds": pa.float64()}
"""Added to every row: the generated text (null on error), the error (null on success, names the file), frames and
audio given to the model, and the length in seconds of the span the frames cover (null when unknown)."""

REQUEST_FIELDS = tuple(field.name for field in dataclasses.fields(Request))
PATH_FIELDS = ("video", "audio")


def requests_table(requests: Sequence[Request], index_column: str = "index") -> pa.Table:
    """A request table with one row per request and its position in ``index_column``.

    Raises:
        ValueError: a request whose media are not paths (frames, waveforms, clips): rows travel between machines,
            so only paths do; answer those in-process with ``avlm.load(...).run(requests)``.
    """
    columns: dict[str, list[Any]] = {name: [] for name in REQUEST_FIELDS}
    for index, request in enumerate(requests):
        for name in REQUEST_FIELDS:
            columns[name].append(_plain(getattr(request, name), name, index))
    table = {name: pa.array(values, type=pa.string() if name in (*PATH_FIELDS, "question") else None)
             for name, values in columns.items()}
    return pa.table({**table, index_column: pa.array(range(len(requests)), type=pa.int64())})


def request_of(row: dict[str, Any], config: ScaleConfig) -> Request:
    """The request a row stands for (module docstring)."""
    values = {name: row[name] for name in REQUEST_FIELDS if name in row}
    values["question"] = values.get("question") or config.prompt
    if "audio" not in row:
        values["audio"] = AUTO if config.audio else None
    return Request(**values)


def result_of(row: dict[str, Any], index_column: str = "index") -> Result:
    """A result row as the single-process runner's :class:`avlm.inference.runner.Result`."""
    return Result(row[index_column], row["text"], row["error"], row["num_frames"], row["has_audio"], row["seconds"])


def _plain(value: Any, name: str, index: int) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError(f"request {index}: {name} is a {type(value).__name__}; the Ray pipeline takes paths (rows "
                     "travel between machines); answer in-memory media in one process with avlm.load(...).run(...)")
