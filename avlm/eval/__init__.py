"""Evaluation: scoring of generated answers (exact match per task and kind, caption attributes, BLEU / CIDEr)."""

from avlm.eval.scoring import attribute_scores, caption_metrics, exact_match, normalize_answer, score_answers

__all__ = ["attribute_scores", "caption_metrics", "exact_match", "normalize_answer", "score_answers"]
