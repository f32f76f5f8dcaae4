"""The crash ledger: which requests were being decoded when their worker process died, and how often.

Ray retries a decode task whose worker dies (a crash in native code: a segfault in a video decoder, the OOM killer),
on a new worker. A file that kills every worker it meets would be retried forever, so each decode worker notes in one
small actor when it starts and when it finishes a request; a start that was never finished is a crash. When a request
comes back with more crashes than ``max_retries`` allows, the worker writes its error row instead of decoding it, and
the job goes on. Rows that finished before the crash in the same task are not blamed: their start was closed.
"""

from __future__ import annotations

import ray


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class CrashLedger:
    """Open decode starts per request key (a restart of the ledger itself forgets them: at worst more retries)."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}

    def start(self, key: str) -> int:
        """Record a start of ``key``; returns how many earlier starts never finished (crashes)."""
        crashes = self.open.get(key, 0)
        self.open[key] = crashes + 1
        return crashes

    def finish(self, key: str) -> None:
        """``key`` was decoded (or turned into an error row): no crash."""
        self.open.pop(key, None)
