"""Draw the frames of a scene with numpy.

Notation: t frames, S frame side in pixels.
"""

from __future__ import annotations

import math

import numpy as np

from avlm.synth.scene import SLOTS, Scene, SceneObject
from avlm.synth.vocab import BACKGROUND, COLOURS, FLASH_COLOUR, SIZES


def num_frames(duration: float, fps: float) -> int:
    """Frames of a clip: ``round(duration * fps)``."""
    return max(1, round(duration * fps))


def slot_of(time: float, duration: float) -> int:
    """Time slot (0 .. SLOTS-1) that ``time`` seconds falls in."""
    return min(SLOTS - 1, max(0, math.floor(time / duration * SLOTS)))


def render_frames(scene: Scene, side: int, fps: float) -> np.ndarray:
    """uint8 frames ``[t, S, S, 3]``: dark background, objects in their colours, white during their flash slot.

    Frame ``i`` shows time ``i / fps`` (its presentation time); objects are drawn in order (the second on top).
    """
    count = num_frames(scene.duration, fps)
    frames = np.empty((count, side, side, 3), dtype=np.uint8)
    frames[:] = BACKGROUND
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    for index in range(count):
        time = index / fps
        for obj in scene.objects:
            colour = FLASH_COLOUR if slot_of(time, scene.duration) == obj.flash_slot else COLOURS[obj.colour]
            frames[index][_mask(obj, time / scene.duration, xs / side, ys / side)] = colour
    return frames


def _mask(obj: SceneObject, fraction: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Boolean ``[S, S]`` of the pixels the object covers (coordinates as fractions of the side)."""
    cx, cy = obj.centre(fraction)
    half = SIZES[obj.size] / 2
    dx, dy = xs - cx, ys - cy
    if obj.shape == "circle":
        return dx * dx + dy * dy <= half * half
    if obj.shape == "square":
        inner = half * 0.85  # about the circle's area, so size does not tell the shape
        return (np.abs(dx) <= inner) & (np.abs(dy) <= inner)
    if obj.shape == "triangle":  # pointing up: width grows from 0 at the top to the full side at the bottom
        down = (dy + half) / (2 * half)
        return (down >= 0) & (down <= 1) & (np.abs(dx) <= down * half)
    raise ValueError(f"unknown shape {obj.shape!r}")
