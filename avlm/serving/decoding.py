"""The decoding side of the server: a pool of threads that fetch each request's media and prepare the model sample.

Notation: L prompt tokens, t frames, f audio feature frames.

A request is prepared exactly as ``avlm ask`` prepares one (:func:`avlm.inference.requests.prepare`: decode,
preprocess, tokenize), with the request's ``mm_processor_kwargs`` and system prompt. Unreadable media is a 400
naming the request field. Decoders (decord, PyAV, torch, Pillow) release the GIL, so threads decode in parallel
without pickling frames between processes; each thread has its own copy of the tokenizer (a fast tokenizer must not
be used by two threads at once) and one torch thread.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from avlm.api import AVLM
from avlm.inference.requests import AUTO, Prepared, Request, prepare
from avlm.processing.processor import Processor
from avlm.serving.content import Conversation
from avlm.serving.errors import APIError, bad_request
from avlm.serving.media import LocalMedia, MediaResolver
from avlm.serving.schema import MediaOptions
from avlm.serving.settings import ServeSettings

logger = logging.getLogger("avlm.serving")


@dataclass
class Decoded:
    """A request whose media is decoded: the model sample and what ``usage.prompt_tokens`` reports."""

    prepared: Prepared
    prompt_tokens: int
    """Text tokens plus the media tokens that replace the placeholders."""


class Decoder:
    """``workers`` threads turning a request's conversation into a :class:`Decoded` (see the module docstring)."""

    def __init__(self, model: AVLM, settings: ServeSettings, workers: int, scratch_dir: str) -> None:
        self.model = model
        self.workers = workers
        self.resolver = MediaResolver(settings, scratch_dir)
        # not every Hugging Face LLM config names its context length
        self.context_length = getattr(model.model.llm.config, "max_position_embeddings", None)
        self._placeholders = torch.tensor(sorted(set(model.processor.placeholder_token_ids.values())))
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start every thread now, each with one torch thread."""
        ready = threading.Barrier(self.workers + 1)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="avlm-decode")
        for _ in range(self.workers):
            self._pool.submit(_start_decoding_thread, ready)
        ready.wait()

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    async def decode(self, conversation: Conversation, options: MediaOptions, max_tokens: int) -> Decoded:
        """Fetch and decode the request's media in the pool; a 4xx :class:`APIError` when it cannot be used."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._decode, conversation, options, max_tokens)

    def _decode(self, conversation: Conversation, options: MediaOptions, max_tokens: int) -> Decoded:
        fetched: list[tuple[LocalMedia, str]] = []
        try:
            for ref in (conversation.visual, conversation.audio):
                if ref is not None:
                    fetched.append((self.resolver.resolve(ref), ref.param))
            visual = fetched[0][0].path if conversation.visual is not None else None
            own_sound = (options.use_audio_in_video and conversation.visual is not None
                         and conversation.visual.kind == "video")
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
    pin_torch_threads(1)
    ready.wait()


def pin_torch_threads(count: int) -> None:
    """Give the calling thread ``count`` torch (OpenMP) threads. Torch reads the process-wide setting into a thread
    the first time that thread runs a parallel operation, so a small parallel sum fixes it now and the setting of
    the other threads cannot change it later."""
    torch.set_num_threads(count)
    torch.ones(1 << 18).sum()
    torch.set_num_threads(count)
