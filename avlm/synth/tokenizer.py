"""The tokenizer of AV-Synth models: the tiny trained tokenizer with every word the generator writes as one token.

Presets whose ``tokenizer`` is ``"tiny-avsynth"`` (``avlm-demo``, ``avsynth-100m``) are built with it:
``build_model(name, tokenizer=tokenizer_for_preset(name))``; the model core itself knows no AV-Synth word.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from avlm.modeling.presets import get_preset
from avlm.processing.tokenizer import train_tiny_tokenizer
from avlm.synth.questions import QUESTION_TEMPLATES
from avlm.synth.vocab import ANSWERS, COLOURS, SHAPES


def vocabulary_words() -> list[str]:
    """Every word the generator writes in questions, answers and captions (for a tokenizer trained on them)."""
    words = set()
    for text in [*QUESTION_TEMPLATES.values(), *(" ".join(v) for v in ANSWERS.values()),
                 "a moves while plays in and describe the clip"]:
        words.update(text.replace("{", " ").replace("}", " ").replace("?", " ").replace(".", " ").lower().split())
    return sorted(words | set(SHAPES) | set(COLOURS))


def avsynth_tokenizer(vocab_size: int) -> PreTrainedTokenizerBase:
    """The tiny chat tokenizer trained with AV-Synth's words as single tokens."""
    return train_tiny_tokenizer(vocab_size, extra_words=vocabulary_words())


def tokenizer_for_preset(name: str) -> PreTrainedTokenizerBase | None:
    """The AV-Synth tokenizer for a preset that uses it (at the preset LLM's vocabulary size); None for the others
    (they bring their own)."""
    preset = get_preset(name)
    if preset.tokenizer != "tiny-avsynth":
        return None
    return avsynth_tokenizer(preset.model["text_config"]["vocab_size"])
