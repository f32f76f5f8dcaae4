"""Test-only fault injection: make a stage die in native style (``os._exit``) on a given file.

``AVLM_TEST_CRASH_ON`` holds comma-separated ``STAGE:NAME[:TIMES]`` entries: the ``decode`` or ``model`` stage exits
its process when it reaches a request whose video (or audio) file is named NAME, every time or only the first TIMES
times (counted with marker files in ``AVLM_TEST_CRASH_DIR``, shared by the processes of one machine). The driver
passes both variables to the stages' workers (:func:`fault_env`); unset, nothing happens.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

VARIABLES = ("AVLM_TEST_CRASH_ON", "AVLM_TEST_CRASH_DIR")


def fault_env() -> dict[str, str]:
    """The fault variables set in this process, for the workers' ``runtime_env`` (empty when none is set)."""
    return {name: os.environ[name] for name in VARIABLES if name in os.environ}


def maybe_crash(stage: str, paths: Iterable[object]) -> None:
    """Exit this process at once (no cleanup, as a segfault would) when an entry names ``stage`` and one of
    ``paths``, and its count is not used up."""
    spec = os.environ.get("AVLM_TEST_CRASH_ON")
    if not spec:
        return
    names = {Path(os.fspath(path)).name for path in paths if isinstance(path, (str, os.PathLike))}
    for entry in spec.split(","):
        entry_stage, name, *times = entry.split(":")
        if entry_stage == stage and name in names and _count_one(f"{stage}-{name}", times):
            os._exit(70)


def _count_one(label: str, times: list[str]) -> bool:
    """True when this crash should happen: always without TIMES; else while fewer than TIMES markers exist."""
    if not times:
        return True
    folder = Path(os.environ["AVLM_TEST_CRASH_DIR"])
    for attempt in range(int(times[0])):
        try:
            (folder / f"{label}.{attempt}").touch(exist_ok=False)
            return True
        except FileExistsError:
            continue
    return False
