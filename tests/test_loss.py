"""avlm.modeling.loss.causal_lm_loss equals Hugging Face's causal-LM loss (value and gradients) while scoring only the
labelled positions, in chunks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.loss.loss_utils import ForCausalLMLoss

from avlm.modeling.loss import causal_lm_loss


def case(seed: int = 0, b: int = 3, length: int = 17, width: int = 8, vocab: int = 50):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, length, width, generator=generator, requires_grad=True)
    head = nn.Linear(width, vocab, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, width, generator=generator))
    labels = torch.randint(0, vocab, (b, length), generator=generator)
    labels[torch.rand(b, length, generator=generator) < 0.6] = -100
    labels[0, :5] = -100
    return hidden, head, labels


def reference(hidden, head, labels, num_items=None):
    return ForCausalLMLoss(head(hidden), labels, vocab_size=head.out_features, num_items_in_batch=num_items)


@pytest.mark.parametrize("chunk_size", [1, 4, 2048])
@pytest.mark.parametrize("num_items", [None, 7])
def test_value_and_gradients_equal_hf(chunk_size: int, num_items: int | None) -> None:
    hidden, head, labels = case()
    expected = reference(hidden, head, labels, num_items)
    grads = torch.autograd.grad(expected, [hidden, head.weight])
    got = causal_lm_loss(hidden, labels, head, num_items_in_batch=num_items, chunk_size=chunk_size)
    got_grads = torch.autograd.grad(got, [hidden, head.weight])
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    for ours, theirs in zip(got_grads, grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_unlabelled_positions_never_reach_the_head() -> None:
    hidden, head, labels = case()
    seen = []
    head.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    causal_lm_loss(hidden, labels, head, chunk_size=3)
    assert sum(seen) == int((labels[:, 1:] != -100).sum())
    assert max(seen) <= 3


def test_no_labels_gives_zero_with_a_graph_and_bad_shapes_error() -> None:
    hidden, head, labels = case()
    loss = causal_lm_loss(hidden, torch.full_like(labels, -100), head)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(hidden.grad) == 0
    with pytest.raises(ValueError, match="must share"):
        causal_lm_loss(hidden, labels[:, :-1], head)


@pytest.mark.parametrize("with_lora", [False, True])
def test_model_loss_without_logits_equals_the_llm_loss(with_lora: bool) -> None:
    from avlm_dummies import PLACEHOLDERS, dummy_model

    from avlm.modeling.lora import LoRAConfig
    from avlm.modeling.trainable import TrainablePolicy, prepare_for_training

    model = dummy_model().train()
    if with_lora:
        prepare_for_training(model, TrainablePolicy(), LoRAConfig(rank=4, alpha=8, dropout=0.0))
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.data.normal_(0, 0.3)
    video, audio = PLACEHOLDERS["video"], PLACEHOLDERS["audio"]
    generator = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.tensor([[10, video, audio, 11, 12, 13], [14, video, 15, 16, 0, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]),
             "labels": torch.tensor([[-100, -100, -100, -100, 12, 13], [-100, -100, -100, 16, -100, -100]]),
             "video_pixels": torch.randn(2, 4, 3, 8, 8, generator=generator),
             "video_frame_counts": torch.tensor([4, 2]),
             "audio_features": torch.randn(1, 12, 10, generator=generator)}
    trainable = [p for p in model.parameters() if p.requires_grad]
    full = model(**batch, return_logits=True)
    expected_grads = torch.autograd.grad(full.loss, trainable)
    lean = model(**batch)
    assert lean.logits is None
    torch.testing.assert_close(lean.loss, full.loss, rtol=1e-6, atol=1e-6)
    for ours, theirs in zip(torch.autograd.grad(lean.loss, trainable), expected_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    halved = model(**batch, num_items_in_batch=2 * labelled)
    torch.testing.assert_close(halved.loss, lean.loss / 2, rtol=1e-6, atol=1e-6)
