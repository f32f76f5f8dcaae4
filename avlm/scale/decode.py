"""The decode stage: request rows -> decoded, preprocessed and tokenized samples, on CPU workers.

Runs as Ray Data ``map_batches`` tasks (one CPU each): for each row, :func:`avlm.inference.requests.prepare` (the
single-process runner's own preparation) reads the frames and audio, preprocesses them and tokenizes the prompt; the
sample travels to the model stage pickled in the ``sample`` column. A request that cannot be read becomes an error row
(the runner's message), as does any other exception of one request, so a bad file never fails a task. A request whose
decoding kills the worker is retried by Ray on a new worker, at most ``max_retries`` times (:mod:`avlm.scale.crashes`).
Each worker process loads the processor once and decodes with one torch thread (FFmpeg threads do the rest).

Window requests (``start``/``end``, ``avlm caption --segment --ray``) arrive in video and time order, so a block holds
consecutive windows of one file: a task reads them through one set of open window readers
(:class:`avlm.inference.window_media.WindowSources`), one seek-based pass over the file per block instead of
reopening and re-indexing it per window.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import pickle
from typing import Any

import pyarrow as pa
import ray
import torch

from avlm.assembly import load_processor
from avlm.eval.harness import ablate_request
from avlm.inference.requests import Prepared, Request, cast_media, prepare
from avlm.inference.window_media import WindowSources
from avlm.processing.processor import Processor
from avlm.scale._faults import maybe_crash
from avlm.scale.config import ScaleConfig
from avlm.scale.rows import RESULT_COLUMNS, request_of

DECODED_COLUMNS = {name: RESULT_COLUMNS[name] for name in ("error", "num_frames", "has_audio", "seconds")}
SAMPLE_COLUMN = "sample"
"""The pickled sample (``Prepared.sample``: token ids, frames ``[t, 3, S, S]``, audio features ``[f, m]``); null on
error. Dropped by the model stage."""


def decode_batch(batch: pa.Table, config: ScaleConfig, ledger: ray.actor.ActorHandle) -> pa.Table:
    """``map_batches`` function of the decode stage: ``batch`` plus :data:`DECODED_COLUMNS` and ``sample``."""
    processor = _processor(config.model, tuple(sorted(config.media_overrides.items())))
    with contextlib.closing(WindowSources(processor.config)) as sources:
        rows = [_decode_row(row, config, processor, ledger, sources) for row in batch.to_pylist()]
    for name, kind in DECODED_COLUMNS.items():
        batch = batch.append_column(name, pa.array([getattr(item, name) for item in rows], type=kind))
    samples = [None if item.sample is None else pickle.dumps(item.sample, protocol=5) for item in rows]
    return batch.append_column(SAMPLE_COLUMN, pa.array(samples, type=pa.large_binary()))


def decode_request(processor: Processor, request: Request, config: ScaleConfig,
                   sources: WindowSources | None = None) -> Prepared:
    """One request as the decode stage prepares it (ablation, decoding, media cast); every failure is an error.
    ``sources``: open window readers shared by the windows of one block (None: a window opens its own)."""
    try:
        request = ablate_request(request, config.ablate, processor.config.num_frames)
    except (ValueError, OSError) as error:  # the audio length of an ablated file cannot be read: as `avlm eval`
        return Prepared(0, error=str(error))
    try:
        return cast_media(prepare(processor, request, 0, sources=sources), config.media_dtype)
    except Exception as error:  # noqa: BLE001 - one unreadable request must not fail the task of its neighbours
        return Prepared(0, error=f"{_name(request)}: {type(error).__name__}: {error}")


def _decode_row(row: dict[str, Any], config: ScaleConfig, processor: Processor,
                ledger: ray.actor.ActorHandle, sources: WindowSources) -> Prepared:
    request = request_of(row, config)
    key = json.dumps(row, sort_keys=True, default=str)
    crashes = ray.get(ledger.start.remote(key))
    if crashes > config.max_retries:
        item = Prepared(0, error=f"{_name(request)}: decoding it killed the worker process {crashes} times (a crash "
                                 f"in native code, e.g. the video decoder); given up after {config.max_retries} "
                                 "retries")
    else:
        maybe_crash("decode", (request.video, request.audio))
        item = decode_request(processor, request, config, sources)
    ray.get(ledger.finish.remote(key))
    return item


@functools.lru_cache(maxsize=2)
def _processor(model: str, overrides: tuple[tuple[str, Any], ...]) -> Processor:
    """The model's processor with the media overrides, loaded once per worker process (one torch thread: decoding
    workers must not oversubscribe the CPUs they were given)."""
    torch.set_num_threads(1)
    processor = load_processor(model)
    if overrides:
        processor.config = dataclasses.replace(processor.config, **dict(overrides))
    return processor


def _name(request: Request) -> str:
    source = request.video if request.video is not None else request.audio
    return str(source)
