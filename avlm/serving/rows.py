"""Per-row ends and text of a batched ``generate``: each request stops at its own ``max_tokens``, end-of-sequence
token or stop string, and a streaming request gets its text as it grows.

Notation: b rows in the batch, k tokens generated so far.

:class:`RowTracker` is a ``transformers`` stopping criterion: ``generate`` calls it after every step with the new
tokens ``[b, k]`` and stops a row once it says so (the whole call ends when every row has). The batch is generated
without an EOS id (``eos_token_id=None``); the tracker ends each row at its first EOS instead, unless the request set
``ignore_eos``. A row's text is therefore exactly what generating it alone would give, and its final text is
:func:`final_text` of its tokens whether it streamed or not; the streamed pieces join to that same text because the
tracker holds back whatever could still change: trailing whitespace (stripped at the end), an incomplete UTF-8
character and a possible beginning of a stop string.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import PreTrainedTokenizerBase, StoppingCriteria

logger = logging.getLogger("avlm.serving")

FinishReason = Literal["stop", "length"]


@dataclass
class RowOutcome:
    text: str
    finish_reason: FinishReason
    completion_tokens: int


@dataclass
class RowSpec:
    """What one row of the batch asks for and where its results go (called from the generating thread)."""

    max_tokens: int
    on_done: Callable[[RowOutcome], None]
    on_delta: Callable[[str], None] | None = None
    """Streaming: receives each new piece of text."""
    stop: Sequence[str] = ()
    eos_token_ids: frozenset[int] = frozenset()
    """Empty with ``ignore_eos``."""
    cancelled: Callable[[], bool] = lambda: False
    """True when the client went away: the row ends at the next step."""


@dataclass
class _Row:
    spec: RowSpec
    tokens: list[int] = field(default_factory=list)
    sent: str = ""
    done: bool = False


def final_text(raw: str, stop: Sequence[str]) -> tuple[str, bool]:
    """The answer from the decoded tokens: stripped (as ``avlm ask``), cut before the first stop string; and whether a
    stop string cut it."""
    text = raw.strip()
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut].rstrip(), True) if cut >= 0 else (text, False)


class RowTracker(StoppingCriteria):
    """The stopping criterion that ends and reports each row (see the module docstring)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, rows: Sequence[RowSpec]) -> None:
        self.tokenizer = tokenizer
        self.rows = [_Row(spec) for spec in rows]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None = None,
                 **kwargs: object) -> torch.BoolTensor:
        for row, token in zip(self.rows, input_ids[:, -1].tolist(), strict=True):
            if not row.done:
                self._step(row, token)
        return torch.tensor([row.done for row in self.rows], device=input_ids.device)

    def finish(self) -> None:
        """``generate`` returned: end the rows still open (they reached the batch's token limit)."""
        for row in self.rows:
            if not row.done:
                self._end(row, "length")

    def fail(self, message: str, on_error: Sequence[Callable[[str], None]]) -> None:
        """``generate`` raised: tell every open row."""
        for row, report in zip(self.rows, on_error, strict=True):
            if not row.done:
                row.done = True
                report(message)

    def _step(self, row: _Row, token: int) -> None:
        spec = row.spec
        if spec.cancelled():  # nobody reads the answer any more; ending the row frees the batch sooner
            return self._end(row, "stop")
        row.tokens.append(token)
        if token in spec.eos_token_ids:
            return self._end(row, "stop")
        if not spec.stop and spec.on_delta is None:
            return self._end(row, "length") if len(row.tokens) >= spec.max_tokens else None
        text = self._decode(row).lstrip()
        if any(s in text for s in spec.stop):
            return self._end(row, "stop")
        if len(row.tokens) >= spec.max_tokens:
            return self._end(row, "length")
        if spec.on_delta is not None:
            self._send(row, _settled(text, spec.stop))

    def _end(self, row: _Row, reason: FinishReason) -> None:
        row.done = True
        text, stopped = final_text(self._decode(row), row.spec.stop)
        if row.spec.on_delta is not None:
            if text.startswith(row.sent):
                self._send(row, text)
            else:  # the tokenizer changed text it had already decoded; what was sent stands
                logger.warning("streamed text %r is not a prefix of the final text %r", row.sent, text)
        row.spec.on_done(RowOutcome(text, "stop" if stopped else reason, len(row.tokens)))

    def _send(self, row: _Row, text: str) -> None:
        if len(text) > len(row.sent) and text.startswith(row.sent):
            row.spec.on_delta(text[len(row.sent):])  # type: ignore[misc]  (streaming rows only)
            row.sent = text

    def _decode(self, row: _Row) -> str:
        return self.tokenizer.decode(row.tokens, skip_special_tokens=True)


def _settled(text: str, stop: Sequence[str]) -> str:
    """The part of a growing text that later tokens cannot change: without an incomplete character at the end, the
    longest ending that could start a stop string, and trailing whitespace."""
    text = text.rstrip("\ufffd")
    for start in range(max(0, len(text) - max((len(s) for s in stop), default=0)), len(text)):
        if any(s.startswith(text[start:]) for s in stop):
            text = text[:start]
            break
    return text.rstrip()
