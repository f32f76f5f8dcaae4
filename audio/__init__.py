"""audio: audio loading, feature front ends (Kaldi fbank, Whisper log-mel) and audio encoders.

Imports nothing heavy at import time (decord, PyAV, soundfile and librosa are loaded inside the readers).
"""

# Registry of audio encoders: name -> class. One line per entry; see build_audio_encoder.
AUDIO_ENCODERS: dict[str, type] = {}

__all__ = ["AUDIO_ENCODERS"]
