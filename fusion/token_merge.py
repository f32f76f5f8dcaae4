"""Token splicing: each media placeholder in an embedded prompt is replaced by that media segment's LLM tokens.

Notation:
    b: batch rows, L: prompt length (one placeholder token per media segment), L': length after splicing,
    d: LLM width, n_i: LLM tokens of segment i.

Feature container: ``features[modality]`` is a list of tensors [n_i, d], one per segment, in the order the
placeholders of that modality appear in the batch read row by row (row 0 first, left to right within a row);
a tensor [k, n, d] of equal-length segments is accepted as the list of its k rows. Rows without media simply hold no
placeholder. The function is modality-agnostic: for VideoLLaMA2-AV (audio tokens appended to the video tokens at a
single ``<video>`` placeholder) the caller passes the already concatenated ``[video ; audio]`` segment as the video
feature of that sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

IGNORE_INDEX = -100


@dataclass
class MergedEmbeddings:
    """Spliced sequences: ``inputs_embeds`` [b, L', d], ``attention_mask`` [b, L'], ``position_ids`` [b, L']
    (0, 1, ... over each row's tokens, 1 at padding as in HF ``generate``), ``labels`` [b, L'] or None
    (``IGNORE_INDEX`` over media tokens and padding)."""

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None


def merge_modal_embeddings(
    input_ids: torch.Tensor,
    text_embeds: torch.Tensor,
    features: Mapping[str, Sequence[torch.Tensor] | torch.Tensor],
    token_ids: Mapping[str, int],
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    padding_side: Literal["right", "left"] = "right",
) -> MergedEmbeddings:
    """Replace every placeholder by its segment's rows, keep prompt order, re-pad to the longest row.

    Args:
        input_ids: [b, L] token ids with one ``token_ids[modality]`` placeholder per media segment.
        text_embeds: [b, L, d] the LLM's embeddings of ``input_ids`` (placeholder rows are discarded).
        features: modality -> segments [n_i, d] (see the module docstring for the order).
        token_ids: modality -> placeholder token id; a modality without features must have no placeholder.
        attention_mask: [b, L], 1 on tokens, 0 on padding (dropped, on either side), or None (all tokens).
            Placeholders count only where the mask is 1.
        labels: [b, L] or None; media positions and padding get ``IGNORE_INDEX``.
        padding_side: where the new padding goes: ``"right"`` (training) or ``"left"`` (generation).

    Returns:
        :class:`MergedEmbeddings`; ``inputs_embeds`` has the dtype of ``text_embeds`` and is differentiable with
        respect to both ``text_embeds`` and every feature segment.
    """
    batch, length = input_ids.shape
    _check_inputs(input_ids, text_embeds, features, token_ids, attention_mask, labels, padding_side)
    valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    positions, segments = [], []  # flat positions of placeholders and their segments, per modality
    for modality, token_id in token_ids.items():
        found = ((input_ids == token_id) & valid).flatten().nonzero().flatten()
        given = list(features.get(modality, []))
        if len(found) != len(given):
            raise ValueError(f"{modality}: the batch holds {len(found)} placeholder tokens (id {token_id}) but "
                             f"{len(given)} {modality} feature segments were given; give one segment per placeholder")
        positions.append(found)
        segments += given
    positions = torch.cat(positions)  # aligned with `segments` (modality by modality)
    repeats = valid.flatten().long()  # 1 per token, 0 per padding position, n_i per placeholder
    repeats[positions] = torch.tensor([len(segment) for segment in segments], dtype=torch.long,
                                      device=repeats.device)
    is_placeholder = torch.zeros_like(repeats, dtype=torch.bool).index_fill(0, positions, True)
    segments = [segments[index] for index in positions.argsort().tolist()]  # prompt order, across modalities
    source = torch.repeat_interleave(torch.arange(batch * length, device=input_ids.device), repeats)
    media = is_placeholder[source]
    flat = text_embeds.flatten(0, 1)[source]
    if segments:
        flat = flat.masked_scatter(media[:, None], torch.cat(segments).to(flat.dtype))
    row_lengths = repeats.view(batch, length).sum(dim=1)
    new_length = int(row_lengths.max()) if batch else 0
    row = source // length
    column = torch.arange(len(source), device=source.device) - (row_lengths.cumsum(0) - row_lengths)[row]
    if padding_side == "left":
        column = column + (new_length - row_lengths)[row]
    inputs_embeds = text_embeds.new_zeros(batch, new_length, text_embeds.shape[-1]).index_put((row, column), flat)
    new_mask = torch.zeros(batch, new_length, dtype=torch.long, device=input_ids.device).index_put(
        (row, column), torch.ones_like(row))
    position_ids = (new_mask.cumsum(dim=1) - 1).masked_fill(new_mask == 0, 1)
    new_labels = None
    if labels is not None:
        token_labels = labels.flatten()[source].masked_fill(media, IGNORE_INDEX)
        new_labels = labels.new_full((batch, new_length), IGNORE_INDEX).index_put((row, column), token_labels)
    if attention_mask is not None:
        new_mask = new_mask.to(attention_mask.dtype)
    return MergedEmbeddings(inputs_embeds, new_mask, position_ids, new_labels)


def _check_inputs(input_ids, text_embeds, features, token_ids, attention_mask, labels, padding_side) -> None:
    if input_ids.dim() != 2 or text_embeds.shape[:2] != input_ids.shape or text_embeds.dim() != 3:
        raise ValueError(f"input_ids must be [b, L] and text_embeds [b, L, d], got {list(input_ids.shape)} and "
                         f"{list(text_embeds.shape)}")
    for name, tensor in (("attention_mask", attention_mask), ("labels", labels)):
        if tensor is not None and tensor.shape != input_ids.shape:
            raise ValueError(f"{name} must have the shape of input_ids {list(input_ids.shape)}, got "
                             f"{list(tensor.shape)}")
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    unknown = sorted(set(features) - set(token_ids))
    if unknown:
        raise ValueError(f"features given for {unknown} but token_ids has no placeholder id for them; "
                         f"token_ids covers {sorted(token_ids)}")
    if len(set(token_ids.values())) != len(token_ids):
        raise ValueError(f"token_ids must give each modality its own placeholder id, got {dict(token_ids)}")
    for modality, segments in features.items():
        for index, segment in enumerate(segments):
            if segment.dim() != 2 or segment.shape[1] != text_embeds.shape[2]:
                raise ValueError(f"features[{modality!r}][{index}] must be [n, {text_embeds.shape[2]}] (the width "
                                 f"of text_embeds), got {list(segment.shape)}")
