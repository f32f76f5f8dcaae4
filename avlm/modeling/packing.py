"""Sequence packing: a right- (or left-) padded batch becomes one row of real tokens, so no FLOPs go to padding.

Notation:
    b: batch rows, L': padded length, D: LLM width, T: real tokens of the batch (sum of the rows' lengths),
    l_i: real tokens of row i.

:func:`pack_sequences` takes what :func:`avlm.modeling.splice.merge_media` gives (``inputs_embeds [b, L', D]``,
``attention_mask [b, L']``, ``labels [b, L']``) and returns ``inputs_embeds [1, T, D]``, ``position_ids [1, T]``
restarting at 0 for every sample, ``labels [1, T]`` and no attention mask. The LLM then attends within each sample
only:

* ``flash_attention_2`` (and the ``kernels`` flash variants) turn the position ids into ``cu_seqlens`` (varlen
  kernels: no work at all across samples);
* ``sdpa``, ``eager`` and ``flex_attention`` get a block-diagonal causal mask from
  ``transformers.masking_utils.find_packed_sequence_indices``, which transformers applies whenever
  ``attention_mask`` is None and the position ids restart (no cache). Numerically the same as the padded batch;
  with SDPA the masked blocks are still computed, so the gain needs flash or flex attention.

Call the LLM with ``use_cache=False``: transformers skips the packed-sequence detection when a cache is passed or
created (``use_cache`` defaults to True in most configs, also in training mode), and the samples would then attend to
each other. ``AVLMForCausalLM.forward(..., pack=True)`` does this.

Rotary positions are the per-sample positions, as in the padded batch (positions count from 0 at each row's first
real token). Labels: position ``p`` is predicted from ``p - 1`` (:func:`avlm.modeling.loss.causal_lm_loss`), so the
first token of every sample gets ``IGNORE_INDEX``: the last token of sample ``i`` never predicts the first token of
sample ``i + 1``. In the padded batch that label is never used either (the shift drops a row's first label), so the
loss is the same sum over the same (prediction, target) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avlm.constants import IGNORE_INDEX


@dataclass
class PackedInputs:
    """One packed row: embeddings [1, T, D], position_ids [1, T], labels [1, T] or None, lengths [b] (l_i)."""

    inputs_embeds: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None
    lengths: torch.Tensor

    @property
    def cu_seqlens(self) -> torch.Tensor:
        """Cumulative lengths [b + 1] (int32, starting at 0), as flash-attention varlen kernels take them."""
        return torch.nn.functional.pad(self.lengths.cumsum(0), (1, 0)).to(torch.int32)


def pack_sequences(inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                   labels: torch.Tensor | None = None) -> PackedInputs:
    """Real tokens of every row, concatenated in row order, with per-sample positions and boundary labels ignored.

    Args:
        inputs_embeds: [b, L', D] (or any [b, L', ...] tensor).
        attention_mask: [b, L'], 1 on real tokens; every row contiguous (padding on one side, no holes). None: no
            padding (every row has L' tokens).
        labels: [b, L'] or None; ``IGNORE_INDEX`` where no loss is taken.

    Returns:
        :class:`PackedInputs` (``attention_mask`` must then be None when calling the LLM).

    Raises:
        ValueError: shapes disagree, a row has no real token, or a row has holes in its mask.
    """
    b, length = inputs_embeds.shape[:2]
    mask = _validated_mask(attention_mask, b, length, inputs_embeds.device)
    lengths = mask.sum(dim=1)
    positions = mask.cumsum(dim=1) - 1  # [b, L'], per-row position of each real token
    packed_labels = None
    if labels is not None:
        if labels.shape != (b, length):
            raise ValueError(f"labels {tuple(labels.shape)} must be [b, L'] = {(b, length)} as the embeddings")
        first = mask & (positions == 0)
        packed_labels = labels.masked_fill(first.to(labels.device), IGNORE_INDEX)[mask.to(labels.device)][None]
    return PackedInputs(inputs_embeds[mask][None], positions[mask][None], packed_labels, lengths)


def unpack(packed: torch.Tensor, attention_mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Inverse of the packing for per-token outputs: [1, T, ...] -> [b, L', ...] with ``fill`` at padding.

    Args:
        packed: per-token values of the packed row (hidden states, logits, ...), [1, T, ...].
        attention_mask: the padded batch's mask [b, L'] that was packed.
        fill: value written at padded positions.
    """
    mask = attention_mask.bool().to(packed.device)
    if packed.shape[0] != 1 or packed.shape[1] != int(mask.sum()):
        raise ValueError(f"packed values {tuple(packed.shape)} must be [1, {int(mask.sum())}, ...] for this mask")
    out = packed.new_full((*mask.shape, *packed.shape[2:]), fill)
    out[mask] = packed[0]
    return out


def _validated_mask(attention_mask: torch.Tensor | None, b: int, length: int, device: torch.device) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones(b, length, dtype=torch.bool, device=device)
    if attention_mask.shape != (b, length):
        raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must be [b, L'] = {(b, length)}")
    mask = attention_mask.to(device).bool()
    lengths = mask.sum(dim=1)
    if bool((lengths == 0).any()):
        raise ValueError(f"rows {torch.nonzero(lengths == 0).flatten().tolist()} have no real token to pack; drop "
                         "empty samples before packing")
    first = mask.int().argmax(dim=1)
    span = torch.arange(length, device=device)[None]
    contiguous = (span >= first[:, None]) & (span < (first + lengths)[:, None])
    if not bool((contiguous == mask).all()):
        raise ValueError("attention_mask has holes inside a row; packing needs each row's real tokens in one run "
                         "(padding on the left or on the right only)")
    return mask
