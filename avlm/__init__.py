"""avlm: audio-visual video understanding with LLMs. Composes the audio, vision and fusion packages.

``import avlm`` loads neither torch's model code nor transformers: the names below load on first use (PEP 562).
The package is layered (``docs/architecture.md``): ``constants`` <- ``modeling`` <- ``processing`` <- ``convert`` <-
``assembly`` <- applications (``api``, ``inference``, ``data``, ``train``, ``eval``, ``synth``) <- ``cli``/``commands``.
"""

from avlm._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "AVLMConfig": "avlm.modeling.configuration",
    "AVLMForCausalLM": "avlm.modeling.model",
    "Processor": "avlm.processing.processor",
    "load": "avlm.api",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
