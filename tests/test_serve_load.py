"""`avlm serve` without an API key, under load, then stopped with SIGTERM, in one test (one server start, however
pytest-xdist spreads the tests):

1. no key needed;
2. 16 concurrent clients send 200 requests (each with a time limit) that mix greedy settings (token limits, EOS on
   and off, a stop string, streaming): no 5xx, every answer equals the answer the same request gets alone, and the
   requests were generated in batches;
3. a smoke run of scripts/bench_serve.py against the server;
4. SIGTERM with requests in flight: the server stops accepting connections, finishes every request (generating and
   streaming) with its full answer, then exits.
"""

from __future__ import annotations

import re
import signal
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from infer_support import write_clips
from serve_support import Server, chat, get, part, post, start_server, text

openai = pytest.importorskip("openai")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import bench_serve  # noqa: E402

QUESTIONS = ("What happens?", "Describe the sound and the picture in one sentence, please.")
TOKENS = 200  # long enough that the requests are still being generated when SIGTERM arrives


def test_keyless_server_under_load_then_sigterm(tiny_dir, tmp_path, capsys) -> None:
    root = tmp_path / "media"
    write_clips(root, 4)
    server = start_server(tiny_dir, tmp_path / "server.log", "--media-root", str(root), "--decode-workers", "2",
                          "--max-batch-size", "8", "--batch-wait-ms", "20")
    try:
        _no_key_needed(server)
        _load(server)
        _bench_smoke(server, root, capsys)
        _sigterm_with_requests_in_flight(server)
    finally:
        server.stop()


def _no_key_needed(server: Server) -> None:
    status, body = post(f"{server.url}/v1/chat/completions", chat([part("video_url", "clip00.mp4")], max_tokens=2))
    assert status == 200 and body["choices"][0]["finish_reason"] == "length"
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="anything", max_retries=0)
    assert [card.id for card in client.models.list()] == ["tiny"]


def _distinct_requests() -> list[dict]:
    """Eight different requests: 4 clips x 2 questions, with different token limits, EOS on/off and a stop."""
    requests = []
    for index in range(8):
        settings = {"max_tokens": 4 + index % 3 * 2, "ignore_eos": index % 2 == 0}
        if index == 5:
            settings["stop"] = ["e"]
        requests.append({"content": [part("video_url", f"clip{index % 4:02d}.mp4"), text(QUESTIONS[index // 4])],
                         "stream": index == 3, **settings})
    return requests


def _answer(client, request: dict) -> str:
    fields = dict(request)
    content, stream = fields.pop("content"), fields.pop("stream")
    extra = {"ignore_eos": fields.pop("ignore_eos")}
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": content}],
                                           temperature=0, stream=stream, extra_body=extra, **fields)
    if stream:
        return "".join(chunk.choices[0].delta.content or "" for chunk in reply)
    return reply.choices[0].message.content


def _load(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=60)
    requests = _distinct_requests()
    alone = [_answer(client, request) for request in requests]  # one at a time: batches of one
    assert len(set(alone)) > 4  # the answers depend on the request
    before = get(f"{server.url}/health")[1]

    def one(index: int) -> tuple[int, str | Exception]:
        try:
            return index % 8, _answer(client, requests[index % 8])
        except openai.APIError as error:  # counted below; a timeout is an APIError too
            return index % 8, error

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(200)))
    failures = [(index, result) for index, result in results if isinstance(result, Exception)]
    assert failures == []
    wrong = [(index, result) for index, result in results if result != alone[index]]
    assert wrong == []
    after = get(f"{server.url}/health")[1]
    calls = after["generate_calls"] - before["generate_calls"]
    assert after["requests_generated"] - before["requests_generated"] == 200
    assert calls < 200 * 0.8, f"200 requests took {calls} generate calls: barely batched"
    assert after["requests_in_flight"] == 0


def _bench_smoke(server: Server, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert bench_serve.main(["--url", server.url, "--media-root", str(root), "--model-name", "tiny", "--requests", "6",
                             "--concurrency", "3", "--clips", "2", "--resolution", "64x48", "--seconds", "1",
                             "--max-tokens", "3"]) == 0
    out = capsys.readouterr().out
    rows = {line.split(":")[0].strip(): line for line in out.splitlines()}
    for name in ("one at a time", "3 concurrent"):
        rate, p50, p95 = map(float, re.findall(r"([\d.]+) requests/s, p50 +(\d+) ms, p95 +(\d+) ms", rows[name])[0])
        assert rate > 0 and 0 < p50 <= p95
    assert re.search(r"ratio concurrent / one at a time: \d+\.\d\dx requests/s; identical answers 6/6", out)


def _sigterm_with_requests_in_flight(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": [part("video_url", "clip00.mp4"), text("What happens?")]}]

    def request(stream: bool) -> tuple[str, int]:
        options = {"stream_options": {"include_usage": True}} if stream else {}
        reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=TOKENS, stream=stream,
                                               extra_body={"ignore_eos": True}, **options)
        if not stream:
            return reply.choices[0].message.content, reply.usage.completion_tokens
        chunks = list(reply)
        joined = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return joined, chunks[-1].usage.completion_tokens

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(request, stream) for stream in (False, True, False, False)]
        deadline = time.monotonic() + 60
        while get(f"{server.url}/health")[1]["requests_in_flight"] < 4:
            assert time.monotonic() < deadline and not any(f.done() for f in futures), "the requests did not start"
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)
        refused = False
        while not refused and time.monotonic() < deadline:  # new connections are refused at once
            try:
                urllib.request.urlopen(f"{server.url}/health", timeout=1).close()
                time.sleep(0.05)
            except (urllib.error.URLError, ConnectionError):
                refused = True
        unfinished_when_refused = sum(not f.done() for f in futures)
        results = [f.result(timeout=120) for f in futures]
    assert refused and unfinished_when_refused > 0
    assert [tokens for _, tokens in results] == [TOKENS] * 4
    assert len({answer for answer, _ in results}) == 1  # the streamed answer equals the others
    assert server.process.wait(timeout=60) == -signal.SIGTERM  # uvicorn re-raises SIGTERM after the shutdown
    log = server.log.read_text()
    assert "Waiting for connections to close" in log and "Application shutdown complete" in log
