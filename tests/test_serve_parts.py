"""The pieces of `avlm serve` without a model: remote fetching (size cap, timeout, no redirects, no private hosts), the
media root rules, and per-row stopping and streaming (the streamed pieces join to the final text)."""

from __future__ import annotations

import http.server
import threading
import time

import pytest
import torch

pytest.importorskip("fastapi")

from avlm.serving.content import MediaRef  # noqa: E402
from avlm.serving.errors import APIError  # noqa: E402
from avlm.serving.media import MediaResolver, fetch  # noqa: E402
from avlm.serving.rows import RowSpec, RowTracker, final_text  # noqa: E402
from avlm.serving.settings import ServeSettings  # noqa: E402


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/small")
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(1.5)
        body = b"x" * (4096 if self.path == "/big" else 100)
        self.send_response(200)
        if self.path != "/big":  # the big one does not say its size: the cap must apply while reading
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the slow one's client has given up
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _error(call) -> APIError:
    with pytest.raises(APIError) as caught:
        call()
    return caught.value


def test_fetch_caps_size_and_time_and_refuses_redirects_and_private_hosts(web) -> None:
    assert fetch(f"{web}/small", 1000, 5, "p", allow_private=True) == b"x" * 100
    big = _error(lambda: fetch(f"{web}/big", 1000, 5, "p", allow_private=True))
    assert big.status == 413 and big.code == "media_too_large"
    redirect = _error(lambda: fetch(f"{web}/redirect", 1000, 5, "p", allow_private=True))
    assert redirect.status == 400 and "redirects are not followed" in redirect.message
    slow = _error(lambda: fetch(f"{web}/slow", 1000, 0.5, "p", allow_private=True))
    assert slow.status == 400 and slow.code == "media_fetch_failed"
    private = _error(lambda: fetch(f"{web}/small", 1000, 5, "p"))
    assert private.status == 403 and "127.0.0.1" in private.message


def test_resolver_media_root_rules(tmp_path, web) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.mp4").write_bytes(b"a")
    (tmp_path / "secret.mp4").write_bytes(b"s")
    (root / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    (root / "inside.mp4").symlink_to(root / "a.mp4")
    resolver = MediaResolver(ServeSettings("m", media_root=root, allow_remote_media=True), tmp_path)
    video = lambda url: MediaRef("video", url, "p")  # noqa: E731
    assert resolver.resolve(video("a.mp4")).path == str(root / "a.mp4")
    assert resolver.resolve(video("sub/../a.mp4")).path == str(root / "a.mp4")  # '..' that stays inside is fine
    assert resolver.resolve(video("inside.mp4")).path == str(root / "a.mp4")  # a link inside the root too
    assert resolver.resolve(video((root / "a.mp4").as_uri())).label == str(root / "a.mp4")
    for escape in ("../secret.mp4", "link.mp4", str(tmp_path / "secret.mp4"), "file:///etc/passwd", "sub/../../x"):
        assert _error(lambda: resolver.resolve(video(escape))).code == "media_outside_root", escape  # noqa: B023
    assert _error(lambda: resolver.resolve(video("sub"))).code == "media_not_found"
    assert _error(lambda: resolver.resolve(video("file://host/a.mp4"))).code == "unsupported_url"
    assert _error(lambda: resolver.resolve(video("ftp://x/a.mp4"))).code == "unsupported_url"
    assert _error(lambda: resolver.resolve(video(f"{web}/small"))).code == "remote_media_forbidden"
    closed = MediaResolver(ServeSettings("m"), tmp_path)
    assert _error(lambda: closed.resolve(video("a.mp4"))).code == "local_media_disabled"
    assert _error(lambda: closed.resolve(video(f"{web}/small"))).code == "remote_media_disabled"
    audio = closed.resolve(MediaRef("audio", "aGVsbG8=", "p", audio_format="wav"))
    assert audio.scratch and audio.path.endswith(".wav") and open(audio.path, "rb").read() == b"hello"
    image = closed.resolve(MediaRef("image", "data:image/gif;base64,aGVsbG8=", "p"))
    assert image.path.endswith(".png")  # an image part is always read as an image
    assert _error(lambda: closed.resolve(MediaRef("audio", "aGVsbG8=", "p", audio_format="exe"))).status == 400


class _Pieces:
    """A tokenizer whose token i decodes to PIECES[i]; token 0 is the end of sequence (special, skipped)."""

    PIECES = ["<eos>", " he", "llo", " E", "ND", " x", "  ", "\ufffd"]

    def decode(self, tokens: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.PIECES[t] for t in tokens if t != 0 or not skip_special_tokens)


def _run(rows: list[list[int]], specs: list[dict]) -> tuple[list, list[list[str]]]:
    """Feed token columns to a RowTracker as ``generate`` would; returns the outcomes and each row's deltas."""
    outcomes, deltas = [None] * len(rows), [[] for _ in rows]
    tracker = RowTracker(_Pieces(), [RowSpec(on_done=lambda o, i=i: outcomes.__setitem__(i, o),
                                             on_delta=(lambda d, i=i: deltas[i].append(d)) if s.pop("stream", True)
                                             else None, **s) for i, s in enumerate(specs)])
    generated = torch.empty(len(rows), 0, dtype=torch.long)
    for step in range(max(map(len, rows))):
        column = torch.tensor([[row[min(step, len(row) - 1)]] for row in rows])
        generated = torch.cat([generated, column], dim=1)
        if bool(tracker(generated).all()):
            break
    tracker.finish()
    return outcomes, deltas


def test_rows_end_at_their_own_limit_eos_or_stop_and_stream_the_final_text() -> None:
    rows = [[1, 2, 3, 4, 5], [1, 2, 0, 5, 5], [1, 2, 5, 5, 5], [6, 1, 6, 2, 6], [1, 7, 2, 3, 3]]
    specs = [{"max_tokens": 5, "stop": ["END"]}, {"max_tokens": 5, "eos_token_ids": frozenset({0})},
             {"max_tokens": 3}, {"max_tokens": 4}, {"max_tokens": 4, "stream": False}]
    outcomes, deltas = _run(rows, specs)
    assert [(o.text, o.finish_reason, o.completion_tokens) for o in outcomes] == [
        ("hello", "stop", 4), ("hello", "stop", 3), ("hello x", "length", 3), ("he  llo", "length", 4),
        ("he\ufffdllo E", "length", 4)]
    for outcome, pieces in zip(outcomes[:4], deltas[:4], strict=True):
        assert "".join(pieces) == outcome.text
    assert deltas[0] == ["he", "llo"]  # " E" was held back: it could begin the stop string
    assert deltas[3] == ["he", "  llo"]  # the whitespace waited for the next word
    assert final_text("  a b END c END ", ["END", "c"]) == ("a b", True)
    assert final_text(" a ", []) == ("a", False)
