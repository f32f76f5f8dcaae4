"""AVLMForCausalLM: encode -> connect -> merge -> llm on mixed batches, with dummy encoders/connectors and tiny LLMs."""

from __future__ import annotations

import pytest
import torch
from avlm_dummies import PLACEHOLDERS, dummy_model

V, A = PLACEHOLDERS["video"], PLACEHOLDERS["audio"]
ROWS = [  # (text ids, frames or None, audio frames or None): AV, video-only, audio-only, text-only
    ([10, V, A, 11, 12], 4, 12),
    ([13, V, 14], 2, None),
    ([15, 16, A, 17, 18, 19], None, 6),
    ([20, 21, 22], None, None),
]


def _media(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    pixels = [torch.randn(frames, 3, 8, 8, generator=generator) for _, frames, _ in ROWS if frames]
    sounds = [torch.randn(count, 10, generator=generator) for _, _, count in ROWS if count]
    return pixels, sounds


def _batch(rows, pixels, sounds, side: str) -> dict:
    """Pad ids and stack media like avlm.processing.collate."""
    longest = max(len(ids) for ids, _, _ in rows)
    input_ids = torch.zeros(len(rows), longest, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, (ids, _, _) in enumerate(rows):
        span = slice(longest - len(ids), None) if side == "left" else slice(0, len(ids))
        input_ids[row, span], attention_mask[row, span] = torch.tensor(ids), 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if pixels:
        batch["video_pixels"] = torch.zeros(len(pixels), max(len(p) for p in pixels), 3, 8, 8)
        for index, frames in enumerate(pixels):
            batch["video_pixels"][index, : len(frames)] = frames
        batch["video_frame_counts"] = torch.tensor([len(p) for p in pixels])
    if sounds:
        batch["audio_features"] = torch.zeros(len(sounds), max(len(s) for s in sounds), 10)
        for index, clip in enumerate(sounds):
            batch["audio_features"][index, : len(clip)] = clip
        batch["audio_lengths"] = torch.tensor([len(s) for s in sounds])
    return batch


@pytest.mark.parametrize("family", ["qwen2", "llama"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_mixed_batch_equals_each_row_alone(family: str, side: str) -> None:
    model = dummy_model(family)
    pixels, sounds = _media()
    with torch.no_grad():
        batch = model(**_batch(ROWS, pixels, sounds, side))
        merged = model.embed_multimodal(**_batch(ROWS, pixels, sounds, side))
        video_index = audio_index = 0
        for row, (ids, frames, count) in enumerate(ROWS):
            row_pixels = pixels[video_index: video_index + bool(frames)]
            row_sounds = sounds[audio_index: audio_index + bool(count)]
            video_index, audio_index = video_index + bool(frames), audio_index + bool(count)
            alone = model(**_batch([ROWS[row]], row_pixels, row_sounds, side)).logits[0]
            expected_length = len(ids) - bool(frames) - bool(count) + 4 * (frames or 0) // 2 + (count or 0) // 2
            valid = merged.attention_mask[row].bool()
            assert alone.shape[0] == expected_length == int(valid.sum())
            torch.testing.assert_close(batch.logits[row][valid], alone, atol=2e-5, rtol=1e-5)


def test_media_tokens_land_at_their_placeholders_video_first() -> None:
    model = dummy_model()
    pixels, sounds = _media()
    with torch.no_grad():
        merged = model.embed_multimodal(**_batch(ROWS[:1], pixels[:1], sounds[:1], "right"))
        video = model.connectors["video"](model.encoders["video"](pixels[0][None]))[0]
        audio = model.connectors["audio"](model.encoders["audio"](sounds[0][None])[0])[0]
        text = model.get_input_embeddings()(torch.tensor([10, 11, 12]))
    expected = torch.cat([text[:1], video, audio, text[1:]])
    assert merged.inputs_embeds.shape == (1, 1 + 8 + 6 + 2, 16)
    torch.testing.assert_close(merged.inputs_embeds[0], expected)
    assert merged.position_ids[0].tolist() == list(range(17))


def test_concat_at_video_appends_audio_at_the_single_video_placeholder() -> None:
    separate, concat = dummy_model(av_fusion="separate"), dummy_model(av_fusion="concat_at_video")
    pixels, sounds = _media()
    av_separate = _batch([([10, V, A, 11], 4, 12)], pixels[:1], sounds[:1], "right")
    av_concat = _batch([([10, V, 11], 4, 12)], pixels[:1], sounds[:1], "right")
    with torch.no_grad():
        expected = separate.embed_multimodal(**av_separate).inputs_embeds
        torch.testing.assert_close(concat.embed_multimodal(**av_concat).inputs_embeds, expected)
        rows = [([10, V, 11], 4, 12), ([12, A, 13], None, 6)]  # AV row, then an audio-only row
        batch = _batch(rows, pixels[:1], sounds[:2], "left")
        with pytest.raises(ValueError, match="audio_sample_index"):
            concat.embed_multimodal(**batch)
        merged = concat.embed_multimodal(**batch, audio_sample_index=torch.tensor([0, 1]))
    assert merged.attention_mask.sum(1).tolist() == [2 + 8 + 6, 2 + 3]
    torch.testing.assert_close(merged.inputs_embeds[0], expected[0])


def test_labels_ignore_media_and_gradients_reach_only_trainable_parts() -> None:
    model = dummy_model()
    model.encoders["audio"].requires_grad_(False)
    model.train()
    assert not model.encoders["audio"].training and model.encoders["video"].training  # frozen towers stay in eval
    model.encoders.requires_grad_(False)
    pixels, sounds = _media()
    batch = _batch(ROWS, pixels, sounds, "right")
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    merged = model.embed_multimodal(**batch)
    media = merged.attention_mask.bool() & (merged.labels == -100)
    assert int(media.sum()) == 8 + 6 + 4 + 3  # every media token, nothing else, is ignored
    model(**batch).loss.backward()
    assert all(p.grad is None for p in model.encoders.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.connectors.parameters())
    assert model.llm.get_input_embeddings().weight.grad is not None


def test_all_frames_of_a_batch_go_through_the_vision_encoder_in_one_call() -> None:
    model = dummy_model()
    pixels, sounds = _media()
    with torch.no_grad():
        model(**_batch(ROWS, pixels, sounds, "left"))
    assert model.encoders["video"].calls == 1


def test_mismatched_media_and_placeholders_are_reported() -> None:
    model = dummy_model()
    pixels, sounds = _media()
    batch = _batch([([10, 11], None, None)], pixels[:1], [], "right")
    with pytest.raises(ValueError, match="1 video items were given"):
        model(**batch)
    batch = _batch([([10, V, V, 11], 4, None)], pixels[:1], [], "right")
    with pytest.raises(ValueError, match="2 video placeholders but 1"):
        model(**batch)
    with pytest.raises(ValueError, match="video_frame_counts must lie in"):
        model(**{**_batch(ROWS[:1], pixels[:1], sounds[:1], "right"), "video_frame_counts": torch.tensor([9])})


def test_num_media_tokens_follow_the_connectors() -> None:
    assert dummy_model().num_media_tokens(num_frames=4, num_audio_frames=12) == {"video": 8, "audio": 6}
    assert dummy_model(av_fusion="concat_at_video").num_media_tokens(4, 12) == {"video": 14}


def test_videollama2_av_preset_has_the_official_shape() -> None:
    from avlm.modeling import AVLMConfig
    from avlm.modeling.model import AVLMForCausalLM

    with torch.device("meta"):  # 8.5 B parameters: shapes only
        model = AVLMForCausalLM(AVLMConfig.from_preset("videollama2.1-7b-av"))
    assert model.num_media_tokens(num_frames=16) == {"video": 1352}  # 8 x 13 x 13
    assert model.num_media_tokens(num_audio_frames=2998) == {"audio": 1496}  # 187 x 8
    assert model.num_media_tokens(16, 2998) == {"video": 1352 + 1496}  # concat_at_video
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in
              [("beats", model.encoders["audio"]), ("projector", model.connectors["audio"])]}
    assert counts == {"beats": 90_717_055, "projector": 768 * 3584 + 3584 + 3584 * 3584 + 3584}


def test_state_dict_keeps_each_part_under_one_prefix_with_its_own_names() -> None:
    from avlm.modeling import AVLMConfig
    from avlm.modeling.model import AVLMForCausalLM

    keys = set(AVLMForCausalLM(AVLMConfig.from_preset("avlm-tiny")).state_dict())
    for key in ["llm.model.embed_tokens.weight", "llm.model.layers.1.self_attn.q_proj.bias", "llm.model.norm.weight",
                "llm.lm_head.weight", "connectors.video.s1.b1.conv1.conv.weight", "connectors.video.sampler.0.weight",
                "connectors.video.readout.2.bias", "connectors.audio.0.weight", "connectors.audio.2.bias",
                "encoders.audio.patch_embedding.weight", "encoders.audio.encoder.layers.1.self_attn.grep_a",
                "encoders.video.embeddings.patch_embedding.weight", "encoders.video.encoder.layers.0.mlp.fc1.weight"]:
        assert key in keys, key
    assert {key.split(".")[0] for key in keys} == {"llm", "encoders", "connectors"}
