"""Helpers of the ``avlm serve`` tests: the server in a child process on a free port, raw HTTP calls, media parts."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit status (killed after ``timeout`` seconds). After a graceful shutdown uvicorn re-raises
        the signal, so a clean stop reads ``-SIGTERM``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, log: Path, *options: str, timeout: float = 120) -> Server:
    """``avlm serve --model model`` with one torch thread, ready when ``/health`` answers."""
    port = free_port()
    command = [sys.executable, "-m", "avlm", "serve", "--model", str(model), "--port", str(port),
               "--served-model-name", "tiny", "--threads", "1", *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"avlm serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            get(server.url + "/health", timeout=2)
            return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"avlm serve did not start within {timeout} s:\n{log.read_text()}")


def post(url: str, body: bytes | dict[str, Any], key: str | None = None, timeout: float = 60) -> tuple[int, Any]:
    """POST JSON (a dict) or raw bytes; (status, decoded JSON body) whatever the status."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    return _send(urllib.request.Request(url, data, headers), timeout)


def get(url: str, key: str | None = None, timeout: float = 10) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return _send(urllib.request.Request(url, headers=headers), timeout)


def _send(request: urllib.request.Request, timeout: float) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def chat(content: list[dict[str, Any]] | str, max_tokens: int = 6, **fields: Any) -> dict[str, Any]:
    """A chat request body for model 'tiny', full-length greedy answers (``ignore_eos``) unless overridden."""
    return {"model": "tiny", "max_tokens": max_tokens, "ignore_eos": True,
            "messages": [{"role": "user", "content": content}], **fields}


def part(kind: str, url: str) -> dict[str, Any]:
    """A ``video_url`` / ``image_url`` / ``audio_url`` content part."""
    return {"type": kind, kind: {"url": url}}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def input_audio(path: Path, audio_format: str = "wav") -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(path.read_bytes()).decode(),
                                                   "format": audio_format}}
