"""Same-seed training runs are bit-identical on CPU (issue #18): the demo's own recipe (``av_joint`` with
``DemoConfig.recipe_overrides``: a DataLoader worker, the media cache, a checkpoint every few steps, ``resume=auto``)
gives the same loss at every step, bit for bit, in this process and in a fresh one (another hash seed, another
DataLoader worker), and so does a run stopped at a checkpoint and resumed. Resuming a checkpoint written with other
settings is refused (an ``avlm demo`` rerun with other settings into the same folder would otherwise continue the old
run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avlm.demo import RECIPE, DemoConfig
from avlm.synth import SynthConfig, generate
from avlm.train.loop import train
from avlm.train.recipe import load_recipe

STEPS = 8
# One thread in both processes: the intra-op thread count is part of the arithmetic (docs/training.md).
CHILD = """
import json, sys, torch
from avlm.train.loop import train
from avlm.train.recipe import load_recipe
torch.set_num_threads(1)
result = train(load_recipe(sys.argv[1], sys.argv[3:]), say=lambda _: None, stop_at=int(sys.argv[2]))
print(json.dumps(result.losses))
"""


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("avsynth") / "data"
    generate(data, SynthConfig(n_train=6, n_test=1, seed=0))
    return data


def demo_overrides(out: Path, data: Path, steps: int, *extra: str) -> list[str]:
    """``avlm demo``'s recipe overrides for ``out`` (its data linked in), at batch 8."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "data").exists():
        (out / "data").symlink_to(data)
    return DemoConfig(out=out, steps=steps, batch_size=8, overrides=list(extra)).recipe_overrides()


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_demo_recipe_runs_are_bit_identical_across_processes_checkpoints_and_resume(demo_data, tmp_path,
                                                                                    one_thread) -> None:
    first = train(load_recipe(RECIPE, demo_overrides(tmp_path / "first", demo_data, STEPS)), say=lambda _: None)
    assert len(first.losses) == STEPS and first.losses[-1] < first.losses[0]  # checkpoints at steps 2, 4, 6, 8
    # another process (its own hash seed, allocations and DataLoader worker) stops after a checkpoint at step 3
    split = tmp_path / "split"
    command = [sys.executable, "-c", CHILD, str(RECIPE), "3", *demo_overrides(split, demo_data, STEPS)]
    child = subprocess.run(command, check=True, capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": "random"})
    assert json.loads(child.stdout.strip().splitlines()[-1]) == first.losses[:3]  # bit for bit
    resumed = train(load_recipe(RECIPE, demo_overrides(split, demo_data, STEPS)), say=lambda _: None)  # resume=auto
    assert resumed.losses == first.losses[3:]


def test_resume_refuses_a_checkpoint_written_with_other_settings(demo_data, tmp_path) -> None:
    train(load_recipe(RECIPE, demo_overrides(tmp_path, demo_data, 2, "data.num_workers=0")), say=lambda _: None)
    # `avlm demo --steps 2` then `avlm demo --steps 4` into the same folder: the finished 2-step run (its schedule,
    # its model) must not be continued as if it were the first half of a 4-step run
    longer = demo_overrides(tmp_path, demo_data, 4, "data.num_workers=0")
    with pytest.raises(ValueError, match=r"other settings: train\.max_steps \(saved 2, now 4\)"):
        train(load_recipe(RECIPE, longer), say=lambda _: None)
    # what may change on resume: how often it logs and saves, how the data is loaded
    same = demo_overrides(tmp_path, demo_data, 2, "data.num_workers=1", "train.log_every=1")
    assert train(load_recipe(RECIPE, same), say=lambda _: None).final is not None
