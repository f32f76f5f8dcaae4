"""Scoring of generated answers: normalisation, exact match grouped by task/kind, caption attributes, BLEU/CIDEr."""

from __future__ import annotations

import pytest

from avlm.eval import caption_metrics, exact_match, normalize_answer, score_answers
from avlm.synth import parse_caption


def test_normalize_and_exact_match():
    assert normalize_answer("  The Red, circle! ") == "red circle"
    assert normalize_answer("A high-tone.") == "high tone"
    assert exact_match("Left.", "left") and exact_match("a chirp", "chirp")
    assert not exact_match("left side", "left") and not exact_match("", "left")


def test_score_answers_groups_by_task_and_kind_and_counts_missing():
    references = [
        {"id": "1", "task": "video_qa", "kind": "direction", "answer": "left"},
        {"id": "2", "task": "video_qa", "kind": "direction", "answer": "up"},
        {"id": "3", "task": "video_qa", "kind": "colour", "answer": "red"},
        {"id": "4", "task": "av_qa", "kind": "order", "answer": "before"},
        {"id": "5", "answer": "yes"},
    ]
    report = score_answers({"1": "Left", "2": "down", "3": "the red", "5": "Yes."}, references)
    exact = report["exact_match"]
    assert exact["all"] == {"accuracy": 0.6, "correct": 3, "total": 5}
    assert exact["task"]["video_qa"]["accuracy"] == pytest.approx(2 / 3)
    assert exact["kind"]["video_qa/direction"] == {"accuracy": 0.5, "correct": 1, "total": 2}
    assert exact["kind"]["av_qa/order"]["correct"] == 0 and exact["task"]["untyped"]["correct"] == 1
    assert report["missing"] == ["4"] and report["attributes"] == {}


def test_caption_attributes():
    attributes = {"object1.size": "small", "object1.colour": "red", "object1.shape": "circle",
                  "object1.direction": "left", "sound": "high tone"}
    references = [{"id": "a", "task": "caption", "kind": "caption", "answer": "x", "attributes": attributes},
                  {"id": "b", "task": "caption", "kind": "caption", "answer": "x", "attributes": attributes}]
    predictions = {"a": "a small red circle moves left while a high tone plays",
                   "b": "a big red square moves left in silence"}
    report = score_answers(predictions, references, parse_caption)
    assert report["attributes"]["all"] == {"accuracy": 0.7, "correct": 7, "total": 10}
    assert report["attributes"]["caption"]["correct"] == 1
    assert report["attributes"]["attribute"]["shape"]["accuracy"] == 0.5
    assert report["attributes"]["attribute"]["colour"]["accuracy"] == 1.0
    assert "all" not in report["exact_match"]


def test_reference_without_answer_is_an_error():
    with pytest.raises(ValueError, match="needs 'id' and 'answer'"):
        score_answers({}, [{"id": "1"}])


def test_caption_metrics():
    references = {"a": ["a small red circle moves left"], "b": ["a big blue square moves up"]}
    perfect = caption_metrics({"a": "A small red circle moves left.", "b": "a big blue square moves up"}, references)
    assert perfect["bleu_4"] == pytest.approx(1.0, abs=1e-6)
    worse = caption_metrics({"a": "a small red circle moves left", "b": "a big red square moves down"}, references)
    assert worse["bleu_4"] < perfect["bleu_4"] and worse["cider"] < perfect["cider"]
    assert caption_metrics({}, {}) == {}
