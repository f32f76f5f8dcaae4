"""`avlm serve` with the official `openai` client: video, audio, video + separate audio, image, streaming, answers
equal to `avlm ask` / `avlm.load(...).ask(...)`, usage with media tokens, /v1/models, the API key, and every bad
request a 4xx in OpenAI's error format after which the server still answers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from infer_support import write_clips
from media import moving_square_frames, tone, write_wav
from PIL import Image
from serve_support import chat, data_url, get, input_audio, part, post, start_server, text

import avlm
from avlm.cli import main
from avlm.inference.requests import Request, prepare
from avlm.processing.collator import collate
from vision import load_video

openai = pytest.importorskip("openai")

KEY = "test-key"
QUESTION = "What happens here?"
FULL = {"max_new_tokens": 6, "eos_token_id": None}  # what a request with max_tokens=6 and ignore_eos generates

# one server for the module; with `pytest -n 2 --dist loadgroup` its tests also stay on one worker (one start)
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("serve")]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The media root: clip00/clip02 with sound, clip01 silent, a wav, a png, a text file named .mp4, and a symlink
    to a clip outside the root."""
    base = tmp_path_factory.mktemp("serve")
    folder = base / "media"
    write_clips(folder, 3)
    write_wav(folder / "tone.wav", tone(1.0, 16000, freq=330.0), 16000)
    Image.fromarray(moving_square_frames(1, 40, 30)[0]).save(folder / "square.png")
    (folder / "notes.mp4").write_text("not a video")
    (base / "outside").mkdir()
    (base / "outside" / "secret.mp4").write_bytes((folder / "clip00.mp4").read_bytes())
    os.symlink(base / "outside" / "secret.mp4", folder / "escape.mp4")
    return folder


