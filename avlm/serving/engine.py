"""The serving engine: a pool of threads decodes each request's media; one thread generates requests in batches.

Notation: b requests in a batch.

1. ``decode`` (a decoding thread): fetch the media (:mod:`avlm.serving.media`), then ``prepare`` it exactly as
   ``avlm ask`` does (:func:`avlm.inference.requests.prepare`: decode, preprocess, tokenize), with the request's
   ``mm_processor_kwargs`` and system prompt. Unreadable media is a 400 naming the request field. Decoders release
   the GIL, so threads decode in parallel without copying frames between processes; each thread has its own copy
   of the tokenizer (a fast tokenizer must not be used by two threads at once) and one torch thread.
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
import copy
import dataclasses
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from transformers import StoppingCriteriaList

from avlm.api import AVLM
from avlm.inference.requests import AUTO, Prepared, Request, prepare
from avlm.inference.runner import default_num_workers, generate_texts, usable_cores
from avlm.processing.processor import Processor
from avlm.serving.content import Conversation
from avlm.serving.errors import APIError, bad_request
from avlm.serving.media import LocalMedia, MediaResolver
from avlm.serving.rows import RowOutcome, RowSpec, RowTracker
from avlm.serving.schema import Generation, MediaOptions
from avlm.serving.settings import ServeSettings

logger = logging.getLogger("avlm.serving")


@dataclass
class Decoded:
    """A request whose media is decoded: the model sample and what ``usage.prompt_tokens`` reports."""

    prepared: Prepared
    prompt_tokens: int
    """Text tokens plus the media tokens that replace the placeholders."""


class Job:
    """One request in the generation queue. Thread-safe: the generating thread posts events to the request's loop."""

    def __init__(self, decoded: Decoded, generation: Generation, stream: bool, finished: Any) -> None:
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
        self.workers = settings.decode_workers or max(1, default_num_workers())
        cpu = model.device.type == "cpu"
        self.threads = settings.threads or (max(1, usable_cores() - self.workers) if cpu else None)
        config = model.model.generation_config
        eos = config.eos_token_id
        self.eos_token_ids = frozenset([] if eos is None else [eos] if isinstance(eos, int) else eos)
        # not every Hugging Face LLM config names its context length
        self.context_length = getattr(model.model.llm.config, "max_position_embeddings", None)
        self._placeholders = torch.tensor(sorted(set(model.processor.placeholder_token_ids.values())))
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._scratch = tempfile.mkdtemp(prefix="avlm-serve-")
        self.resolver = MediaResolver(settings, self._scratch)
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    @property
    def in_flight(self) -> int:
        """Requests admitted and not finished (decoding, queued or generating)."""
        return self._in_flight

    def start(self) -> None:
        """Start the decoding threads (one torch thread each) and then the generating thread."""
        ready = threading.Barrier(self.workers + 1)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="avlm-decode")
        for _ in range(self.workers):
            self._pool.submit(_start_decoding_thread, ready)
        ready.wait()
        self._thread = threading.Thread(target=self._generate_forever, name="avlm-generate")
        self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then stop the threads and remove the scratch folder."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
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
        """Fetch and decode the request's media in the pool; a 4xx :class:`APIError` when it cannot be used."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._decode, conversation, options, max_tokens)

    def submit(self, decoded: Decoded, generation: Generation, stream: bool) -> Job:
        """Queue a decoded request for generation; call from the event loop. The job releases its admission."""
        job = Job(decoded, generation, stream, self.release)
        self._queue.put(job)
        return job

    def _decode(self, conversation: Conversation, options: MediaOptions, max_tokens: int) -> Decoded:
        fetched: list[tuple[LocalMedia, str]] = []
        try:
            for ref in (conversation.visual, conversation.audio):
                if ref is not None:
                    fetched.append((self.resolver.resolve(ref), ref.param))
            visual = fetched[0][0].path if conversation.visual is not None else None
            own_sound = options.use_audio_in_video and conversation.visual is not None and \
                conversation.visual.kind == "video"
            audio = fetched[-1][0].path if conversation.audio is not None else AUTO if own_sound else None
            processor = self._request_processor(conversation.system, options)
            item = _prepare(processor, Request(conversation.question, visual, audio))
        finally:
            for media, _ in fetched:
                if media.scratch:
                    os.unlink(media.path)
        if item.error is not None:
            raise _media_error(item.error, fetched)
        decoded = Decoded(item, self._prompt_tokens(item))
        if self.context_length is not None and decoded.prompt_tokens + max_tokens > self.context_length:
            raise bad_request(f"the prompt takes {decoded.prompt_tokens} tokens (media included) and max_tokens is "
                              f"{max_tokens}: more than the model's context of {self.context_length}; ask for fewer "
                              "frames (mm_processor_kwargs.num_frames) or fewer tokens", "max_tokens",
                              "context_length_exceeded")
        return decoded

    def _request_processor(self, system: str | None, options: MediaOptions) -> Processor:
        """This thread's processor, with the request's frame sampling and system prompt."""
        if not hasattr(self._local, "processor"):  # first request of this decoding thread
            own = copy.copy(self.model.processor)
            own.tokenizer = copy.deepcopy(own.tokenizer)
            self._local.processor = own
        processor = self._local.processor
        changes = {name: value for name, value in (("num_frames", options.num_frames), ("fps", options.fps))
                   if value is not None}
        if not changes and system is None:
            return processor
        processor = copy.copy(processor)
        processor.config = dataclasses.replace(processor.config, **changes)
        if system is not None:
            processor.system_prompt = system
        return processor

    def _prompt_tokens(self, item: Prepared) -> int:
        sample = item.sample
        text = int((~torch.isin(sample["input_ids"], self._placeholders)).sum())
        video, audio = sample.get("video"), sample.get("audio")
        media = self.model.model.num_media_tokens(None if video is None else len(video),
                                                  None if audio is None else len(audio))
        return text + sum(media.values())

    def _generate_forever(self) -> None:
        if self.threads is not None:
            _pin_torch_threads(self.threads)
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


def _prepare(processor: Processor, request: Request) -> Prepared:
    """``prepare`` (unreadable media -> ``error``), with any other decoder failure (a Pillow decompression bomb, a
    decoder's own exception type) also turned into an error instead of a 500."""
    try:
        return prepare(processor, request, 0)
    except Exception as error:  # the decoders' boundary: whatever a file makes them raise is the file's fault
        logger.warning("media could not be prepared", exc_info=True)
        return Prepared(0, error=f"could not read the media: {type(error).__name__}: {error}")


def _media_error(message: str, fetched: list[tuple[LocalMedia, str]]) -> APIError:
    """A 400 for unreadable media, naming it as the client did (never a server path), with its field as ``param``."""
    param = None
    for media, where in fetched:
        if media.path in message:
            message, param = message.replace(media.path, media.label), where
    return bad_request(message if param is None else f"{param}: {message}", param, "invalid_media")


def _start_decoding_thread(ready: threading.Barrier) -> None:
    _pin_torch_threads(1)
    ready.wait()


def _pin_torch_threads(count: int) -> None:
    """Give the calling thread ``count`` torch (OpenMP) threads. Torch reads the process-wide setting into a thread
    the first time that thread runs a parallel operation, so a small parallel sum fixes it now and the setting of
    the other threads cannot change it later."""
    torch.set_num_threads(count)
    torch.ones(1 << 18).sum()
    torch.set_num_threads(count)
