"""The serving engine: the decoding pool (:mod:`avlm.serving.decoding`) and one thread that generates requests in
batches.

Notation: b requests in a batch.

1. ``decode``: a decoding thread fetches and prepares the request's media, as ``avlm ask`` does.
2. ``submit``: the request joins the generation queue. The generating thread takes the first request waiting, lets
   others join for up to ``batch_wait_ms`` (or takes those already queued), up to ``max_batch_size``, and runs
   ``avlm.inference.runner.generate_texts`` (left-padded collation, greedy unless sampling) once per group of
   requests with the same sampling settings (all greedy requests form one group; a seeded request is alone).
   A :class:`avlm.serving.rows.RowTracker` ends each row at its own ``max_tokens``, EOS or stop string and streams
   its text, so a batched greedy answer is the answer the request would get alone.
3. Each request hears of its end (or its text, streaming) through an asyncio queue of events: ``("delta", str)``,
   ``("done", RowOutcome)`` or ``("error", str)``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import StoppingCriteriaList

from avlm.api import AVLM
from avlm.inference.runner import default_num_workers, generate_texts
from avlm.resources import usable_cores
from avlm.serving.content import Conversation
from avlm.serving.decoding import Decoded, Decoder, pin_torch_threads
from avlm.serving.errors import APIError
from avlm.serving.rows import RowOutcome, RowSpec, RowTracker
from avlm.serving.schema import Generation, MediaOptions
from avlm.serving.settings import ServeSettings

logger = logging.getLogger("avlm.serving")


class Job:
    """One request in the generation queue. Thread-safe: the generating thread posts events to the request's loop."""

    def __init__(self, decoded: Decoded, generation: Generation, stream: bool,
                 finished: Callable[[], None]) -> None:
        self.decoded = decoded
        self.generation = generation
        self.stream = stream
        self.cancelled = False
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._finished = finished

    def row_spec(self, eos_token_ids: frozenset[int]) -> RowSpec:
        return RowSpec(self.generation.max_tokens, self._done, self._delta if self.stream else None,
                       self.generation.stop, frozenset() if self.generation.ignore_eos else eos_token_ids,
                       lambda: self.cancelled)

    def fail(self, message: str) -> None:
        self._post(("error", message))
        self._finished()

    def _done(self, outcome: RowOutcome) -> None:
        self._post(("done", outcome))
        self._finished()

    def _delta(self, text: str) -> None:
        self._post(("delta", text))

    def _post(self, event: tuple[str, Any]) -> None:
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: the server is gone, nobody waits for this
            pass


class Engine:
    """Decoding pool + batching generation thread over one loaded model (see the module docstring)."""

    def __init__(self, model: AVLM, settings: ServeSettings) -> None:
        self.model = model
        self.settings = settings
        workers = settings.decode_workers or max(1, default_num_workers())
        cpu = model.device.type == "cpu"
        self.threads = settings.threads or (max(1, usable_cores() - workers) if cpu else None)
        eos = model.model.generation_config.eos_token_id
        self.eos_token_ids = frozenset([] if eos is None else [eos] if isinstance(eos, int) else eos)
        self._scratch = tempfile.mkdtemp(prefix="avlm-serve-")
        self.decoder = Decoder(model, settings, workers, self._scratch)
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight = 0
        self.generate_calls = 0
        """``generate`` calls so far (``/health``: requests_generated / generate_calls is the mean batch size)."""
        self.requests_generated = 0
        self._thread: threading.Thread | None = None

    @property
    def in_flight(self) -> int:
        """Requests admitted and not finished (decoding, queued or generating)."""
        return self._in_flight

    def start(self) -> None:
        """Start the decoding threads (one torch thread each), then the generating thread."""
        self.decoder.start()
        self._thread = threading.Thread(target=self._generate_forever, name="avlm-generate")
        self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then stop the threads and remove the scratch folder."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        self.decoder.shutdown()
        shutil.rmtree(self._scratch, ignore_errors=True)

    def admit(self) -> None:
        """Count a new request in, or refuse it with a 503 when ``max_queued`` are in flight."""
        with self._lock:
            if self._in_flight >= self.settings.max_queued:
                raise APIError(503, f"the server is busy ({self._in_flight} requests in flight, the limit of "
                                    "--max-queued); retry shortly", code="server_busy")
            self._in_flight += 1

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    async def decode(self, conversation: Conversation, options: MediaOptions, max_tokens: int) -> Decoded:
        """The request's media, decoded by the pool (:meth:`Decoder.decode`)."""
        return await self.decoder.decode(conversation, options, max_tokens)

    def submit(self, decoded: Decoded, generation: Generation, stream: bool) -> Job:
        """Queue a decoded request for generation; call from the event loop. The job releases its admission."""
        job = Job(decoded, generation, stream, self.release)
        self._queue.put(job)
        return job

    def _generate_forever(self) -> None:
        if self.threads is not None:
            pin_torch_threads(self.threads)
        while (batch := self._collect()) is not None:
            groups: dict[tuple[Any, ...], list[Job]] = {}
            for job in batch:
                groups.setdefault(job.generation.batch_key(), []).append(job)
            for jobs in groups.values():
                self._generate(jobs)

    def _collect(self) -> list[Job] | None:
        """The next batch: the first job waiting, then whatever joins within ``batch_wait_ms``; None: stop."""
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.settings.batch_wait_ms / 1000
        while len(batch) < self.settings.max_batch_size:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop after this batch
                break
            batch.append(job)
        return batch

    def _generate(self, jobs: list[Job]) -> None:
        self.generate_calls += 1
        self.requests_generated += len(jobs)
        generation = jobs[0].generation
        tracker = RowTracker(self.model.processor.tokenizer, [job.row_spec(self.eos_token_ids) for job in jobs])
        kwargs = {"max_new_tokens": max(job.generation.max_tokens for job in jobs), "eos_token_id": None,
                  "stopping_criteria": StoppingCriteriaList([tracker]), **generation.generate_kwargs()}
        try:
            if generation.seed is not None:
                torch.manual_seed(generation.seed)
            generate_texts(self.model.model, self.model.processor, [job.decoded.prepared.sample for job in jobs],
                           kwargs)
            tracker.finish()
        except Exception as error:  # one failed batch (e.g. out of memory) must not stop the server
            logger.exception("generate failed for a batch of %d requests", len(jobs))
            tracker.fail(f"generation failed: {type(error).__name__}: {error}", [job.fail for job in jobs])
