"""fusion.token_merge.merge_modal_embeddings on mixed batches: order, padding sides, labels, count errors, gradients."""

from __future__ import annotations

import pytest
import torch

from fusion.token_merge import IGNORE_INDEX, merge_modal_embeddings

VIDEO, AUDIO, PAD = 90, 91, 0
TOKEN_IDS = {"video": VIDEO, "audio": AUDIO}
WIDTH = 6


def _spliced_rows(input_ids, text_embeds, features, attention_mask):
    """Per row, the expected (embeddings, is_media) built one token at a time (the obvious, slow way)."""
    queues = {modality: list(segments) for modality, segments in features.items()}
    modality_of = {token: modality for modality, token in TOKEN_IDS.items()}
    rows = []
    for ids, embeds, mask in zip(input_ids.tolist(), text_embeds, attention_mask.tolist(), strict=True):
        pieces, media = [], []
        for position, (token, keep) in enumerate(zip(ids, mask, strict=True)):
            if not keep:
                continue
            if token in modality_of:
                segment = queues[modality_of[token]].pop(0)
                pieces.append(segment)
                media += [True] * len(segment)
            else:
                pieces.append(embeds[position:position + 1])
                media.append(False)
        rows.append((torch.cat(pieces), torch.tensor(media, dtype=torch.bool)))
    assert all(not queue for queue in queues.values())
    return rows


def _mixed_batch():
    """Rows: video-only, audio-only, audio-visual (audio placeholder first), text-only; right padded."""
    torch.manual_seed(0)
    input_ids = torch.tensor([[1, VIDEO, 5, 6, PAD, PAD],
                              [1, 2, AUDIO, 7, 8, PAD],
                              [1, AUDIO, 3, VIDEO, 4, 9],
                              [1, 2, 3, PAD, PAD, PAD]])
    attention_mask = (input_ids != PAD).long()
    text_embeds = torch.randn(4, 6, WIDTH)
    features = {"video": [torch.randn(3, WIDTH), torch.randn(2, WIDTH)],  # row 0, row 2
                "audio": [torch.randn(4, WIDTH), torch.randn(1, WIDTH)]}  # row 1, row 2
    labels = torch.where(attention_mask.bool(), input_ids + 100, IGNORE_INDEX)
    return input_ids, text_embeds, features, attention_mask, labels


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_mixed_batch_matches_token_by_token_splicing(padding_side):
    input_ids, text_embeds, features, attention_mask, labels = _mixed_batch()
    merged = merge_modal_embeddings(input_ids, text_embeds, features, TOKEN_IDS, attention_mask, labels,
                                    padding_side=padding_side)
    expected = _spliced_rows(input_ids, text_embeds, features, attention_mask)
    lengths = [len(embeds) for embeds, _ in expected]
    assert lengths == [3 + 3, 4 + 4, 4 + 1 + 2, 3]
    assert merged.inputs_embeds.shape == (4, max(lengths), WIDTH)
    for row, (embeds, media) in enumerate(expected):
        span = slice(0, len(embeds)) if padding_side == "right" else slice(max(lengths) - len(embeds), None)
        torch.testing.assert_close(merged.inputs_embeds[row, span], embeds, rtol=0, atol=0)
        assert merged.attention_mask[row].sum() == len(embeds) and (merged.attention_mask[row, span] == 1).all()
        assert merged.position_ids[row, span].tolist() == list(range(len(embeds)))
        row_labels = merged.labels[row, span]
        assert (row_labels[media] == IGNORE_INDEX).all()
        is_text = attention_mask[row].bool() & ~torch.isin(input_ids[row], torch.tensor([VIDEO, AUDIO]))
        text_labels = labels[row][is_text]
        assert row_labels[~media].tolist() == text_labels.tolist()
        padding = merged.attention_mask[row] == 0
        assert (merged.inputs_embeds[row][padding] == 0).all() and (merged.labels[row][padding] == IGNORE_INDEX).all()
        assert (merged.position_ids[row][padding] == 1).all()


def test_audio_before_video_keeps_prompt_order():
    input_ids, text_embeds, features, attention_mask, _ = _mixed_batch()
    merged = merge_modal_embeddings(input_ids, text_embeds, features, TOKEN_IDS, attention_mask)
    row = merged.inputs_embeds[2]  # [1] [audio x1] [3] [video x2] [4] [9]
    torch.testing.assert_close(row[1], features["audio"][1][0])
    torch.testing.assert_close(row[3:5], features["video"][1])
    torch.testing.assert_close(row[2], text_embeds[2, 2])


def test_input_padding_side_does_not_matter():
    input_ids, text_embeds, features, attention_mask, labels = _mixed_batch()
    right = merge_modal_embeddings(input_ids, text_embeds, features, TOKEN_IDS, attention_mask, labels)
    shift = (attention_mask == 0).sum(dim=1)
    left_ids, left_mask, left_labels = (torch.stack([row.roll(int(s)) for row, s in zip(tensor, shift, strict=True)])
                                        for tensor in (input_ids, attention_mask, labels))
    left_embeds = torch.stack([row.roll(int(s), dims=0) for row, s in zip(text_embeds, shift, strict=True)])
    left = merge_modal_embeddings(left_ids, left_embeds, features, TOKEN_IDS, left_mask, left_labels)
    for field in ("inputs_embeds", "attention_mask", "position_ids", "labels"):
        torch.testing.assert_close(getattr(left, field), getattr(right, field), rtol=0, atol=0)


