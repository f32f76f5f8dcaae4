"""The closed vocabulary of AV-Synth: object attributes, sounds and answer words, and the held-out attribute pairs.

Every answer the generator writes is one of the words or short phrases below, so exact match is meaningful.
"""

from __future__ import annotations

import itertools

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 250), "yellow": (240, 220, 40),
}
SHAPES = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 0.26, "big": 0.4}
"""Object side as a fraction of the frame side."""
DIRECTIONS = ("left", "right", "up", "down")
SOUNDS: dict[str, str] = {"high": "high tone", "low": "low tone", "noise": "noise burst", "chirp": "chirp"}
"""Sound kind -> the phrase used in answers and captions."""
SILENCE = "silence"
COUNT_WORDS = ("zero", "one", "two", "three")
ORDER_WORDS = ("before", "after")
YES_NO = ("yes", "no")
FLASH_COLOUR = (255, 255, 255)
BACKGROUND = (40, 40, 40)

ANSWERS: dict[str, tuple[str, ...]] = {
    "sound": (*SOUNDS.values(), SILENCE),
    "count": COUNT_WORDS,
    "direction": DIRECTIONS,
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "size": tuple(SIZES),
    "order": ORDER_WORDS,
    "sync": YES_NO,
    "which_colour": tuple(COLOURS),
}
"""Question kind -> its closed answer set (captions are free sentences from a fixed grammar)."""


def held_out_pairs(seed: int) -> dict[str, list[tuple[str, str]]]:
    """Attribute pairs the test split uses and the train split never shows together, chosen by ``seed``.

    ``colour_shape``: one pair per shape with three different colours (every colour and shape still occurs in
    training). ``direction_sound``: one pair per direction with different sound kinds.
    """
    rng = np.random.default_rng([seed, 7])
    colours = [str(c) for c in rng.permutation(list(COLOURS))]
    sounds = [str(s) for s in rng.permutation(list(SOUNDS))]
    return {
        "colour_shape": [(colours[i], shape) for i, shape in enumerate(SHAPES)],
        "direction_sound": [(direction, sounds[i]) for i, direction in enumerate(DIRECTIONS)],
    }


def all_pairs(first: tuple[str, ...] | list[str], second: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """Cartesian product as a list of pairs."""
    return list(itertools.product(first, second))
