"""The model stage: an actor pool of model replicas, each loading the model once.

``ModelReplica`` is the callable class given to Ray Data's ``map_batches`` with an ``ActorPoolStrategy``: Ray starts
``concurrency`` actors, each with ``num_gpus`` GPUs and ``num_cpus`` CPUs, and feeds them batches of ``batch_size``
decoded rows. Each batch goes through :func:`avlm.inference.runner.generate_texts`, the single-process runner's own
collate + ``generate`` + decode (greedy unless sampling is asked for), so the answers are the same. Rows that arrived
as errors pass through. A replica that dies is restarted by Ray and its batch is redone (Ray Data's actor pools
restart actors and retry their tasks without limit).
"""

from __future__ import annotations

import pickle

import pyarrow as pa
import torch

from avlm.api import load
from avlm.inference.runner import generate_texts
from avlm.scale._faults import maybe_crash
from avlm.scale.config import ScaleConfig
from avlm.scale.decode import SAMPLE_COLUMN
from avlm.scale.rows import RESULT_COLUMNS


class ModelReplica:
    """One model on one device (``config.replica_device``); called with a batch of decoded rows."""

    def __init__(self, config: ScaleConfig) -> None:
        if torch.device(config.replica_device).type == "cpu":
            torch.set_num_threads(max(1, int(config.num_cpus)))  # the CPUs Ray reserved for this replica
        self.config = config
        self.model = load(config.model, device=config.replica_device, dtype=config.dtype)
        if config.seed is not None:
            torch.manual_seed(config.seed)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """``batch`` (decoded rows) with ``text`` added and ``sample`` dropped; result columns last."""
        blobs = batch.column(SAMPLE_COLUMN).to_pylist()
        todo = [i for i, blob in enumerate(blobs) if blob is not None]
        maybe_crash("model", [path for name in ("video", "audio") if name in batch.column_names
                              for path in batch.column(name).to_pylist()])
        texts: list[str | None] = [None] * len(blobs)
        if todo:
            samples = [pickle.loads(blobs[i]) for i in todo]
            answers = generate_texts(self.model.model, self.model.processor, samples, self.config.generate_kwargs)
            for i, text in zip(todo, answers, strict=True):
                texts[i] = text
        batch = batch.drop_columns([SAMPLE_COLUMN]).append_column("text", pa.array(texts, type=pa.string()))
        carried = [name for name in batch.column_names if name not in RESULT_COLUMNS]
        return batch.select([*carried, *RESULT_COLUMNS])

