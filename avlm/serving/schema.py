"""The body of ``POST /v1/chat/completions`` (``ChatRequest``) and the generation settings it asks for.

Fields follow OpenAI's chat API and vLLM's extras (``mm_processor_kwargs``, ``ignore_eos``); an unknown field is a
400 that lists the supported ones, so nothing a client asks for is dropped silently. The messages themselves are
read by :mod:`avlm.serving.content`.

Decoding is greedy unless ``temperature`` > 0 (as ``avlm ask`` without ``--do-sample``); ``top_p`` acts only when
sampling, ``seed`` only when sampling (a seeded request is generated in a batch of its own, so it is reproducible).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from avlm.serving.errors import APIError, bad_request
from avlm.serving.settings import ServeSettings

MAX_STOP_STRINGS = 4  # as OpenAI


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool = False
    """Send a last chunk with ``usage`` (and empty ``choices``) before ``[DONE]``."""


class MediaOptions(_Strict):
    """``mm_processor_kwargs``: per-request media settings, named as vLLM names them."""

    num_frames: int | None = Field(None, ge=1)
    """Frames sampled from the video (default: the model's)."""
    fps: float | None = Field(None, gt=0)
    """Sample frames at this rate instead, at most ``num_frames``."""
    use_audio_in_video: bool = True
    """Give the video's own soundtrack to the model (when the request has no separate audio part)."""


class ChatRequest(_Strict):
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    mm_processor_kwargs: MediaOptions = Field(default_factory=MediaOptions)
    ignore_eos: bool = False
    user: str | None = None


@dataclass(frozen=True)
class Generation:
    """What one request asks of ``generate``: per-row limits and the batch-wide sampling settings."""

    max_tokens: int
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    temperature: float | None = None
    """None: greedy."""
    top_p: float | None = None
    seed: int | None = None

    @property
    def sampling(self) -> bool:
        return self.temperature is not None

    def batch_key(self) -> tuple[Any, ...]:
        """Requests with equal keys can share a ``generate`` call: all greedy ones; sampled ones with the same
        temperature and top_p; a seeded one only with itself (the key is unique)."""
        if not self.sampling:
            return ("greedy",)
        return ("sample", self.temperature, self.top_p) if self.seed is None else ("seeded", id(self))

    def generate_kwargs(self) -> dict[str, Any]:
        """The batch-wide ``generate`` settings (``avlm.inference.runner.greedy_unless_sampling`` turns the model's
        own sampling defaults off when greedy)."""
        if not self.sampling:
            return {}
        top_p = {} if self.top_p is None else {"top_p": self.top_p}
        return {"do_sample": True, "temperature": self.temperature, **top_p}


def parse_request(body: bytes) -> ChatRequest:
    """Bytes -> ``ChatRequest``; malformed JSON, a wrong type or an unknown field is a 400 saying which."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_request(f"the request body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as error:
        raise _validation_error(error) from None


def generation_settings(request: ChatRequest, settings: ServeSettings) -> Generation:
    """The request's :class:`Generation`; checks ``n``, the token limit and ``stop``."""
    if request.n != 1:
        raise bad_request(f"n={request.n} is not supported: this server returns one choice per request; send "
                          f"{request.n} requests instead (with temperature > 0, or greedy answers are all the same)",
                          "n", "unsupported_n")
    asked = {name: value for name, value in (("max_completion_tokens", request.max_completion_tokens),
                                             ("max_tokens", request.max_tokens)) if value is not None}
    if len(set(asked.values())) > 1:
        raise bad_request(f"max_tokens={request.max_tokens} and max_completion_tokens={request.max_completion_tokens} "
                          "differ; give one of them", "max_completion_tokens")
    max_tokens = next(iter(asked.values()), settings.max_tokens)
    if max_tokens > settings.max_tokens:
        name = next(iter(asked))
        raise bad_request(f"{name}={max_tokens} is above this server's limit of {settings.max_tokens} "
                          "(avlm serve --max-tokens)", name)
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    if len(stop) > MAX_STOP_STRINGS or not all(stop):
        raise bad_request(f"stop must be up to {MAX_STOP_STRINGS} non-empty strings, got {list(stop)}", "stop")
    sampling = request.temperature is not None and request.temperature > 0
    return Generation(max_tokens, stop, request.ignore_eos, request.temperature if sampling else None,
                      request.top_p if sampling else None, request.seed if sampling else None)


def _validation_error(error: ValidationError) -> APIError:
    """The first problem of a pydantic error as one plain sentence, with the field as ``param``."""
    first = error.errors()[0]
    where = _path(first["loc"])
    if first["type"] == "extra_forbidden":
        known = list(ChatRequest.model_fields) if "." not in where else _known_fields(first["loc"])
        return bad_request(f"unknown field {where!r}; supported fields: {', '.join(known)}", where, "unknown_field")
    if first["type"] == "missing":
        return bad_request(f"missing required field {where!r}", where)
    value = json.dumps(first.get("input"), default=str)[:80]
    return bad_request(f"{where}: {first['msg']} (got {value})", where)


def _known_fields(loc: tuple[Any, ...]) -> list[str]:
    models = {"mm_processor_kwargs": MediaOptions, "stream_options": StreamOptions}
    return list(models[loc[0]].model_fields) if loc[0] in models else []


def _path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
