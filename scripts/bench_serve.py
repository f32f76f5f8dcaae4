"""``avlm serve`` throughput: N concurrent clients vs the same requests sent one at a time, to the same server.

The script starts ``avlm serve`` on a free local port (``--model DIR``; ``--model tiny`` builds a random avlm-tiny
folder first) with its media root on generated clips (25 fps H.264 + stereo AAC from ``bench_decode.write_clip``),
or talks to a running server (``--url``, with ``--media-root`` set to that server's media root). Each request asks a
question about one clip (video + its soundtrack), greedy, ``ignore_eos`` so every answer is exactly ``--max-tokens``
tokens and both phases do the same work. Phase 1 sends the requests one at a time; phase 2 sends them from
``--concurrency`` client threads. It prints requests/s, p50/p95 latency, the ratio, and how many answers agree
(greedy batched answers equal one-at-a-time ones).

    .venv/bin/python scripts/bench_serve.py --model tiny --requests 64 --concurrency 16        # CPU figure
    python scripts/bench_serve.py --model /models/VideoLLaMA2.1-7B-AV --device cuda --dtype bfloat16 \\
        --clips 16 --resolution 1280x720 --requests 128 --concurrency 16 --max-tokens 64 --max-batch-size 16
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_decode import write_clip

QUESTION = "What happens in this video, and what do you hear?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, model: str, media_root: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """``avlm serve`` in a child process; returns it and its base URL once ``/health`` answers."""
    port = free_port()
    command = [sys.executable, "-m", "avlm", "serve", "--model", model, "--served-model-name", args.model_name,
               "--port", str(port), "--media-root", str(media_root), "--max-tokens", str(args.max_tokens),
               "--log-level", "warning"]
    for flag in ("device", "dtype", "max_batch_size", "batch_wait_ms", "decode_workers", "threads"):
        if getattr(args, flag) is not None:
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"avlm serve exited with status {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"avlm serve did not answer within {args.startup_timeout} s:\n{log.read_text()}")


def ask(url: str, body: dict, api_key: str | None, timeout: float) -> tuple[float, str]:
    """One chat completion; returns (latency in s, answer). Any HTTP error raises."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(f"{url}/v1/chat/completions", json.dumps(body).encode(), headers)
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        answer = json.loads(reply.read())["choices"][0]["message"]["content"]
    return time.perf_counter() - start, answer


def request_bodies(args: argparse.Namespace, clips: list[str]) -> list[dict]:
    return [{"model": args.model_name, "max_tokens": args.max_tokens, "temperature": 0, "ignore_eos": True,
             "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": clip}},
                                                       {"type": "text", "text": f"{QUESTION} ({index})"}]}]}
            for index, clip in ((i, clips[i % len(clips)]) for i in range(args.requests))]


def batches(url: str) -> tuple[int, int]:
    """(generate calls, requests generated) so far, from the server's /health."""
    with urllib.request.urlopen(f"{url}/health", timeout=10) as reply:
        health = json.loads(reply.read())
    return health["generate_calls"], health["requests_generated"]


def mean_batch(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[1] - before[1]) / max(1, after[0] - before[0])


def run_phase(url: str, bodies: list[dict], concurrency: int, args: argparse.Namespace) -> tuple[float, list]:
    """Send every body with ``concurrency`` client threads; (wall seconds, [(latency, answer)] in body order)."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda body: ask(url, body, args.api_key, args.request_timeout), bodies))
    return time.perf_counter() - start, results


def summary(name: str, seconds: float, results: list) -> str:
    latencies = sorted(latency for latency, _ in results)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    return (f"{name:<16}: {len(results) / seconds:8.2f} requests/s, p50 {statistics.median(latencies) * 1000:7.0f} ms,"
            f" p95 {p95 * 1000:7.0f} ms ({seconds:.1f} s)")


def make_clips(folder: Path, count: int, resolution: str, seconds: float) -> list[str]:
    width, height = map(int, resolution.split("x"))
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        name = f"bench{index:03d}_{resolution}_{seconds:g}s.mp4"
        if not (folder / name).is_file():
            write_clip(folder / name, width, height, index, 24, seconds)
        names.append(name)
    return names


def tiny_model(folder: Path) -> str:
    """A random avlm-tiny folder (the CPU figure)."""
    from avlm.assembly import build_model

    model, processor = build_model("avlm-tiny", seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="model folder to serve ('tiny': a random avlm-tiny built here)")
    target.add_argument("--url", help="a running avlm serve (http://host:port); give its --media-root too")
    parser.add_argument("--media-root", type=Path, default=None,
                        help="with --url: the server's media root (clips are written there); default: a temp folder")
    parser.add_argument("--model-name", default="bench", help="the served model name")
    parser.add_argument("--api-key", default=None, help="the server's API key, if it has one")
    parser.add_argument("--requests", type=int, default=64, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads of the concurrent phase")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens generated per answer (ignore_eos)")
    parser.add_argument("--clips", type=int, default=8, help="generated clips the requests cycle through")
    parser.add_argument("--resolution", default="320x240", help="WxH of the generated clips")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the generated clips")
    parser.add_argument("--request-timeout", type=float, default=600.0, help="seconds one request may take")
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds the server may take to start")
    server = parser.add_argument_group("server options (with --model)")
    server.add_argument("--device", default=None)
    server.add_argument("--dtype", default=None)
    server.add_argument("--max-batch-size", type=int, default=None)
    server.add_argument("--batch-wait-ms", type=float, default=None)
    server.add_argument("--decode-workers", type=int, default=None)
    server.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.url and args.media_root is None:
        parser.error("--url needs --media-root: the folder the server reads media from")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        root = args.media_root or Path(scratch) / "media"
        clips = make_clips(root, args.clips, args.resolution, args.seconds)
        process = None
        if args.model:
            model = tiny_model(Path(scratch) / "tiny") if args.model == "tiny" else args.model
            process, url = start_server(args, model, root, Path(scratch) / "server.log")
        else:
            url = args.url.rstrip("/")
        try:
            bodies = request_bodies(args, clips)
            ask(url, bodies[0], args.api_key, args.request_timeout)  # warm-up
            counts = [batches(url)]
            alone_time, alone = run_phase(url, bodies, 1, args)
            counts.append(batches(url))
            together_time, together = run_phase(url, bodies, args.concurrency, args)
            counts.append(batches(url))
        finally:
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    same = sum(a[1] == b[1] for a, b in zip(alone, together, strict=True))
    print(f"server {url} model {args.model_name!r}: {args.requests} requests over {args.clips} clips "
          f"({args.resolution}, {args.seconds:g} s, with audio), {args.max_tokens} tokens each, greedy; "
          f"client cores {os.cpu_count()}")
    print(summary("one at a time", alone_time, alone))
    print(summary(f"{args.concurrency} concurrent", together_time, together))
    print(f"ratio concurrent / one at a time: {alone_time / together_time:.2f}x requests/s; identical answers "
          f"{same}/{len(bodies)}; mean batch {mean_batch(*counts[:2]):.1f} vs {mean_batch(*counts[1:]):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
