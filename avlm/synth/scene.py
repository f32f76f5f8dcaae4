"""AV-Synth scenes: what happens in one clip (objects, their motion and flashes, sound events), sampled by seed.

A clip of ``duration`` seconds is cut into ``SLOTS`` equal time slots. Each object moves in a straight line at a
constant speed for the whole clip and flashes white for exactly one slot (objects of one clip flash in different
slots). Sound events are 0-3 repetitions of one sound kind, each centred in its own slot. With one object and one
sound event the sound is in sync with the flash (same slot) half of the time; with two objects and one sound event
the sound plays in the slot of one of the two flashes. Positions are fractions of the frame side (0 = left / top).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from avlm.synth.vocab import COLOURS, DIRECTIONS, SHAPES, SIZES, SOUNDS

SLOTS = 4
"""Time slots per clip: flashes last one slot, sound events sit in the middle of one."""
TRAVEL = 0.35
"""Distance an object moves over the clip, as a fraction of the frame side."""
LANES = (0.27, 0.73)
"""Cross-axis positions of the two objects of a two-object clip (they move along the same axis)."""


@dataclass
class SceneObject:
    """One moving object."""

    shape: str
    colour: str
    size: str
    direction: str
    flash_slot: int
    start: tuple[float, float]
    """Centre ``(x, y)`` at time 0."""

    def centre(self, fraction: float) -> tuple[float, float]:
        """Centre ``(x, y)`` after ``fraction`` (0..1) of the clip."""
        dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[self.direction]
        return self.start[0] + dx * TRAVEL * fraction, self.start[1] + dy * TRAVEL * fraction


@dataclass
class Scene:
    """Everything the renderer, the sound synthesiser and the question writer need for one clip."""

    id: str
    split: str
    duration: float
    objects: list[SceneObject]
    sound: str | None
    """Sound kind (a key of ``SOUNDS``) or None for silence."""
    sound_slots: list[int] = field(default_factory=list)
    held_out: list[str] = field(default_factory=list)
    """Held-out pairs the clip contains, e.g. ``["colour_shape:red/triangle"]`` (empty in the train split)."""

    def to_dict(self) -> dict:
        return asdict(self)


def sample_scene(rng: np.random.Generator, clip_id: str, split: str, duration: float,
                 held_out: dict[str, list[tuple[str, str]]]) -> Scene:
    """One scene. Train scenes contain no held-out pair; test scenes always contain a held-out colour/shape pair
    (first object) and, when there is sound, the held-out direction/sound pair of that object half of the time."""
    for _ in range(1000):
        scene = _draw(rng, clip_id, split, duration, held_out)
        found = _held_out_in(scene, held_out)
        if (split == "train") == (not found):
            scene.held_out = found
            return scene
    raise RuntimeError(f"could not sample a {split} scene without/with held-out pairs {held_out}")


def _draw(rng: np.random.Generator, clip_id: str, split: str, duration: float,
          held_out: dict[str, list[tuple[str, str]]]) -> Scene:
    count = int(rng.choice([1, 2]))
    shapes = [str(s) for s in rng.choice(SHAPES, size=count, replace=False)]
    colours = [str(c) for c in rng.choice(list(COLOURS), size=count, replace=False)]
    if split == "test":
        colours[0], shapes[0] = held_out["colour_shape"][int(rng.integers(len(held_out["colour_shape"])))]
        if count == 2 and (shapes[1] == shapes[0] or colours[1] == colours[0]):
            shapes[1] = str(rng.choice([s for s in SHAPES if s != shapes[0]]))
            colours[1] = str(rng.choice([c for c in COLOURS if c != colours[0]]))
    sizes = [str(rng.choice(list(SIZES))) for _ in range(count)]
    axis = DIRECTIONS[:2] if rng.random() < 0.5 else DIRECTIONS[2:]
    directions = [str(rng.choice(axis)) for _ in range(count)] if count == 2 else [str(rng.choice(DIRECTIONS))]
    flashes = [int(s) for s in rng.choice(SLOTS, size=count, replace=False)]
    lanes = list(rng.permutation(LANES)) if count == 2 else [None]
    objects = [SceneObject(shapes[i], colours[i], sizes[i], directions[i], flashes[i],
                           _start(rng, directions[i], SIZES[sizes[i]], lanes[i])) for i in range(count)]
    num_sounds = int(rng.choice(4, p=[0.1, 0.6, 0.15, 0.15] if count == 1 else [0.05, 0.75, 0.1, 0.1]))
    sound = str(rng.choice(list(SOUNDS))) if num_sounds else None
    if sound is not None and split == "test" and rng.random() < 0.5:
        sound = dict(held_out["direction_sound"])[directions[0]]
    return Scene(clip_id, split, duration, objects, sound, _sound_slots(rng, num_sounds, flashes))


def _sound_slots(rng: np.random.Generator, num_sounds: int, flashes: list[int]) -> list[int]:
    if num_sounds == 1 and len(flashes) == 2:
        return [flashes[int(rng.integers(2))]]
    if num_sounds == 1:
        in_sync = rng.random() < 0.5
        return [flashes[0]] if in_sync else [int(rng.choice([s for s in range(SLOTS) if s != flashes[0]]))]
    return sorted(int(s) for s in rng.choice(SLOTS, size=num_sounds, replace=False))


def _start(rng: np.random.Generator, direction: str, size: float, lane: float | None) -> tuple[float, float]:
    """Start centre so that the object stays inside the frame for the whole clip."""
    low, high = size / 2 + 0.02, 1 - size / 2 - 0.02
    sign = 1 if direction in ("right", "down") else -1
    along = float(rng.uniform(low, high - TRAVEL)) if sign > 0 else float(rng.uniform(low + TRAVEL, high))
    across = lane if lane is not None else float(rng.uniform(low, high))
    return (along, across) if direction in ("left", "right") else (across, along)


def _held_out_in(scene: Scene, held_out: dict[str, list[tuple[str, str]]]) -> list[str]:
    found = [f"colour_shape:{o.colour}/{o.shape}" for o in scene.objects
             if (o.colour, o.shape) in held_out["colour_shape"]]
    if scene.sound is not None:
        found += [f"direction_sound:{o.direction}/{scene.sound}" for o in scene.objects
                  if (o.direction, scene.sound) in held_out["direction_sound"]]
    return sorted(set(found))