@pytest.fixture(scope="module")
def server(tiny_dir, root, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    server = start_server(tiny_dir, log, "--api-key", KEY, "--media-root", str(root), "--max-media-mb", "1",
                          "--max-tokens", "64", "--decode-workers", "1")
    yield server
    assert server.stop() == -signal.SIGTERM, log.read_text()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def model(tiny_dir):
    return avlm.load(tiny_dir, device="cpu")


def ask(client, content, max_tokens: int = 6, **extra):
    """One non-streamed request (full-length greedy answer unless ``ignore_eos=False`` is given)."""
    return client.chat.completions.create(model="tiny", max_tokens=max_tokens, temperature=0,
                                          messages=[{"role": "user", "content": content}],
                                          extra_body={"ignore_eos": True, **extra})


def test_models_health_and_api_key(server, client) -> None:
    assert get(f"{server.url}/health")[1]["status"] == "ok"  # open without a key
    assert "Uvicorn running on http://127.0.0.1:" in server.log.read_text()  # this machine only, by default
    assert [card.id for card in client.models.list()] == ["tiny"]
    status, body = get(f"{server.url}/v1/models")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert body["error"]["type"] == "invalid_request_error" and "Authorization: Bearer" in body["error"]["message"]
    assert post(f"{server.url}/v1/chat/completions", chat("hi"), key="wrong")[0] == 401
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    assert get(f"{server.url}/v2/nothing")[1]["error"]["message"] == "GET /v2/nothing: Not Found"
    status, body = get(f"{server.url}/v1/chat/completions", key=KEY)
    assert status == 405 and body["error"]["type"] == "invalid_request_error"


def test_video_question_equals_ask(client, model, root, tiny_dir, capsys) -> None:
    clip = root / "clip00.mp4"
    relative = ask(client, [part("video_url", "clip00.mp4"), text(QUESTION)])
    by_uri = ask(client, [text(QUESTION), part("video_url", clip.as_uri())])
    answer = relative.choices[0].message.content
    assert answer == by_uri.choices[0].message.content == model.ask(QUESTION, video=clip, **FULL) != ""
    assert relative.choices[0].finish_reason == "length" and relative.usage.completion_tokens == 6
    assert relative.media == {"num_frames": 4, "has_audio": True, "seconds": pytest.approx(0.6)}
    sample = prepare(model.processor, Request(QUESTION, str(clip)), 0).sample
    batch = collate([sample], model.processor.tokenizer.pad_token_id, "left").model_inputs(labels=False)
    with torch.no_grad():  # the length of the prompt the LLM gets, media tokens spliced in
        merged = model.model.embed_multimodal(**batch, padding_side="left")
    assert relative.usage.prompt_tokens == int(merged.attention_mask.sum()) > len(sample["input_ids"])
    eos = ask(client, [part("video_url", "clip00.mp4"), text(QUESTION)], ignore_eos=False)  # EOS ends the answer
    assert eos.choices[0].message.content == model.ask(QUESTION, video=clip, max_new_tokens=6)
    fewer = ask(client, [part("video_url", "clip00.mp4"), text(QUESTION)], max_tokens=5, ignore_eos=False,
                mm_processor_kwargs={"num_frames": 2})
    assert fewer.media["num_frames"] == 2
    at_rate = ask(client, [part("video_url", "clip00.mp4"), text(QUESTION)], mm_processor_kwargs={"fps": 5})
    assert at_rate.media["num_frames"] == len(load_video(clip, num_frames=4, fps=5).frames) < 4
    assert main(["ask", "--model", str(tiny_dir), "--video", str(clip), "--question", QUESTION, "--num-frames", "2",
                 "--max-new-tokens", "5", "--num-workers", "0", "--threads", "1"]) == 0
    assert capsys.readouterr().out.strip() == fewer.choices[0].message.content  # = `avlm ask`


def test_audio_only_and_video_with_separate_audio(client, model, root) -> None:
    wav, silent = root / "tone.wav", root / "clip01.mp4"
    audio_only = ask(client, [part("audio_url", "tone.wav"), text("What sound is this?")])
    assert audio_only.choices[0].message.content == model.ask("What sound is this?", audio=wav, **FULL)
    assert audio_only.media == {"num_frames": 0, "has_audio": True, "seconds": None}
    both = ask(client, [part("video_url", "clip01.mp4"), input_audio(wav), text(QUESTION)])
    assert both.choices[0].message.content == model.ask(QUESTION, video=silent, audio=wav, **FULL)
    assert both.media["has_audio"] is True
    by_url = ask(client, [part("video_url", "clip01.mp4"), part("audio_url", data_url(wav, "audio/wav")),
                          text(QUESTION)])
    assert by_url.choices[0].message.content == both.choices[0].message.content
    muted = ask(client, [part("video_url", "clip00.mp4"), text(QUESTION)],
                mm_processor_kwargs={"use_audio_in_video": False})
    assert muted.media["has_audio"] is False
    assert muted.choices[0].message.content == model.ask(QUESTION, video=root / "clip00.mp4", audio=None, **FULL)
    no_track = ask(client, [part("video_url", "clip01.mp4"), text(QUESTION)])  # served, and it says so
    assert no_track.media == {"num_frames": 4, "has_audio": False, "seconds": pytest.approx(0.8)}


def test_image_by_path_and_data_url(client, model, root) -> None:
    image = root / "square.png"
    expected = model.ask("Colours?", video=image, **FULL)
    by_path = ask(client, [part("image_url", "square.png"), text("Colours?")])
    by_data = ask(client, [part("image_url", data_url(image, "image/png")), text("Colours?")])
    assert by_path.choices[0].message.content == by_data.choices[0].message.content == expected
    assert by_data.media == {"num_frames": 2, "has_audio": False, "seconds": None}  # a still: image_frames copies


def test_system_message_and_seeded_sampling(client, model, root) -> None:
    content = [part("video_url", "clip02.mp4"), text(QUESTION)]
    system = "You answer in one word."
    with_system = client.chat.completions.create(
        model="tiny", max_tokens=6, extra_body={"ignore_eos": True},
        messages=[{"role": "system", "content": system}, {"role": "user", "content": content}])
    default, model.processor.system_prompt = model.processor.system_prompt, system
    try:
        expected = model.ask(QUESTION, video=root / "clip02.mp4", **FULL)
    finally:
        model.processor.system_prompt = default
    assert with_system.choices[0].message.content == expected != ask(client, content).choices[0].message.content
    sampled = [client.chat.completions.create(model="tiny", max_tokens=8, temperature=1.0, seed=7,
                                              messages=[{"role": "user", "content": content}]) for _ in range(2)]
    assert sampled[0].choices[0].message.content == sampled[1].choices[0].message.content  # seeded: reproducible


def test_streaming_equals_non_streamed(client, root) -> None:
    content = [part("video_url", "clip02.mp4"), text("Describe it.")]
    whole = ask(client, content, max_tokens=12).choices[0].message.content
    chunks = list(client.chat.completions.create(model="tiny", max_tokens=12, stream=True,
                                                 messages=[{"role": "user", "content": content}],
                                                 stream_options={"include_usage": True},
                                                 extra_body={"ignore_eos": True}))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].media["has_audio"] is True
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    stop = next(whole[i:i + 2] for i in range(3, len(whole) - 1) if whole[i:i + 2].strip() == whole[i:i + 2])
    expected = whole[:whole.find(stop)].rstrip()
    stopped = ask(client, content, max_tokens=12, stop=[stop])
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == (expected, "stop")
    streamed = client.chat.completions.create(model="tiny", max_tokens=12, stream=True, stop=[stop],
                                              messages=[{"role": "user", "content": content}],
                                              extra_body={"ignore_eos": True})
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == expected


