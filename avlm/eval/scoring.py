"""Scoring of generated answers against references: normalisation, exact match grouped by task and question kind,
attribute accuracy of captions, and corpus BLEU / CIDEr.

A reference row is a dict with ``id``, ``answer`` and optionally ``task``, ``kind`` (AV-Synth's ``*_meta.jsonl``
rows; for other datasets the annotation record's ``task`` and its last answer) and, for captions, ``attributes``
(``{"object1.colour": "red", ..., "sound": "high tone"}``).
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

ARTICLES = {"a", "an", "the"}
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize_answer(text: str) -> str:
    """Lower case, punctuation to spaces, articles dropped, whitespace collapsed: ``"A Red." -> "red"``."""
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    return " ".join(word for word in words if word not in ARTICLES)


def exact_match(prediction: str, reference: str) -> bool:
    """True when both answers are equal after :func:`normalize_answer`."""
    return normalize_answer(prediction) == normalize_answer(reference)


def attribute_scores(predicted: Mapping[str, str], reference: Mapping[str, str]) -> dict[str, bool]:
    """Per reference attribute, whether the prediction states the same value (a missing one counts as wrong)."""
    return {key: predicted.get(key) == value for key, value in reference.items()}


def score_answers(predictions: Mapping[str, str], references: Iterable[Mapping[str, Any]],
                  parse_caption: Callable[[str], Mapping[str, str]] | None = None) -> dict[str, Any]:
    """Exact-match accuracy overall, per task and per ``task/kind``; attribute accuracy of captions.

    Args:
        predictions: id -> generated text.
        references: rows with ``id``, ``answer`` and optional ``task``, ``kind``, ``attributes``.
        parse_caption: caption text -> attributes (e.g. ``avlm.synth.parse_caption``); needed to score the
            ``attributes`` of caption rows, which are otherwise left out.

    Returns:
        ``{"exact_match": {"all": {...}, "task": {name: {...}}, "kind": {"task/kind": {...}}},
        "attributes": {"all": {...}, "attribute": {name: {...}}, "caption": {...}}, "missing": [ids]}``; each
        ``{...}`` is ``{"accuracy": float, "correct": int, "total": int}``. Captions (rows with attributes) are
        scored by attributes, not exact match. ``missing``: reference ids without a prediction (scored wrong).

    Raises:
        ValueError: a reference row lacks ``id`` or ``answer``.
    """
    exact: dict[str, list[bool]] = defaultdict(list)
    attributes: dict[str, list[bool]] = defaultdict(list)
    missing = []
    for row in references:
        if "id" not in row or "answer" not in row:
            raise ValueError(f"reference row needs 'id' and 'answer', got keys {sorted(row)}")
        if row["id"] not in predictions:
            missing.append(row["id"])
        prediction = predictions.get(row["id"], "")
        if row.get("attributes") and parse_caption is not None:
            scores = attribute_scores(parse_caption(prediction), row["attributes"])
            for key, correct in scores.items():
                attributes[f"attribute:{key.rsplit('.', 1)[-1]}"].append(correct)
                attributes["all"].append(correct)
            attributes["caption"].append(all(scores.values()))
            continue
        correct = exact_match(prediction, row["answer"])
        task = row.get("task") or "untyped"
        for key in ("all", f"task:{task}", f"kind:{task}/{row.get('kind') or task}"):
            exact[key].append(correct)
    return {"exact_match": _group(exact), "attributes": _group(attributes), "missing": missing}


def _group(flags: Mapping[str, list[bool]]) -> dict[str, Any]:
    """``{"all": stats, "task": {...}, "kind": {...}, ...}`` from ``prefix:name`` keys."""
    grouped: dict[str, Any] = {}
    for key in sorted(flags):
        stats = {"accuracy": sum(flags[key]) / len(flags[key]), "correct": sum(flags[key]), "total": len(flags[key])}
        if ":" in key:
            prefix, name = key.split(":", 1)
            grouped.setdefault(prefix, {})[name] = stats
        else:
            grouped[key] = stats
    return grouped


def caption_metrics(predictions: Mapping[str, str], references: Mapping[str, list[str]]) -> dict[str, float]:
    """Corpus BLEU-1..4 and CIDEr-D of captions (pycocoevalcap's pure-Python scorers on normalised words).

    Args:
        predictions: id -> generated caption.
        references: id -> reference captions (one or more); only these ids are scored.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    if not references:
        return {}
    ids = sorted(references)
    hypotheses = {i: [_words(predictions.get(i, ""))] for i in ids}
    truths = {i: [_words(text) for text in references[i]] for i in ids}
    bleu, _ = Bleu(4).compute_score(truths, hypotheses, verbose=0)
    cider, _ = Cider().compute_score(truths, hypotheses)
    return {**{f"bleu_{n + 1}": float(score) for n, score in enumerate(bleu)}, "cider": float(cider)}


def _words(text: str) -> str:
    """Lower-cased words without punctuation (articles kept: they are part of a caption's n-grams)."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())