def test_audio_visual_segment_at_one_video_placeholder_and_tensor_container():
    torch.manual_seed(1)
    input_ids = torch.tensor([[1, VIDEO, 2], [3, VIDEO, 4]])
    text_embeds = torch.randn(2, 3, WIDTH)
    video, audio = torch.randn(2, 5, WIDTH), torch.randn(2, 3, WIDTH)
    av = torch.cat([video, audio], dim=1)  # VideoLLaMA2-AV: [video tokens ; audio tokens] per sample
    merged = merge_modal_embeddings(input_ids, text_embeds, {"video": av}, {"video": VIDEO})
    as_list = merge_modal_embeddings(input_ids, text_embeds, {"video": list(av)}, {"video": VIDEO})
    torch.testing.assert_close(merged.inputs_embeds, as_list.inputs_embeds, rtol=0, atol=0)
    assert merged.inputs_embeds.shape == (2, 2 + 8, WIDTH) and merged.attention_mask.dtype == torch.long
    torch.testing.assert_close(merged.inputs_embeds[1, 1:6], video[1])
    torch.testing.assert_close(merged.inputs_embeds[1, 6:9], audio[1])


def test_text_only_batch_is_unchanged():
    input_ids = torch.tensor([[1, 2, 3], [4, 5, PAD]])
    text_embeds = torch.randn(2, 3, WIDTH)
    merged = merge_modal_embeddings(input_ids, text_embeds, {}, TOKEN_IDS, (input_ids != PAD).long())
    torch.testing.assert_close(merged.inputs_embeds[0], text_embeds[0], rtol=0, atol=0)
    torch.testing.assert_close(merged.inputs_embeds[1, :2], text_embeds[1, :2], rtol=0, atol=0)
    assert merged.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]] and merged.labels is None


@pytest.mark.parametrize(("video_segments", "message"), [
    (1, r"video: the batch holds 2 placeholder tokens \(id 90\) but 1 video feature segments"),
    (3, r"video: the batch holds 2 placeholder tokens \(id 90\) but 3 video feature segments"),
])
def test_count_mismatch_states_both_counts(video_segments, message):
    input_ids, text_embeds, features, attention_mask, _ = _mixed_batch()
    features["video"] = [torch.randn(2, WIDTH) for _ in range(video_segments)]
    with pytest.raises(ValueError, match=message):
        merge_modal_embeddings(input_ids, text_embeds, features, TOKEN_IDS, attention_mask)


def test_placeholders_without_features_and_bad_inputs_are_errors():
    input_ids, text_embeds, features, attention_mask, _ = _mixed_batch()
    with pytest.raises(ValueError, match=r"audio: the batch holds 2 placeholder tokens \(id 91\) but 0 audio"):
        merge_modal_embeddings(input_ids, text_embeds, {"video": features["video"]}, TOKEN_IDS, attention_mask)
    with pytest.raises(ValueError, match=r"features given for \['image'\]"):
        merge_modal_embeddings(input_ids, text_embeds, {**features, "image": []}, TOKEN_IDS, attention_mask)
    with pytest.raises(ValueError, match=r"features\['audio'\]\[1\] must be \[n, 6\]"):
        bad = {**features, "audio": [features["audio"][0], torch.randn(1, WIDTH + 1)]}
        merge_modal_embeddings(input_ids, text_embeds, bad, TOKEN_IDS, attention_mask)
    with pytest.raises(ValueError, match="padding_side must be 'right' or 'left'"):
        merge_modal_embeddings(input_ids, text_embeds, features, TOKEN_IDS, attention_mask, padding_side="center")


def test_gradients_reach_features_and_text_but_not_placeholder_embeddings():
    input_ids, text_embeds, features, attention_mask, _ = _mixed_batch()
    text_embeds = text_embeds.to(torch.bfloat16).requires_grad_(True)
    features = {modality: [segment.clone().requires_grad_(True) for segment in segments]
                for modality, segments in features.items()}
    merged = merge_modal_embeddings(input_ids, text_embeds, features, TOKEN_IDS, attention_mask)
    assert merged.inputs_embeds.dtype == torch.bfloat16
    weights = torch.randn(merged.inputs_embeds.shape).bfloat16().float()  # exact through the bf16 cast
    (merged.inputs_embeds.float() * weights).sum().backward()
    row = 2  # [1] [audio x1] [3] [video x2] [4] [9]
    torch.testing.assert_close(features["audio"][1].grad[0], weights[row, 1])
    torch.testing.assert_close(features["video"][1].grad, weights[row, 3:5])
    for segment in (segment for segments in features.values() for segment in segments):
        assert segment.grad is not None and segment.grad.abs().sum() > 0
    dropped = torch.isin(input_ids, torch.tensor([VIDEO, AUDIO])) | (attention_mask == 0)
    assert (text_embeds.grad[dropped] == 0).all() and (text_embeds.grad[~dropped] != 0).all()
