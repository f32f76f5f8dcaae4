"""The vocabulary every layer of avlm shares: label masking, placeholders, modalities, batch keys, media suffixes.

This module imports nothing; every other module of ``avlm`` may import it (``tests/test_layers.py`` checks the
layering). A name defined here is defined nowhere else.
"""

IGNORE_INDEX = -100
"""Label of a position the loss skips (prompt, media and padding tokens), as in PyTorch's cross-entropy."""

MODALITIES = ("video", "audio")
"""Modalities with an encoder, in splice order: the video tokens of an audio-visual sample come before its audio."""

PLACEHOLDER_TOKENS = {"video": "<video>", "audio": "<audio>", "image": "<image>"}
"""How each placeholder is written in annotation text and in avlm tokenizers (one special token each)."""

PLACEHOLDERS = tuple(PLACEHOLDER_TOKENS)
"""Placeholder names; an ``image`` placeholder takes the video modality's features (an image is a short video)."""

TINY_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *PLACEHOLDER_TOKENS.values())
"""The special tokens of avlm's tiny trained tokenizer, in id order (ids 0..5): padding, ChatML turn start and end (the
EOS), then the placeholders. Tiny presets name their token ids by position here."""

AV_FUSIONS = ("separate", "concat_at_video")
"""Where the audio tokens of an audio-visual sample go: at their own placeholder, or appended to the video block."""

AUTO_AUDIO = "auto"
"""Audio source meaning "the video file's own soundtrack when it has one" (requests, the Python API)."""

MEDIA_FIELDS = {
    "video": ("video_pixels", "video_frame_counts", "video_sample_index"),
    "audio": ("audio_features", "audio_lengths", "audio_sample_index"),
}
"""Modality -> batch keys of its values, their per-item lengths, and the batch row of each item."""

TEXT_FIELDS = ("input_ids", "attention_mask", "labels")
"""Batch keys of the (padded) text."""

MODEL_INPUT_NAMES = (*TEXT_FIELDS, *(key for keys in MEDIA_FIELDS.values() for key in keys))
"""Batch keys that ``AVLMForCausalLM.forward`` / ``generate`` take."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
"""File suffixes read as images (a one-frame video) rather than video containers."""
