"""Assembly: build a new model from a preset and parts on disk (``build_model``), and load any model folder with its
processor (``load_pretrained``), the one place that tells an official VideoLLaMA2 folder from an avlm folder.

Imports ``avlm.modeling``, ``avlm.processing`` and ``avlm.convert``.
"""

from avlm.assembly.build import build_model
from avlm.assembly.load import load_model, load_pretrained, load_processor

__all__ = ["build_model", "load_model", "load_processor", "load_pretrained"]
