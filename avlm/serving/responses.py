"""OpenAI response objects for a finished request, and the server-sent events of a streaming one.

Both carry an extra top-level field ``media`` that says what the model actually got: ``{"num_frames", "has_audio",
"seconds"}`` (``seconds``: the span the frames cover, None for images and audio-only requests). A stream sends it in
its first chunk.

Stream layout (OpenAI's): a first chunk with ``delta: {"role": "assistant", "content": ""}``, one chunk per piece of
text, a chunk with an empty delta and the ``finish_reason``, a chunk with ``usage`` and no choices when
``stream_options.include_usage`` is set, then ``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from avlm.serving.engine import Job
from avlm.serving.errors import error_body
from avlm.serving.rows import RowOutcome


@dataclass
class Reply:
    """The identity shared by a request's response or chunks."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


def media_info(job: Job) -> dict[str, Any]:
    prepared = job.decoded.prepared
    return {"num_frames": prepared.num_frames, "has_audio": prepared.has_audio, "seconds": prepared.seconds}


def usage(job: Job, outcome: RowOutcome) -> dict[str, int]:
    prompt = job.decoded.prompt_tokens
    return {"prompt_tokens": prompt, "completion_tokens": outcome.completion_tokens,
            "total_tokens": prompt + outcome.completion_tokens}


def completion(reply: Reply, job: Job, outcome: RowOutcome) -> dict[str, Any]:
    """The ``chat.completion`` object."""
    choice = {"index": 0, "message": {"role": "assistant", "content": outcome.text}, "logprobs": None,
              "finish_reason": outcome.finish_reason}
    return {"id": reply.id, "object": "chat.completion", "created": reply.created, "model": reply.model,
            "choices": [choice], "usage": usage(job, outcome), "media": media_info(job)}


async def stream_events(reply: Reply, job: Job, include_usage: bool) -> AsyncIterator[str]:
    """The ``data: ...`` events of a streaming request (see the module docstring). A generation failure after the
    stream started is sent as an error event (the status line is already out)."""
    usage_field = {"usage": None} if include_usage else {}
    try:
        yield _event(_chunk(reply, {"role": "assistant", "content": ""}, None, usage_field, media=media_info(job)))
        while True:
            kind, value = await job.events.get()
            if kind == "delta":
                yield _event(_chunk(reply, {"content": value}, None, usage_field))
            elif kind == "error":
                yield _event(error_body(500, value))
                break
            else:
                yield _event(_chunk(reply, {}, value.finish_reason, usage_field))
                if include_usage:
                    yield _event({**_chunk(reply, {}, None, {}), "choices": [], "usage": usage(job, value)})
                break
        yield "data: [DONE]\n\n"
    finally:  # also when the client disconnects: the row then stops at the next step
        job.cancelled = True


def _chunk(reply: Reply, delta: dict[str, Any], finish_reason: str | None, extra: dict[str, Any],
           media: dict[str, Any] | None = None) -> dict[str, Any]:
    chunk = {"id": reply.id, "object": "chat.completion.chunk", "created": reply.created, "model": reply.model,
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}], **extra}
    return chunk if media is None else {**chunk, "media": media}


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
