"""Synthesise the soundtrack of a scene: one sound kind repeated in its slots, silence elsewhere.

Notation: n audio samples.
"""

from __future__ import annotations

import numpy as np

from avlm.synth.scene import SLOTS, Scene

FREQUENCIES = {"high": 1760.0, "low": 330.0}
"""Pitch of the tones in Hz."""
CHIRP = (500.0, 3000.0)
"""Start and end frequency of the chirp sweep in Hz."""
EVENT_FRACTION = 0.5
"""Length of a sound event as a fraction of its slot (centred in the slot)."""
AMPLITUDE = 0.4


def event_span(scene: Scene, slot: int) -> tuple[float, float]:
    """``(start, end)`` seconds of the sound event in ``slot``."""
    length = scene.duration / SLOTS
    start = (slot + (1 - EVENT_FRACTION) / 2) * length
    return start, start + EVENT_FRACTION * length


def render_audio(scene: Scene, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """float32 mono waveform ``[n]`` of ``scene.duration`` seconds; events have 10 ms raised-cosine fades."""
    audio = np.zeros(round(scene.duration * sample_rate), dtype=np.float32)
    for slot in scene.sound_slots:
        start, end = event_span(scene, slot)
        first, last = round(start * sample_rate), round(end * sample_rate)
        audio[first:last] = _event(scene.sound, last - first, sample_rate, rng)
    return audio


def _event(kind: str | None, length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    time = np.arange(length) / sample_rate
    if kind in FREQUENCIES:
        wave = np.sin(2 * np.pi * FREQUENCIES[kind] * time)
    elif kind == "chirp":
        low, high = CHIRP
        rate = (high - low) / (length / sample_rate)
        wave = np.sin(2 * np.pi * (low * time + 0.5 * rate * time * time))
    elif kind == "noise":
        wave = rng.uniform(-1.0, 1.0, length)
    else:
        raise ValueError(f"unknown sound kind {kind!r}")
    fade = min(length // 2, round(0.01 * sample_rate))
    envelope = np.ones(length)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade))
    envelope[:fade], envelope[length - fade:] = ramp, ramp[::-1]
    return (AMPLITUDE * wave * envelope).astype(np.float32)
