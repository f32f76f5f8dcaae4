"""Chat-template tokenisation of a conversation, with labels on the assistant turns only.

The prompt is whatever ``tokenizer.apply_chat_template`` renders (ChatML, [INST] ... [/INST], ...): nothing here knows
a template. Assistant spans are found by rendering prefixes of the conversation and diffing them, the way
VideoLLaMA2's ``train.py::preprocess`` does: for assistant turn k, the text of ``messages[:k]`` rendered with the
generation prompt ends where the supervised span starts, and ``messages[:k + 1]`` rendered without it ends where the
span stops, so the answer plus its end tokens (``<|im_end|>\\n`` for ChatML, ``</s>`` for Llama-2) are supervised
and everything else, system and user turns and generation prompts included, is ``IGNORE_INDEX``. The full text is
tokenized once and characters map to tokens through the fast tokenizer's offsets, so the ids are exactly what the
model sees at inference.

Media placeholders are real tokens of the tokenizer, one per modality. As in VideoLLaMA2 ``preprocess_multimodal``,
annotation placeholders are removed from the text and the sample's placeholders are put at the start of that user
turn, followed by a newline: ``"<video><audio>\\nWhat is playing?"``. Video comes before audio, so splicing each
placeholder's features gives VideoLLaMA2-AV's ``[video tokens ; audio tokens]`` order. For a model built with
``av_fusion="concat_at_video"`` (the official VideoLLaMA2-AV checkpoints) an audio-visual sample gets ``<video>`` only,
as the official code writes it: the splice appends the audio tokens to that video block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from avlm.constants import IGNORE_INDEX, PLACEHOLDER_TOKENS
from avlm.data.annotations import Record
from avlm.processing.prompt import (
    encode_with_placeholders,
    placeholder_modalities,
    placeholder_text,
    prompt_prefix,
)

if TYPE_CHECKING:  # annotations only: importing this module stays free of transformers
    from transformers import PreTrainedTokenizerBase

ROLE_NAMES = {"human": "user", "gpt": "assistant"}


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase,
    turns: Sequence[Mapping[str, str]],
    placeholder_token_ids: Mapping[str, int],
    modalities: Sequence[str] = (),
    system_prompt: str | None = None,
    max_length: int | None = None,
    media_token_counts: Mapping[str, int] | None = None,
    av_fusion: str = "separate",
) -> dict[str, torch.Tensor]:
    """Tokenize a human/gpt conversation and mask everything but the assistant answers.

    Args:
        tokenizer: a fast HF tokenizer with a chat template.
        turns: ``{"from": "human"|"gpt", "value": str}`` dicts, alternating, starting with human.
        placeholder_token_ids: modality -> id of its placeholder token (``{"video": id, "audio": id}``).
        modalities: the sample's modalities; one placeholder each goes at the start of the user turn.
        system_prompt: an explicit system message; None leaves it to the template (Qwen2 adds its default).
        max_length: longest sequence after media expansion; longer samples lose tokens from the end.
        media_token_counts: modality -> number of LLM tokens of its media (default 1 each).
        av_fusion: the model's layout (:func:`placeholder_modalities`): ``"concat_at_video"`` gives an audio-visual
            sample one ``<video>`` placeholder.

    Returns:
        ``{"input_ids": LongTensor [L], "labels": LongTensor [L]}``.

    Raises:
        ValueError: a placeholder is not a single token, truncation would cut a placeholder or every answer token,
            or the template does not render conversations prefix by prefix.
    """
    if not tokenizer.is_fast:
        raise TypeError(f"tokenize_conversation needs a fast tokenizer (offsets), got {type(tokenizer).__name__}; "
                        "load it with AutoTokenizer.from_pretrained(..., use_fast=True)")
    unknown = [m for m in modalities if m not in placeholder_token_ids]
    if unknown:
        raise ValueError(f"modalities {unknown} have no placeholder token; placeholder_token_ids has "
                         f"{sorted(placeholder_token_ids)}")
    marked = placeholder_modalities(modalities, av_fusion)
    messages = build_messages(tokenizer, turns, placeholder_token_ids, marked, system_prompt)
    text, spans = _render_with_spans(tokenizer, messages)
    input_ids, starts = encode_with_placeholders(tokenizer, text, placeholder_token_ids)
    labels = [IGNORE_INDEX] * len(input_ids)
    for index, start in enumerate(starts):
        if any(begin <= start < end for begin, end in spans):
            labels[index] = input_ids[index]
    positions = _placeholder_positions(tokenizer, input_ids, placeholder_token_ids, marked)
    if max_length is not None:  # every media token replaces, or joins, one of the placeholders
        expansion = sum((media_token_counts or {}).get(m, 1) for m in modalities) - len(marked)
        keep = max_length - expansion
        if len(input_ids) > keep:
            if any(position >= keep for position in positions):
                raise ValueError(f"max_length={max_length} leaves room for only {keep} text tokens, which cuts off a "
                                 f"media placeholder; raise max_length or use fewer media tokens")
            input_ids, labels = input_ids[:keep], labels[:keep]
    if all(label == IGNORE_INDEX for label in labels):
        raise ValueError(f"no answer token is left to train on ({len(input_ids)} tokens, max_length={max_length}); "
                         "raise max_length or drop this sample")
    return {"input_ids": torch.tensor(input_ids, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long)}


def build_messages(
    tokenizer: PreTrainedTokenizerBase,
    turns: Sequence[Mapping[str, str]],
    placeholder_token_ids: Mapping[str, int],
    modalities: Sequence[str],
    system_prompt: str | None = None,
) -> list[dict[str, str]]:
    """Chat messages with every placeholder text removed and the sample's placeholder tokens leading one user turn."""
    texts = set(PLACEHOLDER_TOKENS.values())
    texts |= {placeholder_text(tokenizer, m, i) for m, i in placeholder_token_ids.items()}
    target = next((i for i, turn in enumerate(turns) if any(t in turn["value"] for t in texts)), 0)
    prefix = prompt_prefix(tokenizer, modalities, placeholder_token_ids)
    messages = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    for index, turn in enumerate(turns):
        value = turn["value"]
        if index == target:
            for placeholder in texts:
                value = value.replace(placeholder, "")
            value = value.strip()
            value = prefix + "\n" + value if prefix and value else prefix or value
        messages.append({"role": ROLE_NAMES[turn["from"]], "content": value})
    return messages


