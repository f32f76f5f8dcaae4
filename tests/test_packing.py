"""Sequence packing keeps the numerics: packed loss, per-token logits and gradients equal the padded batch's."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from avlm.modeling.loss import causal_lm_loss
from avlm.modeling.packing import IGNORE_INDEX, pack_sequences, unpack

LENGTHS = [7, 12, 1, 5]


def tiny_qwen2(attn: str) -> torch.nn.Module:
    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=64, initializer_range=0.2, rope_theta=10000.0)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn).train()


def padded_batch(lengths: list[int], side: str = "right", dim: int = 32) -> dict[str, torch.Tensor]:
    """Embeddings [b, L', D], mask, positions from 0 at each row's first token, labels on about half the tokens
    (never on a row's first token: nothing predicts it)."""
    generator = torch.Generator().manual_seed(1)
    b, length = len(lengths), max(lengths)
    mask = torch.zeros(b, length, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1 if side == "right" else 0
        if side == "left":
            mask[row, length - n:] = 1
    labels = torch.randint(0, 64, (b, length), generator=generator)
    labels = labels.masked_fill((torch.rand(b, length, generator=generator) < 0.4) | (mask == 0), IGNORE_INDEX)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    labels = labels.masked_fill((positions == 0) & (mask == 1), IGNORE_INDEX)  # left padding: a pad would predict it
    return {"inputs_embeds": torch.randn(b, length, dim, generator=generator), "attention_mask": mask,
            "position_ids": positions, "labels": labels}


def test_pack_layout_restarts_positions_and_ignores_each_sample_start() -> None:
    batch = padded_batch(LENGTHS)
    packed = pack_sequences(batch["inputs_embeds"], batch["attention_mask"], batch["labels"])
    starts = torch.tensor([0, 7, 19, 20])
    assert packed.inputs_embeds.shape == (1, sum(LENGTHS), 32)
    assert packed.position_ids[0].tolist() == [p for n in LENGTHS for p in range(n)]
    assert packed.lengths.tolist() == LENGTHS and packed.cu_seqlens.tolist() == [0, 7, 19, 20, 25]
    assert (packed.labels[0, starts] == IGNORE_INDEX).all()
    rest = torch.ones(sum(LENGTHS), dtype=torch.bool)
    rest[starts] = False
    assert torch.equal(packed.labels[0, rest], batch["labels"][batch["attention_mask"].bool()][rest])
    torch.testing.assert_close(unpack(packed.inputs_embeds, batch["attention_mask"]),
                               batch["inputs_embeds"] * batch["attention_mask"][..., None])


def test_boundary_label_matters() -> None:
    """Without the IGNORE at sample starts the last token of a sample would predict the next sample's first label."""
    batch = padded_batch(LENGTHS)
    batch["labels"][:, 0] = 5  # every sample's first token labelled
    mask = batch["attention_mask"].bool()
    packed = pack_sequences(batch["inputs_embeds"], batch["attention_mask"], batch["labels"])
    pairs = int((packed.labels[0, 1:] != IGNORE_INDEX).sum())
    assert pairs == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    naive = batch["labels"][mask]
    assert int((naive[1:] != IGNORE_INDEX).sum()) == pairs + len(LENGTHS) - 1


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_packed_equals_padded_loss_logits_and_gradients(attn: str, side: str) -> None:
    model = tiny_qwen2(attn)
    batch = padded_batch(LENGTHS, side)
    params = [p for name, p in model.named_parameters() if "embed_tokens" not in name]  # embeddings are given
    padded = model.model(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"],
                         position_ids=batch["position_ids"]).last_hidden_state
    padded_loss = causal_lm_loss(padded, batch["labels"], model.lm_head)
    padded_grads = torch.autograd.grad(padded_loss, params)
    packed = pack_sequences(batch["inputs_embeds"], batch["attention_mask"], batch["labels"])
    hidden = model.model(inputs_embeds=packed.inputs_embeds, position_ids=packed.position_ids,
                          use_cache=False).last_hidden_state
    packed_loss = causal_lm_loss(hidden, packed.labels, model.lm_head)
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-5, atol=1e-5)
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(model.lm_head(unpack(hidden, mask))[mask], model.lm_head(padded)[mask],
                               rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(torch.autograd.grad(packed_loss, params), padded_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_packed_without_restart_would_differ() -> None:
    """The check above can fail: one long sequence (positions not restarting) gives another loss."""
    model = tiny_qwen2("sdpa")
    batch = padded_batch(LENGTHS)
    padded = model.model(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"],
                         position_ids=batch["position_ids"]).last_hidden_state
    packed = pack_sequences(batch["inputs_embeds"], batch["attention_mask"], batch["labels"])
    hidden = model.model(inputs_embeds=packed.inputs_embeds, use_cache=False).last_hidden_state
    loss = causal_lm_loss(hidden, packed.labels, model.lm_head)
    assert abs(loss.item() - causal_lm_loss(padded, batch["labels"], model.lm_head).item()) > 1e-3


def test_pack_rejects_holes_and_empty_rows() -> None:
    embeds = torch.zeros(2, 4, 8)
    with pytest.raises(ValueError, match="holes"):
        pack_sequences(embeds, torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1]]))
    with pytest.raises(ValueError, match=r"rows \[1\] have no real token"):
        pack_sequences(embeds, torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="labels"):
        pack_sequences(embeds, None, torch.zeros(2, 3, dtype=torch.long))


def mixed_batch(placeholders: dict[str, int]) -> dict[str, torch.Tensor]:
    """Four rows of the tiny model: audio-visual, video-only, audio-only, text-only; right-padded."""
    video, audio = placeholders["video"], placeholders["audio"]
    rows = [[20, video, audio, 21, 22, 23, 24], [25, video, 26, 27], [28, audio, 29, 30, 31], [32, 33, 34]]
    length = max(map(len, rows))
    ids = torch.tensor([row + [0] * (length - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (length - len(row)) for row in rows])
    labels = ids.masked_fill((mask == 0) | torch.isin(ids, torch.tensor([video, audio])), IGNORE_INDEX)
    labels[:, 0] = IGNORE_INDEX
    generator = torch.Generator().manual_seed(2)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels,
            "video_pixels": torch.randn(2, 4, 3, 16, 16, generator=generator),
            "video_frame_counts": torch.tensor([4, 4]), "video_sample_index": torch.tensor([0, 1]),
            "audio_features": torch.randn(2, 160, 128, generator=generator),
            "audio_lengths": torch.tensor([160, 120]), "audio_sample_index": torch.tensor([0, 2])}


def test_model_pack_option_same_loss_and_gradients_mixed_modalities() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster on a busy machine
    try:
        _check_model_pack()
    finally:
        torch.set_num_threads(threads)


def _check_model_pack() -> None:
    from avlm.modeling import AVLMConfig
    from avlm.modeling.lora import LoRAConfig
    from avlm.modeling.model import AVLMForCausalLM
    from avlm.modeling.trainable import TrainablePolicy, prepare_for_training

    torch.manual_seed(0)
    config = AVLMConfig.from_preset("avlm-tiny")
    model = AVLMForCausalLM(config)
    prepare_for_training(model, TrainablePolicy(), LoRAConfig(rank=4, alpha=8, dropout=0.0))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.3)
    model.train()
    batch = mixed_batch(config.placeholder_token_ids)
    trainable = [p for p in model.parameters() if p.requires_grad]
    padded = model(**batch)
    expected = torch.autograd.grad(padded.loss, trainable)
    packed = model(**batch, pack=True)
    torch.testing.assert_close(packed.loss, padded.loss, rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(torch.autograd.grad(packed.loss, trainable), expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    labelled = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    torch.testing.assert_close(model(**batch, pack=True, num_items_in_batch=2 * labelled).loss, padded.loss / 2,
                               rtol=1e-5, atol=1e-5)
    with_logits = model(**batch, pack=True, return_logits=True)
    torch.testing.assert_close(with_logits.loss, padded.loss, rtol=1e-5, atol=1e-5)
    merged = model.embed_multimodal(**{k: v for k, v in batch.items() if k != "labels"})
    assert with_logits.logits.shape[:2] == (1, int(merged.attention_mask.sum()))


@pytest.mark.slow
def test_packed_flex_attention_forward_equals_padded() -> None:
    """flex_attention skips the cross-sample blocks of a packed row (backward needs a GPU; ~15 s of compile)."""
    batch = padded_batch(LENGTHS)
    mask = batch["attention_mask"].bool()
    padded = tiny_qwen2("sdpa").model(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"],
                                      position_ids=batch["position_ids"], use_cache=False).last_hidden_state
    packed = pack_sequences(batch["inputs_embeds"], batch["attention_mask"], batch["labels"])
    with torch.no_grad():
        hidden = tiny_qwen2("flex_attention").model(inputs_embeds=packed.inputs_embeds,
                                                    position_ids=packed.position_ids, use_cache=False)
    torch.testing.assert_close(unpack(hidden.last_hidden_state, mask)[mask], padded[mask].detach(),
                               rtol=1e-5, atol=1e-5)
