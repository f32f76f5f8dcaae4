"""Caption and answer at cluster scale on Ray Data: ``avlm caption / ask / eval --ray`` and a Dataset -> Dataset API.

One pipeline, two pools: a **decode stage** of Ray tasks on CPU workers (read frames + audio, preprocess, tokenize)
feeds a **model stage**, an actor pool of model replicas that each load the model once and run batched ``generate``
exactly as the single-process runner does. One concept per module:

- :mod:`avlm.scale.config`: ``ScaleConfig``, the pipeline's settings (the defaults live there).
- :mod:`avlm.scale.rows`: the columns of a request row and of a result row; requests <-> rows.
- :mod:`avlm.scale.decode`: the decode stage (a Ray Data ``map_batches`` function).
- :mod:`avlm.scale.crashes`: the crash ledger that turns a file which keeps killing its decode worker into an error.
- :mod:`avlm.scale.replica`: the model stage (``ModelReplica``, a callable class for ``map_batches``).
- :mod:`avlm.scale.pipeline`: :func:`answer`, a Dataset of requests -> a Dataset of results.
- :mod:`avlm.scale.driver`: connect to a cluster and stream results into the resumable JSONL job of the CLI.
- :mod:`avlm.scale.plan`: ``--plan``, measure both stages on a sample and project a cluster's throughput.
- :mod:`avlm.scale.options`: the ``--ray`` / ``--plan`` options of the commands at run time.

Ray is an optional extra (``pip install avlm[ray]``); importing this package without it raises an ImportError that
says so. Example (Parquet in, Parquet out)::

    import ray
    from avlm.scale import ScaleConfig, answer

    requests = ray.data.read_parquet("clips.parquet")            # a "video" column of paths (+ "question"?)
    results = answer(requests, ScaleConfig(model="runs/av7b", concurrency=8, num_gpus=1, batch_size=16))
    results.write_parquet("captions/")                           # the input columns + text, error, num_frames, ...
"""

import importlib

try:
    import ray  # noqa: F401  (checked here so that every module of the package can assume it)
except ImportError as error:  # exercised in a subprocess by tests/test_scale_api.py
    raise ImportError("avlm.scale (avlm caption/ask/eval --ray, --plan) needs Ray Data; install it with: "
                      'pip install "avlm[ray]"') from error

# Loaded on first use (PEP 562), so that a Ray worker that only needs a light module of the package (the crash
# ledger actor) does not import torch and transformers.
_EXPORTS = {"ScaleConfig": "avlm.scale.config", "answer": "avlm.scale.pipeline"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'avlm.scale' has no attribute {name!r}")