def _render_with_spans(tokenizer: PreTrainedTokenizerBase,
                       messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of the assistant answers (with their end tokens)."""

    def render(count: int, generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(messages[:count], tokenize=False, add_generation_prompt=generation_prompt)

    full = render(len(messages), False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before, through = render(index, True), render(index + 1, False)
        if not (full.startswith(before) and full.startswith(through) and len(through) > len(before)):
            raise ValueError("the chat template does not render a conversation prefix by prefix (the text before "
                             f"assistant turn {index} changes once later turns are added); labels cannot be placed. "
                             f"Rendered prompt: {before[-200:]!r}; conversation: {full[:400]!r}")
        spans.append((len(before), len(through)))
    return full, spans


def _placeholder_positions(tokenizer: PreTrainedTokenizerBase, input_ids: list[int],
                           placeholder_token_ids: Mapping[str, int], modalities: Sequence[str]) -> list[int]:
    positions = []
    for modality, token_id in placeholder_token_ids.items():
        found = [i for i, value in enumerate(input_ids) if value == token_id]
        expected = 1 if modality in modalities else 0
        if len(found) != expected:
            token = placeholder_text(tokenizer, modality, token_id)
            raise ValueError(f"placeholder {token!r} (id {token_id}, modality {modality!r}) appears {len(found)} times "
                             f"in the tokenized prompt, expected {expected}; it must be one special token of the "
                             "tokenizer (tokenizer.add_special_tokens) and must not occur in the text")
        positions += found
    return positions


@dataclass
class BudgetRow:
    """Token counts of one sample: text (without placeholders), media per modality, answers, and the total."""

    id: str
    location: str
    text_tokens: int
    answer_tokens: int
    media_tokens: dict[str, int]
    total: int
    truncated: bool


@dataclass
class BudgetTotals:
    num_samples: int = 0
    num_truncated: int = 0
    text_tokens: int = 0
    answer_tokens: int = 0
    media_tokens: dict[str, int] = field(default_factory=dict)
    longest: int = 0


def token_budget(
    records: Sequence[Record],
    tokenizer: PreTrainedTokenizerBase,
    media_token_counter: Callable[[Record], Mapping[str, int]],
    max_length: int,
    placeholder_token_ids: Mapping[str, int],
    system_prompt: str | None = None,
    av_fusion: str = "separate",
) -> tuple[list[BudgetRow], BudgetTotals]:
    """Count text, answer and media tokens per sample against ``max_length`` (the dry run of ``avlm check``).

    Args:
        records: validated records.
        tokenizer: the model's tokenizer.
        media_token_counter: record -> tokens per modality (depends on the model's encoders and connectors).
        max_length: the model's maximum sequence length.
        placeholder_token_ids: modality -> placeholder token id.
        system_prompt: as in training.
        av_fusion: the model's layout (as in :func:`tokenize_conversation`).

    Returns:
        One row per record, and the totals; ``truncated`` rows exceed ``max_length``.
    """
    rows, totals = [], BudgetTotals()
    for record in records:
        media = dict(media_token_counter(record))
        if set(media) != set(record.modalities):
            raise ValueError(f"media_token_counter returned {sorted(media)} for record {record.id!r} "
                             f"({record.location}), expected counts for {list(record.modalities)}")
        encoded = tokenize_conversation(tokenizer, record.conversations, placeholder_token_ids, record.modalities,
                                        system_prompt, av_fusion=av_fusion)
        text = len(encoded["input_ids"]) - len(placeholder_modalities(record.modalities, av_fusion))
        answers = int((encoded["labels"] != IGNORE_INDEX).sum())
        total = text + sum(media.values())
        rows.append(BudgetRow(record.id, record.location, text, answers, media, total, total > max_length))
        totals.num_samples += 1
        totals.num_truncated += total > max_length
        totals.text_tokens += text
        totals.answer_tokens += answers
        for modality, count in media.items():
            totals.media_tokens[modality] = totals.media_tokens.get(modality, 0) + count
        totals.longest = max(totals.longest, total)
    return rows, totals
