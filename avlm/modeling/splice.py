"""Which media tokens go to which placeholder, and the text sequences grown to hold them.

Notation:
    b: batch rows, L: text length (one token per placeholder), L': length after expansion,
    n_i: LLM tokens of media item i, D: LLM width.

:func:`merge_media` (used by ``AVLMForCausalLM.merge``) runs two pure steps and writes the result:

1. :func:`assign_media`: media items (in batch order, per modality) -> per row, one block of LLM tokens for each
   placeholder of that row, in position order. ``image`` placeholders take video items (an image is a short video).
   With ``av_fusion="concat_at_video"`` (official VideoLLaMA2-AV) a row's audio item is appended to its video block.
2. :func:`fusion.token_merge.merge_modal_embeddings`: the text is embedded and every placeholder is replaced by its
   block, so embeddings, ``attention_mask`` and ``labels`` have one position per LLM token; padding stays on the side
   it was (left for generation, right for training). Labels of media positions are ``IGNORE_INDEX``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from fusion.token_merge import merge_modal_embeddings


@dataclass
class MergedInputs:
    """What the LLM receives: embeddings [b, L', D], attention_mask [b, L'], position_ids [b, L'], labels or None;
    and, counted from shapes on the host (no device synchronisation), the media items and tokens written."""

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None
    media_items: int = 0
    media_tokens: int = 0


def merge_media(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor | None,
    media: Mapping[str, Sequence[torch.Tensor]],
    sample_index: Mapping[str, torch.Tensor | None],
    placeholder_token_ids: Mapping[str, int],
    av_fusion: str,
    embed: torch.nn.Module,
    padding_side: str | None = None,
) -> MergedInputs:
    """Text embeddings with the media tokens written at the (expanded) placeholders.

    Args:
        input_ids: [b, L]; attention_mask: [b, L] or None (all tokens); labels: [b, L] or None.
        media: modality -> items [n_i, D] in batch order; sample_index: see :func:`assign_media`.
        placeholder_token_ids, av_fusion: from the model config.
        embed: the LLM's input embedding table.
        padding_side: ``"left"`` or ``"right"``: where rows that come out shorter than the longest are padded (rows
            gain different numbers of media tokens, so an unpadded text batch may still need padding: generation must
            pad on the left). None: the side the text is padded on, ``"right"`` when it is not padded.

    Returns:
        :class:`MergedInputs`; positions count tokens from 0 at each row's first real token (padding: 1).
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    blocks = assign_media(input_ids, placeholder_token_ids, media, sample_index, av_fusion)
    name_of = {token: name for name, token in placeholder_token_ids.items()}
    names = [[name_of[token] for token in row if token in name_of] for row in input_ids.tolist()]
    segments: dict[str, list[torch.Tensor]] = {}
    for row_kinds, row_blocks in zip(names, blocks, strict=True):
        for kind, block in zip(row_kinds, row_blocks, strict=True):
            segments.setdefault(kind, []).append(block)
    placeholders = torch.tensor(list(placeholder_token_ids.values()), device=input_ids.device)
    text_ids = input_ids.masked_fill(torch.isin(input_ids, placeholders) | (attention_mask == 0), 0)
    merged = merge_modal_embeddings(input_ids, embed(text_ids), segments, placeholder_token_ids, attention_mask,
                                    labels, padding_side=_padding_side(attention_mask, padding_side))
    items = [item for modality_items in media.values() for item in modality_items]
    return MergedInputs(merged.inputs_embeds, merged.attention_mask.to(attention_mask.dtype), merged.position_ids,
                        merged.labels, len(items), sum(item.shape[0] for item in items))


def assign_media(
    input_ids: torch.Tensor,
    placeholder_token_ids: Mapping[str, int],
    media: Mapping[str, Sequence[torch.Tensor]],
    sample_index: Mapping[str, torch.Tensor | None],
    av_fusion: str,
) -> list[list[torch.Tensor]]:
    """Blocks of media tokens per row, one per placeholder in position order.

    Args:
        input_ids: [b, L] with one placeholder token per media item (``video``/``image``, ``audio``).
        placeholder_token_ids: placeholder name -> id.
        media: modality -> items [n_i, D], in batch order.
        sample_index: modality -> LongTensor [items] of the row each item belongs to, or None to take the rows of the
            placeholders in row-major order (not possible for audio in ``concat_at_video`` batches of several rows).
        av_fusion: ``"separate"`` or ``"concat_at_video"``.

    Returns:
        blocks[row] = list of [n, D] tensors, one per placeholder of the row.
    """
    kinds = _placeholder_kinds(input_ids, placeholder_token_ids)
    queues = {m: [[] for _ in range(input_ids.shape[0])] for m in media}
    for modality, items in media.items():
        rows = _item_rows(modality, len(items), kinds, sample_index.get(modality), av_fusion)
        for row, item in zip(rows, items, strict=True):
            queues[modality][row].append(item)
    blocks = [[_block(row, kind, queues, kinds[row], av_fusion) for kind in kinds[row]] for row in range(len(kinds))]
    for modality, per_row in queues.items():
        left = {row: len(items) for row, items in enumerate(per_row) if items}
        if left:
            raise ValueError(f"{modality} items without a placeholder to go to (row: count) {left}; each {modality} "
                             f"needs one placeholder token (id {placeholder_token_ids.get(modality)}) in its prompt")
    return blocks


def _placeholder_kinds(input_ids: torch.Tensor, placeholder_token_ids: Mapping[str, int]) -> list[list[str]]:
    """Per row, the modality of each placeholder in position order (``image`` counts as ``video``)."""
    modality_of = {token: ("video" if name == "image" else name) for name, token in placeholder_token_ids.items()}
    return [[modality_of[token] for token in row if token in modality_of] for row in input_ids.tolist()]


def _item_rows(modality: str, count: int, kinds: list[list[str]], index: torch.Tensor | None,
               av_fusion: str) -> list[int]:
    if index is not None:
        rows = index.tolist()
        if len(rows) != count or any(not 0 <= row < len(kinds) for row in rows):
            raise ValueError(f"{modality}_sample_index {rows} must give a row in [0, {len(kinds)}) for each of the "
                             f"{count} {modality} items")
        return rows
    if modality == "audio" and av_fusion == "concat_at_video" and len(kinds) > 1:
        raise ValueError("with av_fusion='concat_at_video' the audio of an audio-visual sample has no placeholder of "
                         "its own; pass audio_sample_index (the batch row of each audio item, as the collator does)")
    if modality == "audio" and av_fusion == "concat_at_video":
        return [0] * count
    rows = [row for row, row_kinds in enumerate(kinds) for kind in row_kinds if kind == modality]
    if len(rows) != count:
        raise ValueError(f"the prompts hold {len(rows)} {modality} placeholders but {count} {modality} items were "
                         f"given; give one placeholder token per item")
    return rows


def _block(row: int, kind: str, queues: dict[str, list[list[torch.Tensor]]], row_kinds: list[str],
           av_fusion: str) -> torch.Tensor:
    if kind not in queues or not queues[kind][row]:
        raise ValueError(f"row {row} has a {kind} placeholder but no {kind} input was given for it")
    block = queues[kind][row].pop(0)
    if av_fusion == "concat_at_video" and "audio" in queues and queues["audio"][row]:
        if kind == "video" and "audio" in row_kinds:
            raise ValueError(f"row {row} has both a video and an audio placeholder, but av_fusion='concat_at_video' "
                             "appends the audio to the video block; use one <video> placeholder for audio-visual input")
        if kind == "video":
            block = torch.cat([block, queues["audio"][row].pop(0)])
    return block


def _padding_side(attention_mask: torch.Tensor, wanted: str | None = None) -> str:
    """The side the text is padded on (``wanted`` when given and consistent with the mask; ``"right"`` for an unpadded
    batch without ``wanted``); a row with holes, or padding on the side opposite to ``wanted``, is an error."""
    if wanted not in (None, "left", "right"):
        raise ValueError(f"padding_side must be 'left', 'right' or None, got {wanted!r}")
    mask = attention_mask.bool()
    counts = mask.sum(dim=1, keepdim=True)
    positions = torch.arange(mask.shape[1], device=mask.device)[None]
    fits = {"right": bool((mask == (positions < counts)).all()),
            "left": bool((mask == (positions >= mask.shape[1] - counts)).all())}
    if wanted is not None:
        if not fits[wanted]:
            raise ValueError(f"attention_mask is not padded on the {wanted} (generation needs left-padded prompts: "
                             "tokenize or collate with padding_side='left')")
        return wanted
    for side in ("right", "left"):
        if fits[side]:
            return side
    raise ValueError("attention_mask must pad every row on the same side (all on the left or all on the right), "
                     "with no holes between tokens")


def item_counts(counts: torch.Tensor | None, items: int, longest: int, name: str) -> torch.Tensor:
    """Validated per-item frame counts (CPU LongTensor [items]); None means every item has ``longest``."""
    if counts is None:
        return torch.full((items,), longest, dtype=torch.long)
    if counts.shape != (items,) or counts.is_floating_point():
        raise ValueError(f"{name} must be an integer tensor of shape [{items}], got {counts.dtype} "
                         f"{list(counts.shape)}")
    if bool((counts < 1).any()) or bool((counts > longest).any()):
        raise ValueError(f"{name} must lie in [1, {longest}], got {counts.tolist()}")
    return counts.long().cpu()
