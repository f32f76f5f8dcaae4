"""audio: audio loading, feature front ends (Kaldi fbank, Whisper log-mel) and audio encoders.

Imports nothing heavy at import time (decord, PyAV, soundfile and librosa are loaded inside the readers).
"""

from pathlib import Path
from typing import Any

import torch

from audio.encoders.beats import BEATsConfig, BEATsEncoder
from audio.encoders.whisper import WhisperAudioEncoder
from audio.features import beats_fbank, beats_normalize, kaldi_fbank, whisper_log_mel
from audio.io import AudioClip, NoAudioStreamError, load_audio, silence

# Registry of audio encoders: name -> class. One line per entry; see build_audio_encoder.
AUDIO_ENCODERS: dict[str, type] = {
    "beats": BEATsEncoder,
    "whisper": WhisperAudioEncoder,
}


def build_audio_encoder(
    name: str, path: str | Path | None = None, config: Any | None = None, **options: Any
) -> torch.nn.Module:
    """Build a registered audio encoder from a local checkpoint or from a config (random init).

    Args:
        name: registry key of ``AUDIO_ENCODERS`` ("beats", "whisper").
        path: local checkpoint, loaded strictly with ``from_pretrained`` (a BEATs ``.pt`` file, a Whisper folder).
        config: config for a random-init encoder (``from_config``: ``BEATsConfig``, ``WhisperConfig``); give exactly
            one of path and config.
        **options: encoder options (``frozen``, and the encoder's own, e.g. Whisper's ``attn_implementation``).

    Returns:
        The encoder: forward ([b, f, m], lengths [b] | None) -> (tokens [b, n, d], lengths [b]).
    """
    if name not in AUDIO_ENCODERS:
        raise ValueError(f"unknown audio encoder {name!r}; choose one of {sorted(AUDIO_ENCODERS)}")
    if (path is None) == (config is None):
        raise ValueError(
            f"build_audio_encoder({name!r}) needs exactly one of path (checkpoint) and config (random init), "
            f"got path={path!r}, config={type(config).__name__}; use AUDIO_ENCODERS[{name!r}].tiny() for tests"
        )
    encoder_class = AUDIO_ENCODERS[name]
    if path is not None:
        return encoder_class.from_pretrained(path, **options)
    return encoder_class.from_config(config, **options)


__all__ = ["AUDIO_ENCODERS", "build_audio_encoder", "BEATsConfig", "BEATsEncoder"]
__all__ += ["AudioClip", "NoAudioStreamError", "load_audio", "silence"]
__all__ += ["beats_fbank", "beats_normalize", "kaldi_fbank", "whisper_log_mel"]
