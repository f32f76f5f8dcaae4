"""Test-only fault injection: make a stage die in native style (``os._exit``) on a given file, or run slowly.

``AVLM_TEST_FAULTS`` names a file that the stages read on every call (the tests set the variable before starting their
Ray cluster, so every worker process inherits it, and change the file from test to test). It holds comma-separated
entries:

- ``crash:STAGE:NAME[:TIMES]``: the ``decode`` or ``model`` stage exits its process when it reaches a request whose
  video (or audio) file is named NAME: every time, or only the first TIMES times (counted with marker files next to
  the spec file, shared by the processes of the machine);
- ``sleep:STAGE:SECONDS``: each call of that stage first sleeps (so a test can kill the driver mid-run).

Without the variable, or with the file missing or empty, nothing happens.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

VARIABLE = "AVLM_TEST_FAULTS"


def maybe_crash(stage: str, paths: Iterable[object]) -> None:
    """Sleep and/or exit this process at once (no cleanup, as a segfault would) as the fault file says."""
    spec = _spec()
    if spec is None:
        return
    names = {Path(os.fspath(path)).name for path in paths if isinstance(path, (str, os.PathLike))}
    for kind, entry_stage, *rest in (entry.split(":") for entry in spec.read_text().split(",") if entry.strip()):
        if entry_stage != stage:
            continue
        if kind == "sleep":
            time.sleep(float(rest[0]))
        elif kind == "crash" and rest[0] in names and _count_one(spec.parent / f"{stage}-{rest[0]}", rest[1:]):
            os._exit(70)


def _spec() -> Path | None:
    name = os.environ.get(VARIABLE)
    path = Path(name) if name else None
    return path if path is not None and path.is_file() else None


def _count_one(marker: Path, times: list[str]) -> bool:
    """True when this crash should happen: always without TIMES; else while fewer than TIMES markers exist."""
    if not times:
        return True
    for attempt in range(int(times[0])):
        try:
            marker.with_name(f"{marker.name}.{attempt}").touch(exist_ok=False)
            return True
        except FileExistsError:
            continue
    return False
