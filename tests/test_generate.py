"""Generation: a left-padded batch of mixed clips (different frame counts, with and without audio) gives the same
greedy tokens as each sample alone, with or without KV cache; penalties see generated tokens only; streaming works."""

from __future__ import annotations

from threading import Thread

import pytest
import torch
from avlm_dummies import PLACEHOLDERS, dummy_model
from transformers import GenerationConfig, TextIteratorStreamer

V, A = PLACEHOLDERS["video"], PLACEHOLDERS["audio"]
SAMPLES = [  # (prompt ids, frames, audio frames)
    ([10, 11, V, A, 12, 13], 4, 12),
    ([14, V, 15], 2, None),
    ([16, 17, A, 18], None, 8),
    ([19, 20, 21, 22, 23, 24, 25], None, None),
    ([26, V, A, 27], 6, 4),
]


def _inputs(samples, seed: int = 7) -> dict:
    """Left-padded batch in the collator layout; media drawn per sample from its own seed (same alone or batched)."""
    longest = max(len(ids) for ids, _, _ in samples)
    batch = {"input_ids": torch.zeros(len(samples), longest, dtype=torch.long)}
    batch["attention_mask"] = torch.zeros_like(batch["input_ids"])
    videos, sounds = [], []
    for row, (ids, frames, count) in enumerate(samples):
        batch["input_ids"][row, longest - len(ids):] = torch.tensor(ids)
        batch["attention_mask"][row, longest - len(ids):] = 1
        generator = torch.Generator().manual_seed(seed + ids[0])
        if frames:
            videos.append(torch.randn(frames, 3, 8, 8, generator=generator))
        if count:
            sounds.append(torch.randn(count, 10, generator=generator))
    if videos:
        batch["video_pixels"] = torch.stack([torch.cat([v, v.new_zeros(6 - len(v), 3, 8, 8)]) for v in videos])
        batch["video_frame_counts"] = torch.tensor([len(v) for v in videos])
    if sounds:
        batch["audio_features"] = torch.stack([torch.cat([s, s.new_zeros(12 - len(s), 10)]) for s in sounds])
        batch["audio_lengths"] = torch.tensor([len(s) for s in sounds])
    return batch


def _model(**generation):
    model = dummy_model(seed=1)
    model.generation_config = GenerationConfig(pad_token_id=0, eos_token_id=None, do_sample=False, **generation)
    return model


def test_batched_greedy_generation_equals_one_by_one() -> None:
    model = _model()
    batched = model.generate(**_inputs(SAMPLES), max_new_tokens=8)
    assert batched.shape == (len(SAMPLES), 8)  # new tokens only
    for row, sample in enumerate(SAMPLES):
        alone = model.generate(**_inputs([sample]), max_new_tokens=8)
        assert alone[0].tolist() == batched[row].tolist(), f"sample {row}"
    assert len({tuple(row) for row in batched.tolist()}) > 1  # the samples do differ
    no_cache = model.generate(**_inputs(SAMPLES), max_new_tokens=8, use_cache=False)
    assert torch.equal(no_cache, batched)


def test_repetition_penalty_applies_to_generated_tokens_only() -> None:
    model = _model(repetition_penalty=3.0)
    inputs = _inputs(SAMPLES[:1])
    generated = model.generate(**inputs, max_new_tokens=6)[0].tolist()
    merged = model.embed_multimodal(**inputs)
    embeds, tokens = merged.inputs_embeds, []
    with torch.no_grad():
        for _ in range(6):  # reference: full recompute, penalty on the tokens generated so far
            logits = model.llm(inputs_embeds=embeds).logits[0, -1]
            for token in set(tokens):
                logits[token] = logits[token] / 3.0 if logits[token] > 0 else logits[token] * 3.0
            tokens.append(int(logits.argmax()))
            embeds = torch.cat([embeds, model.get_input_embeddings()(torch.tensor([[tokens[-1]]]))], dim=1)
    assert generated == tokens


def test_tokens_stream_for_a_single_request() -> None:
    from avlm.processing.tokenizer import train_tiny_tokenizer

    tokenizer = train_tiny_tokenizer()
    model = _model()
    inputs = _inputs(SAMPLES[:1])
    expected = tokenizer.decode(model.generate(**inputs, max_new_tokens=8)[0], skip_special_tokens=True)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    thread = Thread(target=model.generate, kwargs={**inputs, "max_new_tokens": 8, "streamer": streamer})
    thread.start()
    pieces = list(streamer)
    thread.join()
    assert "".join(pieces) == expected and len(pieces) >= 1


def test_tiny_preset_batch_of_real_clips_equals_one_by_one() -> None:
    """SigLIP + STC + BEATs + Qwen2 at tiny size, inputs from the processor: frame counts and audio lengths differ."""
    import media

    from avlm.modeling import AVLMConfig
    from avlm.modeling.model import AVLMForCausalLM
    from avlm.processing import MediaConfig
    from avlm.processing.processor import Processor
    from avlm.processing.tokenizer import train_tiny_tokenizer

    config = AVLMConfig.from_preset("avlm-tiny")
    config.text_config.initializer_range = 0.3  # decisive logits, so near-ties cannot hide a difference
    torch.manual_seed(0)
    model = AVLMForCausalLM(config).eval()
    model.generation_config = GenerationConfig(pad_token_id=0, eos_token_id=None, do_sample=False)
    tokenizer = train_tiny_tokenizer()
    processor = Processor(tokenizer, MediaConfig.from_preset("avlm-tiny"), config.placeholder_token_ids)
    frames = torch.from_numpy(media.moving_square_frames(6, 40, 30))
    tone = torch.from_numpy(media.tone(1.0, 16000, freq=330.0)[0])
    requests = [("Who plays?", frames[:4], tone), ("What moves?", frames, None),
                ("What is that sound?", None, tone[:9600]), ("Hello there", None, None), ("And now?", frames, tone)]
    texts, videos, audios = (list(column) for column in zip(*requests, strict=True))
    batched = model.generate(**processor(texts, videos, audios), max_new_tokens=6)
    for row, (text, video, audio) in enumerate(requests):
        alone = model.generate(**processor(text, video, audio), max_new_tokens=6)
        assert alone[0].tolist() == batched[row].tolist(), f"request {row}"
    assert len({tuple(row) for row in batched.tolist()}) > 2


def test_equal_length_prompts_with_different_media_lengths_are_left_padded() -> None:
    """No text padding, but the rows gain different numbers of media tokens: the spliced rows must be padded on the
    left for generation (an unpadded text batch once came out right-padded, and the shorter rows answered garbage)."""
    model = _model()
    samples = [([10, 11, V, A, 12], 6, 12), ([14, 15, V, A, 16], 2, 4)]  # same prompt length, different media
    batch = _inputs(samples)
    assert bool(batch["attention_mask"].all())
    merged = model.embed_multimodal(**batch, padding_side="left")
    assert merged.attention_mask[1, 0] == 0 and merged.attention_mask[1, -1] == 1
    batched = model.generate(**batch, max_new_tokens=6)
    for row, sample in enumerate(samples):
        assert model.generate(**_inputs([sample]), max_new_tokens=6)[0].tolist() == batched[row].tolist()
    right_padded = dict(batch, attention_mask=torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]))
    with pytest.raises(ValueError, match="generation needs left-padded prompts"):
        model.generate(**right_padded, max_new_tokens=2)
