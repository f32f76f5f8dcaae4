"""The serving engine on an official VideoLLaMA2-AV folder (the tiny fixture): its placeholders are ids outside the
vocabulary and its audio joins the video block, yet ``usage.prompt_tokens`` is the spliced prompt's length and the
answer is ``avlm.load(...).ask(...)``'s. In-process (no HTTP): the HTTP layer is the same for every model."""

from __future__ import annotations

import asyncio

import pytest
import torch
from media import write_video
from test_fixtures import official_tiny_case

pytest.importorskip("fastapi")

import avlm  # noqa: E402
from avlm.processing.collator import collate  # noqa: E402
from avlm.serving.content import parse_messages  # noqa: E402
from avlm.serving.engine import Engine  # noqa: E402
from avlm.serving.schema import Generation, MediaOptions  # noqa: E402
from avlm.serving.settings import ServeSettings  # noqa: E402

CASE = official_tiny_case()
pytestmark = [pytest.mark.skipif(CASE is None, reason="no videollama2_av_tiny fixture (set AVLM_FIXTURES)"),
              pytest.mark.usefixtures("one_thread")]


async def _serve_one(engine: Engine, content: list[dict]):
    conversation = parse_messages([{"role": "user", "content": content}])
    decoded = await engine.decode(conversation, MediaOptions(), 6)
    kind, outcome = await engine.submit(decoded, Generation(max_tokens=6), stream=False).events.get()
    assert kind == "done", outcome
    return decoded, outcome


def test_official_folder_prompt_tokens_and_answer(tmp_path) -> None:
    description, io, folder = CASE
    model = avlm.load(folder, device="cpu")
    question = description["samples"]["av"]["question"]
    write_video(tmp_path / "av.mp4", frames=io["av.frames_uint8"].numpy(), fps=8, audio_rate=16000)
    engine = Engine(model, ServeSettings("official", media_root=tmp_path, decode_workers=1, threads=1))
    engine.start()
    try:
        decoded, outcome = asyncio.run(_serve_one(engine, [{"type": "video_url", "video_url": {"url": "av.mp4"}},
                                                           {"type": "text", "text": question}]))
    finally:
        engine.stop()
    assert decoded.prepared.has_audio and outcome.text == model.ask(question, video=tmp_path / "av.mp4",
                                                                    max_new_tokens=6)
    sample = decoded.prepared.sample
    batch = collate([sample], model.processor.tokenizer.pad_token_id, "left").model_inputs(labels=False)
    with torch.no_grad():
        merged = model.model.embed_multimodal(**batch, padding_side="left")
    assert decoded.prompt_tokens == int(merged.attention_mask.sum()) > len(sample["input_ids"])
