"""Audio encoders: BEATs and Whisper towers (see the ``audio.AUDIO_ENCODERS`` registry)."""
