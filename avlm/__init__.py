"""avlm: audio-visual video understanding with LLMs. Composes the audio, vision and fusion packages."""

__version__ = "0.1.0"

# --- the model classes (import transformers): lazy attributes, and Auto-class registration when transformers loads
import importlib as _importlib
import importlib.abc as _importlib_abc
import importlib.util as _importlib_util
import sys as _sys

_LAZY = {"AVLMConfig": "avlm.config", "AVLMForCausalLM": "avlm.model", "Processor": "avlm.processor",
         "load": "avlm.api"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(_importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avlm' has no attribute {name!r}")


def _register_auto_classes() -> None:
    """Import avlm.model, which registers the Auto classes at its end (avlm.config imports it at its own end). Skipped
    while either is being imported: that import finishes the registration itself."""
    if not {"avlm.config", "avlm.model"} & set(_sys.modules):
        _importlib.import_module("avlm.model")


class _RegisterWhenTransformersLoads(_importlib_abc.MetaPathFinder):
    """Registers avlm with transformers' AutoConfig / AutoModelForCausalLM right after ``import transformers``, so
    ``AutoModelForCausalLM.from_pretrained(avlm_folder)`` works after ``import avlm`` without importing transformers
    eagerly (``import avlm`` stays light)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "transformers":
            return None
        _sys.meta_path.remove(self)
        spec = _importlib_util.find_spec(fullname)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _register_auto_classes()

        spec.loader.exec_module = exec_module
        return spec


if "transformers" in _sys.modules:
    _register_auto_classes()
else:
    _sys.meta_path.insert(0, _RegisterWhenTransformersLoads())
