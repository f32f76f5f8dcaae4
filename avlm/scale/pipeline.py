"""``answer``: a Ray Dataset of requests -> a Ray Dataset of results, through the decode stage and the model stage.

Example (Parquet in, Parquet out; the cluster is whatever ``ray.init`` joined)::

    import ray
    from avlm.scale import ScaleConfig, answer

    requests = ray.data.read_parquet("clips.parquet")          # columns: video (+ question, audio, any ids)
    config = ScaleConfig(model="runs/av7b", concurrency=8, num_gpus=1, batch_size=16, generate={"max_new_tokens": 128})
    answer(requests, config).write_parquet("captions/")        # the same columns + text, error, num_frames, ...

The dataset is lazy: nothing runs until it is consumed (``write_parquet``, ``iter_batches``, ``take_all``). Rows come
out in the order batches finish. See :mod:`avlm.scale.rows` for the columns.
"""

from __future__ import annotations

import ray
import ray.data

from avlm.scale.config import ScaleConfig
from avlm.scale.crashes import CrashLedger
from avlm.scale.decode import decode_batch
from avlm.scale.replica import ModelReplica

DECODE_TASKS_PER_WORKER = 1000
"""A decode worker process is replaced after this many tasks (Ray's ``max_calls``): native decoders can leak memory
over millions of files. Setting it also keeps Ray Data from fusing the decode tasks into the replicas' actors (it
fuses a task stage into the next actor stage when their resource requests match), which would serialise decoding and
generation again."""


def answer(requests: ray.data.Dataset, config: ScaleConfig) -> ray.data.Dataset:
    """Decode, preprocess and answer every row of ``requests``; one result row per request row.

    Args:
        requests: rows with a ``video`` column and optionally ``question``, ``audio`` and any columns to carry.
        config: replicas, GPUs, batch sizes, media and generation settings.

    Returns:
        A lazy dataset: the input columns plus ``text``, ``error``, ``num_frames``, ``has_audio``, ``seconds``. A clip
        that cannot be read (or keeps killing its decode worker) has ``error`` set and a null ``text``.
    """
    return model_stage(decode_stage(requests, config), config)


def decode_stage(requests: ray.data.Dataset, config: ScaleConfig) -> ray.data.Dataset:
    """The decode stage alone: request rows -> decoded rows (:mod:`avlm.scale.decode`), in blocks of
    ``decode_batch_size`` requests, one task (one CPU) per block."""
    rows = config.decode_batch_size or config.model_batch_size
    return requests.repartition(target_num_rows_per_block=rows).map_batches(
        decode_batch, fn_kwargs={"config": config, "ledger": CrashLedger.remote()}, batch_size=None,
        batch_format="pyarrow", compute=ray.data.TaskPoolStrategy(size=config.decode_concurrency), num_cpus=1,
        max_calls=DECODE_TASKS_PER_WORKER)


def model_stage(decoded: ray.data.Dataset, config: ScaleConfig) -> ray.data.Dataset:
    """The model stage alone: decoded rows -> result rows, ``concurrency`` replicas (:mod:`avlm.scale.replica`)."""
    return decoded.map_batches(
        ModelReplica, fn_constructor_kwargs={"config": config}, batch_size=config.model_batch_size,
        batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=config.concurrency),
        num_cpus=config.num_cpus, num_gpus=config.num_gpus or None)