def _big_base64(root: Path) -> str:
    path = root.parent / "big.bin"
    path.write_bytes(np.random.default_rng(0).bytes(3 * 2**19))  # 1.5 MiB: over the server's --max-media-mb 1
    return data_url(path, "video/mp4")


BAD = {  # name -> (request body or raw bytes, status, error code)
    "missing file": (lambda root: chat([part("video_url", "nope.mp4")]), 400, "media_not_found"),
    "absolute path outside the root": (lambda root: chat([part("video_url", f"{root.parent}/outside/secret.mp4")]),
                                       403, "media_outside_root"),
    "'..' out of the root": (lambda root: chat([part("video_url", "../outside/secret.mp4")]), 403,
                             "media_outside_root"),
    "symlink escape": (lambda root: chat([part("video_url", "escape.mp4")]), 403, "media_outside_root"),
    "file URL outside the root": (lambda root: chat([part("video_url", "file:///etc/hostname")]), 403,
                                  "media_outside_root"),
    "corrupt base64": (lambda root: chat([part("video_url", "data:video/mp4;base64,AAAA*===")]), 400,
                       "invalid_base64"),
    "oversized base64": (lambda root: chat([part("video_url", _big_base64(root))]), 413, "media_too_large"),
    "body over the limit": (lambda root: b"{" + b" " * (4 * 2**20) + b"}", 413, "request_too_large"),
    "text file named .mp4": (lambda root: chat([part("video_url", "notes.mp4")]), 400, "invalid_media"),
    "data: URL that is not media": (lambda root: chat([part("video_url", "data:video/mp4;base64,aGVsbG8gd29ybGQ=")]),
                                    400, "invalid_media"),
    "audio_url without a sound track": (lambda root: chat([part("audio_url", "clip01.mp4")]), 400, "invalid_media"),
    "unknown content type": (lambda root: chat([{"type": "file", "file": {"file_id": "x"}}]), 400,
                             "unknown_content_type"),
    "wrong model name": (lambda root: {**chat("hi"), "model": "gpt-4o"}, 404, "model_not_found"),
    "malformed JSON": (lambda root: b'{"model": "tiny", "messages": [', 400, "invalid_json"),
    "too many media parts": (lambda root: chat([part("video_url", "clip00.mp4"), part("image_url", "square.png")]),
                             400, "too_many_media_parts"),
    "n > 1": (lambda root: chat("hi", n=2), 400, "unsupported_n"),
    "remote media without the flag": (lambda root: chat([part("video_url", "https://example.com/a.mp4")]), 403,
                                      "remote_media_disabled"),
    "unknown field": (lambda root: chat("hi", logprobs=True), 400, "unknown_field"),
    "too many frames": (lambda root: chat("hi", mm_processor_kwargs={"num_frames": 1000}), 400, None),
    "max_tokens over the limit": (lambda root: chat("hi", max_tokens=100000), 400, None),
    "an assistant turn": (lambda root: {**chat("hi"), "messages": [{"role": "assistant", "content": "x"},
                                                                   {"role": "user", "content": "y"}]}, 400, None),
    "no messages": (lambda root: {**chat("hi"), "messages": []}, 400, None),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_request_is_a_4xx_json_error_and_the_server_goes_on(case, server, root) -> None:
    make, status, code = BAD[case]
    got, body = post(f"{server.url}/v1/chat/completions", make(root), key=KEY)
    error = body["error"]
    assert (got, error["code"]) == (status, code) if code else got == status, error
    assert error["type"] == "invalid_request_error" and error["message"] and set(error) == {"message", "type",
                                                                                           "param", "code"}
    assert str(root) not in error["message"]  # no server path in the message
    good, answer = post(f"{server.url}/v1/chat/completions", chat([part("video_url", "clip00.mp4")], max_tokens=2),
                        key=KEY)
    assert good == 200 and answer["usage"]["completion_tokens"] == 2


def test_the_openai_client_sees_typed_errors(client) -> None:
    with pytest.raises(openai.BadRequestError, match="too many media parts"):
        ask(client, [part("video_url", "clip00.mp4"), part("video_url", "clip01.mp4")])
    with pytest.raises(openai.NotFoundError, match="this server serves 'tiny'"):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.PermissionDeniedError, match="outside the media root"):
        ask(client, [part("video_url", "escape.mp4")])
