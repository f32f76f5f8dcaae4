"""avlm: audio-visual video understanding with LLMs. Composes the audio, vision and fusion packages."""

__version__ = "0.1.0"
