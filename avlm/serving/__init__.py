"""``avlm serve``: an OpenAI-compatible chat API over one model (FastAPI + uvicorn), batched, streaming and safe.

One concept per module:

- :mod:`avlm.serving.settings`: the server's options (``ServeSettings``, the defaults live there).
- :mod:`avlm.serving.errors`: ``APIError`` and OpenAI's error body.
- :mod:`avlm.serving.schema`: the request body (``ChatRequest``) and its generation settings.
- :mod:`avlm.serving.content`: the messages and their content parts -> question, system prompt, media references.
- :mod:`avlm.serving.media`: media references -> local files, inside the media root, size-capped.
- :mod:`avlm.serving.rows`: per-row stopping and text (max tokens, EOS, stop strings, streamed deltas).
- :mod:`avlm.serving.decoding`: the pool of threads that fetch and prepare each request's media.
- :mod:`avlm.serving.engine`: admission, the generation queue and the batching generation thread.
- :mod:`avlm.serving.responses`: OpenAI response objects and server-sent events.
- :mod:`avlm.serving.app`: the FastAPI application (routes, API key, error handlers, lifespan).

This package file imports nothing, so ``avlm serve --help`` can read the settings without loading torch.
"""
