"""Serve a model over an OpenAI-compatible chat API: batched, streaming, with media access under your control.

Examples::

    avlm serve --model runs/av7b --media-root /data/clips          # http://127.0.0.1:8000/v1
    AVLM_API_KEY=secret avlm serve --model runs/av7b --host 0.0.0.0 --port 8000 --max-batch-size 16

Endpoints: POST /v1/chat/completions (stream: true for server-sent events), GET /v1/models, GET /health. Content
parts: text, video_url, image_url, audio_url, input_audio (base64); per-request mm_processor_kwargs num_frames, fps,
use_audio_in_video (default true: a video's own soundtrack goes in). Local paths are read only under --media-root;
remote URLs only with --allow-remote-media. SIGTERM or Ctrl-C: stop accepting, finish the requests in flight, exit
(killed by SIGTERM, as uvicorn re-raises it; status 130 after Ctrl-C).
See docs/serving.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from avlm.serving.settings import ServeSettings

DTYPES = ("auto", "float32", "bfloat16", "float16")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _default(name: str) -> str:
    """The documented default of a ServeSettings field, for --help (the defaults live only in the dataclass)."""
    return str(next(f.default for f in dataclasses.fields(ServeSettings) if f.name == name))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (avlm, or an official VideoLLaMA2 checkpoint)")
    parser.add_argument("--served-model-name", default=None,
                        help="the name clients send as 'model' (default: --model as given)")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu, ... (default: cuda when available)")
    parser.add_argument("--dtype", choices=DTYPES, default=None,
                        help="parameter dtype (default: bfloat16 on a GPU, float32 on CPU; auto: as saved)")
    network = parser.add_argument_group("network and access")
    network.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    network.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    network.add_argument("--api-key", default=None,
                         help="require 'Authorization: Bearer KEY' on /v1 (default: $AVLM_API_KEY; none: no key)")
    network.add_argument("--media-root", type=Path, default=None,
                         help="folder local media paths and file:// URLs are read from (none: local files refused)")
    network.add_argument("--allow-remote-media", action="store_true",
                         help="fetch http(s) media (public addresses only, no redirects, size cap, timeout)")
    network.add_argument("--max-media-mb", type=float, default=None,
                         help=f"largest media item in MiB (data: URL, input_audio, download; default "
                              f"{_default('max_media_mb')})")
    network.add_argument("--remote-timeout", type=float, default=None,
                         help=f"seconds a remote download may take (default {_default('remote_timeout_s')})")
    batching = parser.add_argument_group("batching and limits")
    batching.add_argument("--max-batch-size", type=int, default=None,
                          help=f"requests generated together (default {_default('max_batch_size')})")
    batching.add_argument("--batch-wait-ms", type=float, default=None,
                          help=f"how long a batch waits for more requests (default {_default('batch_wait_ms')})")
    batching.add_argument("--decode-workers", type=int, default=None,
                          help="threads decoding media (default: CPU cores - 1, at least 1, at most 8)")
    batching.add_argument("--threads", type=int, default=None,
                          help="torch threads of the generating thread (default on CPU: the cores the decoding "
                               "threads leave free)")
    batching.add_argument("--max-tokens", type=int, default=None,
                          help=f"default and largest max_tokens of a request (default {_default('max_tokens')})")
    batching.add_argument("--max-num-frames", type=int, default=None,
                          help=f"largest num_frames a request may ask for (default {_default('max_num_frames')})")
    batching.add_argument("--max-queued", type=int, default=None,
                          help=f"requests in flight before new ones get a 503 (default {_default('max_queued')})")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="server log level (default info)")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top, to keep `avlm --help` light (no torch, transformers, fastapi).
    from vision.container import require

    require("fastapi", "fastapi>=0.115")  # the serve extra: pip install "avlm[serve]"
    uvicorn = require("uvicorn", "uvicorn>=0.30")

    from avlm.api import load
    from avlm.serving.app import create_app

    options = {"api_key": args.api_key if args.api_key is not None else os.environ.get("AVLM_API_KEY"),
               "media_root": args.media_root, "allow_remote_media": args.allow_remote_media,
               "max_media_mb": args.max_media_mb, "remote_timeout_s": args.remote_timeout,
               "max_batch_size": args.max_batch_size, "batch_wait_ms": args.batch_wait_ms,
               "decode_workers": args.decode_workers, "threads": args.threads, "max_tokens": args.max_tokens,
               "max_num_frames": args.max_num_frames, "max_queued": args.max_queued}
    settings = ServeSettings(model_name=args.served_model_name or args.model,
                             **{name: value for name, value in options.items() if value is not None})
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} must be between 0 and 65535")
    model = load(args.model, device=args.device, dtype=args.dtype)
    app = create_app(model, settings)
    print(f"serving {settings.model_name!r} on http://{args.host}:{args.port}/v1 (API key "
          f"{'required' if settings.api_key else 'not required'}; local media "
          f"{'under ' + str(settings.media_root) if settings.media_root else 'refused'}; remote media "
          f"{'allowed' if settings.allow_remote_media else 'refused'})", flush=True)
    try:  # on SIGTERM uvicorn finishes the requests in flight, then re-raises the signal: the process ends with it
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=None)
    except KeyboardInterrupt:  # Ctrl-C, re-raised the same way after the graceful shutdown
        return 130
    return 0
