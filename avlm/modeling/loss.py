"""Next-token loss computed only where there are labels, in chunks: the LLM head never sees the other positions.

Notation: b batch rows, L sequence length, D LLM width, V vocabulary, k labelled positions (after the shift), c chunk.

Hugging Face's causal-LM loss projects every position to the vocabulary (``[b, L, V]``), upcasts all of it to fp32
and then ignores most of it: in instruction data only the assistant's answers carry labels, a few percent of an
audio-visual sequence whose 1,000+ media tokens never do. Here the hidden states are gathered at the labelled
positions first (``[k, D]``), then projected and scored ``c`` rows at a time, each chunk recomputed in the backward
pass instead of stored, so memory is ``c x V`` fp32 whatever the batch. The value equals HF's
``ForCausalLMLoss(lm_head(hidden), labels)`` (same shift, fp32 cross-entropy, mean over labelled tokens or sum /
``num_items_in_batch``), up to float summation order.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from avlm.constants import IGNORE_INDEX


def causal_lm_loss(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    lm_head: nn.Module,
    num_items_in_batch: int | torch.Tensor | None = None,
    chunk_size: int = 2048,
) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions.

    Args:
        hidden: final hidden states ``[b, L, D]`` (after the LLM's last norm).
        labels: ``[b, L]`` token ids, ``-100`` where no loss is taken; position ``i`` is predicted from ``i - 1``.
        lm_head: the output projection ``D -> V``.
        num_items_in_batch: divide the summed loss by this instead of the labelled count (gradient accumulation
            over micro-batches of different label counts, as HF Trainer does).
        chunk_size: rows projected at once; peak extra memory is about ``chunk_size * V * 4`` bytes.

    Returns:
        A scalar fp32 loss (0 with a gradient of zeros when nothing is labelled and no ``num_items_in_batch``).
    """
    if hidden.shape[:2] != labels.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and labels {tuple(labels.shape)} must share [b, L]")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    targets = labels[:, 1:].to(hidden.device)
    keep = targets != IGNORE_INDEX
    selected, targets = hidden[:, :-1][keep], targets[keep]  # [k, D], [k]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, len(targets), chunk_size):
        rows, wanted = selected[start:start + chunk_size], targets[start:start + chunk_size]
        if torch.is_grad_enabled() and rows.requires_grad:
            total = total + checkpoint(_chunk_loss, rows, wanted, lm_head, use_reentrant=False)
        else:
            total = total + _chunk_loss(rows, wanted, lm_head)
    if num_items_in_batch is not None:
        return total / torch.as_tensor(num_items_in_batch, device=total.device)
    if len(targets) == 0:
        return total + 0.0 * hidden.sum()  # keeps the graph (and every rank's backward) alive
    return total / len(targets)


def _chunk_loss(rows: torch.Tensor, targets: torch.Tensor, lm_head: nn.Module) -> torch.Tensor:
    """Summed fp32 cross-entropy of one chunk: ``[c, D] -> [c, V] -> scalar``."""
    logits = lm_head(rows).float()
    return nn.functional.cross_entropy(logits, targets, reduction="sum")
