"""Prompt text -> token ids with media placeholders, the one rule training and inference share.

A placeholder is written in the prompt text as its token (``<video>``, ``<audio>``, ``<image>``), or for ids outside
the vocabulary (official VideoLLaMA2 checkpoints: -201/-202/-200) as the annotation text of the placeholder. The text
between placeholders is tokenized piece by piece without special tokens and each placeholder becomes its id
(VideoLLaMA2's ``tokenizer_multimodal_token`` rule).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from avlm.constants import AV_FUSIONS, MODALITIES, PLACEHOLDER_TOKENS

if TYPE_CHECKING:  # annotations only: importing this module stays free of transformers
    from transformers import PreTrainedTokenizerBase


def placeholder_text(tokenizer: PreTrainedTokenizerBase, modality: str, token_id: int) -> str:
    """How a placeholder is written in the rendered prompt: its token's text, or ``<video>``/``<audio>``/``<image>``
    when the id is not a token of the tokenizer (the official VideoLLaMA2 ids -201/-202/-200)."""
    return tokenizer.convert_ids_to_tokens(token_id) if token_id >= 0 else PLACEHOLDER_TOKENS[modality]


def encode_with_placeholders(tokenizer: PreTrainedTokenizerBase, text: str,
                             placeholder_token_ids: Mapping[str, int]) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` and the character where each starts: the text between placeholders is tokenized piece
    by piece without special tokens, and each placeholder becomes its id (VideoLLaMA2's ``tokenizer_multimodal_token``
    rule). It works for ids outside the vocabulary (the official -201/-202/-200) and equals plain tokenisation when
    the placeholders are special tokens of the tokenizer. Training (:func:`tokenize_conversation`) and inference
    (``Processor.encode_prompt``) both encode with it."""
    marks = {placeholder_text(tokenizer, m, i): i for m, i in placeholder_token_ids.items()}
    ids, starts, cursor = [], [], 0
    for piece in re.split("(" + "|".join(map(re.escape, marks)) + ")", text) if marks else [text]:
        if piece in marks:
            ids.append(marks[piece])
            starts.append(cursor)
        elif piece:
            encoded = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)
            ids += encoded["input_ids"]
            starts += [cursor + start for start, _ in encoded["offset_mapping"]]
        cursor += len(piece)
    return ids, starts


def placeholder_modalities(modalities: Sequence[str], av_fusion: str = "separate") -> tuple[str, ...]:
    """The modalities that get a placeholder token in the prompt: all of them with ``av_fusion="separate"``; with
    ``"concat_at_video"`` an audio-visual sample has ``<video>`` only (the audio joins the video block)."""
    if av_fusion not in AV_FUSIONS:
        raise ValueError(f"av_fusion must be one of {list(AV_FUSIONS)}, got {av_fusion!r}")
    if av_fusion == "concat_at_video" and "video" in modalities and "audio" in modalities:
        return tuple(m for m in modalities if m != "audio")
    return tuple(modalities)


def prompt_prefix(tokenizer: PreTrainedTokenizerBase, modalities: Sequence[str],
                  placeholder_token_ids: Mapping[str, int]) -> str:
    """The placeholders that lead a user turn, video before audio (``"<video><audio>"``)."""
    return "".join(placeholder_text(tokenizer, m, placeholder_token_ids[m])
                   for m in sorted(modalities, key=MODALITIES.index))
