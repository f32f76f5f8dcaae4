"""From user inputs to model inputs: media settings and loaders, tokenizer, prompt/placeholder encoding, the sample
builder, collation into a typed :class:`Batch`, and the :class:`Processor` that ties them to one model.

Imports ``avlm.constants``, ``avlm.modeling`` and the ``audio`` and ``vision`` packages. The names below load on first
use (PEP 562): ``import avlm.processing.collator`` needs torch only.
"""

from avlm._lazy import lazy_exports

_EXPORTS = {
    "MediaConfig": "avlm.processing.media",
    "load_video_frames": "avlm.processing.media",
    "load_audio_features": "avlm.processing.media",
    "LoadedMedia": "avlm.processing.sample",
    "load_media": "avlm.processing.sample",
    "make_sample": "avlm.processing.sample",
    "Batch": "avlm.processing.collator",
    "collate": "avlm.processing.collator",
    "Processor": "avlm.processing.processor",
    "encode_with_placeholders": "avlm.processing.prompt",
    "train_tiny_tokenizer": "avlm.processing.tokenizer",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
