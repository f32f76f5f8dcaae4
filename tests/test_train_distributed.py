"""Two CPU processes (torchrun, gloo, DDP) train exactly like one process with the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import yaml
from train_support import read_losses, tiny_data_dir, tiny_model_dir, tiny_recipe

from avlm.recipe_config import dump_config
from avlm.train.loop import train


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path_factory, tmp_path):
    model_dir, data = tiny_model_dir(tmp_path_factory), tiny_data_dir(tmp_path_factory)
    common = [f"model={model_dir}", "train.max_steps=4", "train.lr=1e-2", "lora.dropout=0", "train.save_every=2",
              "data.drop_last=true"]  # one process does not wrap the last partial batch around; several do
    single = train(tiny_recipe({}, data, tmp_path / "one", *common, "train.batch_size=4"), say=lambda _: None).losses
    recipe = tiny_recipe({}, data, tmp_path / "two", *common, "train.batch_size=2")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(dump_config(recipe)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(free_port()), "-m", "avlm", "train", str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_losses(tmp_path / "two") == pytest.approx(single, abs=1e-5)
    assert (tmp_path / "two" / "final" / "config.json").is_file()
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints" / "step-000004").glob("rng-*")) == [
        "rng-rank0.pt", "rng-rank1.pt"]
