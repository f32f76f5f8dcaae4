"""Questions, answers and captions of a scene, as annotation records plus the metadata the evaluation groups by.

Each record is one single-turn conversation in the training format (``avlm.data.load_annotations``); its ``task`` is
``caption``, ``audio_qa`` (audio only), ``video_qa`` (video only) or ``av_qa`` (both). The metadata row of a record
(same ``id``) adds the question ``kind``, the ``answer`` and, for captions, the ``attributes`` the caption states.
"""

from __future__ import annotations

import re
from typing import Any

from avlm.synth.scene import Scene
from avlm.synth.vocab import COLOURS, COUNT_WORDS, DIRECTIONS, SHAPES, SILENCE, SIZES, SOUNDS

QUESTION_TEMPLATES: dict[str, str] = {
    "caption": "Describe the clip.",
    "sound": "What do you hear?",
    "count": "How many sounds do you hear?",
    "direction": "Which way does the {shape} move?",
    "colour": "What colour is the {shape}?",
    "shape": "What shape is the {colour} object?",
    "size": "Is the {shape} big or small?",
    "order": "Does the sound come before or after the flash?",
    "sync": "Is the sound in sync with the flash?",
    "which_colour": "What colour is the object that flashes when the sound plays?",
}
TASK_OF_KIND = {"caption": "caption", "sound": "audio_qa", "count": "audio_qa", "direction": "video_qa",
                "colour": "video_qa", "shape": "video_qa", "size": "video_qa", "order": "av_qa", "sync": "av_qa",
                "which_colour": "av_qa"}
MODALITIES_OF_TASK = {"caption": ("video", "audio"), "audio_qa": ("audio",), "video_qa": ("video",),
                      "av_qa": ("video", "audio")}


def caption(scene: Scene) -> str:
    """``"a small red circle moves left and a big blue square moves right while a chirp plays"``."""
    objects = " and ".join(f"a {o.size} {o.colour} {o.shape} moves {o.direction}" for o in scene.objects)
    sound = f"while a {SOUNDS[scene.sound]} plays" if scene.sound is not None else "in silence"
    return f"{objects} {sound}"


def caption_attributes(scene: Scene) -> dict[str, str]:
    """What a caption of the scene states: ``object1.size``, ``object1.colour``, ... and ``sound``."""
    attributes = {f"object{i + 1}.{key}": getattr(o, key) for i, o in enumerate(scene.objects)
                  for key in ("size", "colour", "shape", "direction")}
    attributes["sound"] = SOUNDS[scene.sound] if scene.sound is not None else SILENCE
    return attributes


_OBJECT = (rf"an? ({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)}) moves ({'|'.join(DIRECTIONS)})")
_SOUND = rf"(?:while an? ({'|'.join(SOUNDS.values())}) plays|in ({SILENCE}))"


def parse_caption(text: str) -> dict[str, str]:
    """The attributes a caption in the AV-Synth grammar states (the inverse of :func:`caption`); parts of the text
    that do not follow the grammar contribute nothing, so a malformed caption scores low, never raises."""
    text = " ".join(text.lower().replace(".", " ").split())
    attributes: dict[str, str] = {}
    for index, match in enumerate(re.finditer(_OBJECT, text)):
        for key, value in zip(("size", "colour", "shape", "direction"), match.groups(), strict=True):
            attributes[f"object{index + 1}.{key}"] = value
    sound = re.search(_SOUND, text)
    if sound:
        attributes["sound"] = sound.group(1) or sound.group(2)
    return attributes


def questions(scene: Scene, rng: Any) -> list[tuple[str, str, str]]:
    """``(kind, question, answer)`` for every question the scene supports (objects chosen at random by ``rng``)."""
    obj = scene.objects[int(rng.integers(len(scene.objects)))]
    sound = SOUNDS[scene.sound] if scene.sound is not None else SILENCE
    asked = [
        ("caption", QUESTION_TEMPLATES["caption"], caption(scene)),
        ("sound", QUESTION_TEMPLATES["sound"], sound),
        ("count", QUESTION_TEMPLATES["count"], COUNT_WORDS[len(scene.sound_slots)]),
        ("direction", QUESTION_TEMPLATES["direction"].format(shape=obj.shape), obj.direction),
        ("colour", QUESTION_TEMPLATES["colour"].format(shape=obj.shape), obj.colour),
        ("shape", QUESTION_TEMPLATES["shape"].format(colour=obj.colour), obj.shape),
        ("size", QUESTION_TEMPLATES["size"].format(shape=obj.shape), obj.size),
    ]
    if len(scene.sound_slots) == 1 and len(scene.objects) == 1:
        sound_slot, flash_slot = scene.sound_slots[0], scene.objects[0].flash_slot
        asked.append(("sync", QUESTION_TEMPLATES["sync"], "yes" if sound_slot == flash_slot else "no"))
        if sound_slot != flash_slot:
            asked.append(("order", QUESTION_TEMPLATES["order"], "before" if sound_slot < flash_slot else "after"))
    if len(scene.sound_slots) == 1 and len(scene.objects) == 2:
        flashing = next(o for o in scene.objects if o.flash_slot == scene.sound_slots[0])
        asked.append(("which_colour", QUESTION_TEMPLATES["which_colour"], flashing.colour))
    return asked


def records(scene: Scene, clip: str, rng: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(record, metadata)`` pairs for a scene whose mp4 is at ``clip`` (relative to the annotation file)."""
    pairs = []
    for kind, question, answer in questions(scene, rng):
        task = TASK_OF_KIND[kind]
        modalities = MODALITIES_OF_TASK[task]
        prefix = "".join(f"<{m}>" for m in modalities)
        record = {"id": f"{scene.id}-{kind}", **{m: clip for m in modalities}, "task": task,
                  "conversations": [{"from": "human", "value": f"{prefix}\n{question}"},
                                    {"from": "gpt", "value": answer}]}
        meta = {"id": record["id"], "clip": scene.id, "task": task, "kind": kind, "answer": answer,
                "held_out": scene.held_out}
        if kind == "caption":
            meta["attributes"] = caption_attributes(scene)
        pairs.append((record, meta))
    return pairs
