"""audio: audio loading, feature front ends (Kaldi fbank, Whisper log-mel) and audio encoders.

Imports nothing heavy at import time (decord, PyAV, soundfile and librosa are loaded inside the readers).
"""

from audio.encoders.whisper import WhisperAudioEncoder

# Registry of audio encoders: name -> class. One line per entry; see build_audio_encoder.
AUDIO_ENCODERS: dict[str, type] = {
    "whisper": WhisperAudioEncoder,
}

__all__ = ["AUDIO_ENCODERS"]
