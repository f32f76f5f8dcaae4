"""The FastAPI application of ``avlm serve``: routes, the API key, OpenAI-style errors and the engine's lifetime.

Routes: ``POST /v1/chat/completions`` (JSON or, with ``stream: true``, server-sent events), ``GET /v1/models``,
``GET /health`` (open even with an API key: ``{"status": "ok", "requests_in_flight", "generate_calls",
"requests_generated"}``; the last two give the mean batch size).

Every refused request is a JSON error in OpenAI's format with a 4xx status (a 503 when ``max_queued`` requests are in
flight); only a failure of the model itself is a 500. The engine starts with the application and stops after uvicorn
has let the requests in flight finish (uvicorn's graceful shutdown on SIGTERM / Ctrl-C).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from avlm.api import AVLM
from avlm.serving.content import parse_messages
from avlm.serving.engine import Engine, Job
from avlm.serving.errors import APIError, bad_request, error_body
from avlm.serving.responses import Reply, completion, stream_events
from avlm.serving.rows import RowOutcome
from avlm.serving.schema import generation_settings, parse_request
from avlm.serving.settings import ServeSettings

logger = logging.getLogger("avlm.serving")


def create_app(model: AVLM, settings: ServeSettings) -> FastAPI:
    """The application serving ``model`` under ``settings.model_name``."""
    engine = Engine(model, settings)
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:  # uvicorn gets here after the requests in flight have finished
            await asyncio.to_thread(engine.stop)

    app = FastAPI(title="avlm serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    _add_error_handlers(app)
    authorized = [Depends(_api_key_check(settings.api_key))]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "requests_in_flight": engine.in_flight, "generate_calls": engine.generate_calls,
                "requests_generated": engine.requests_generated}

    @app.get("/v1/models", dependencies=authorized)
    async def models() -> dict[str, Any]:
        card = {"id": settings.model_name, "object": "model", "created": started, "owned_by": "avlm"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions", dependencies=authorized)
    async def chat_completions(request: Request) -> Response:
        chat = parse_request(await _read_body(request, settings.max_body_bytes))
        if chat.model != settings.model_name:
            raise APIError(404, f"model {chat.model!r} does not exist; this server serves {settings.model_name!r} "
                                "(GET /v1/models)", "model", "model_not_found")
        generation = generation_settings(chat, settings)
        conversation = parse_messages(chat.messages)
        frames = chat.mm_processor_kwargs.num_frames
        if frames is not None and frames > settings.max_num_frames:
            raise bad_request(f"mm_processor_kwargs.num_frames={frames} is above this server's limit of "
                              f"{settings.max_num_frames} (avlm serve --max-num-frames)",
                              "mm_processor_kwargs.num_frames")
        engine.admit()
        try:
            decoded = await engine.decode(conversation, chat.mm_processor_kwargs, generation.max_tokens)
        except BaseException:
            engine.release()
            raise
        job = engine.submit(decoded, generation, chat.stream)
        reply = Reply(settings.model_name)
        if chat.stream:
            usage = chat.stream_options is not None and chat.stream_options.include_usage
            return StreamingResponse(stream_events(reply, job, usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return JSONResponse(completion(reply, job, await _outcome(job)))

    return app


async def _outcome(job: Job) -> RowOutcome:
    while True:
        kind, value = await job.events.get()
        if kind == "done":
            return value
        if kind == "error":
            raise APIError(500, value, code="generation_failed")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or a 413 when it is longer than ``limit``. The excess is read and dropped (up to 4 x ``limit``) so
    that a client still sending gets the error instead of a reset connection; nothing over ``limit`` is kept."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > 4 * limit:
        raise APIError(413, f"the request body is {int(declared)} bytes; this server takes up to {limit} "
                            "(--max-media-mb sets it)", code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > 4 * limit:
            break
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise APIError(413, f"the request body is over {limit} bytes; this server takes up to {limit} "
                            "(--max-media-mb sets it)", code="request_too_large")
    return b"".join(chunks)


def _api_key_check(api_key: str | None) -> Callable[[Request], None]:
    def check(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise APIError(401, "missing API key: send the header 'Authorization: Bearer <key>'",
                           code="invalid_api_key")
        if not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise APIError(401, "incorrect API key", code="invalid_api_key")

    return check


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {error.detail}"
        return JSONResponse(error_body(error.status_code, message), status_code=error.status_code,
                            headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(400, str(error)), status_code=400)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error answering %s %s", request.method, request.url.path)
        return JSONResponse(error_body(500, f"internal error: {type(error).__name__}"), status_code=500)
