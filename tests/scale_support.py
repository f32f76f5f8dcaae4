"""Helpers of the Ray tests (tests/test_scale*.py): one local Ray cluster per test session, and Ray-free baselines.

The Ray tests are marked ``xdist_group("ray")`` and pytest runs with ``--dist loadgroup`` (pyproject), so under
``pytest -n 2`` they all run in one xdist worker, which starts one cluster of 2 CPUs for all of them. The cluster is
started by whichever Ray test needs it first and stopped when the session ends.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

VARIABLE = "AVLM_TEST_FAULTS"  # avlm.scale._faults.VARIABLE (not imported: avlm.scale needs Ray, maybe absent here)

RAY_OPTIONS = ["--max-new-tokens", "4", "--batch-size", "2"]
"""Generation and batching of every Ray run in the tests (small: the model stage then costs little)."""


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory) -> Iterator[str]:
    """A local Ray cluster with 2 CPUs, joined by this process; yields its address for subprocess drivers. Its
    processes inherit ``AVLM_TEST_FAULTS`` (the fault file of :func:`faults`, empty outside a fault test)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        os.environ[VARIABLE] = str(tmp_path_factory.mktemp("ray-faults") / "faults")
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def faults(ray_cluster) -> Iterator[Callable[[str], Path]]:
    """``faults("crash:decode:clip02.mp4,sleep:model:0.4")`` sets the faults the cluster's stages inject
    (:mod:`avlm.scale._faults`) and returns the folder of the crash markers; cleared after the test."""
    spec = Path(os.environ[VARIABLE])

    def set_faults(entries: str) -> Path:
        spec.write_text(entries)
        return spec.parent

    yield set_faults
    for path in spec.parent.iterdir():
        path.unlink()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_key(path: Path, key: str = "video") -> dict[str, dict]:
    """The records of a results file by key; fails when a key appears twice."""
    records = lines(path)
    keyed = {str(record[key]): record for record in records}
    assert len(keyed) == len(records), f"{path} holds a key twice"
    return keyed
