"""The model core: configuration, the model and its per-modality branches, splice, loss, packing, save/load of avlm
folders, LoRA and the trainable policy, architecture presets.

Imports only ``avlm.constants`` and the ``audio``, ``vision`` and ``fusion`` packages. The names below load on first
use (PEP 562), so ``import avlm.modeling.presets`` stays free of transformers; importing
:mod:`avlm.modeling.model` (which ``AVLMForCausalLM`` does) registers ``model_type="avlm"`` with ``AutoConfig`` and
``AutoModelForCausalLM``.
"""

from avlm._lazy import lazy_exports

_EXPORTS = {
    "AVLMConfig": "avlm.modeling.configuration",
    "ConnectorSpec": "avlm.modeling.configuration",
    "EncoderSpec": "avlm.modeling.configuration",
    "AVLMForCausalLM": "avlm.modeling.model",
    "BRANCHES": "avlm.modeling.branches",
    "MergedInputs": "avlm.modeling.splice",
    "LoRAConfig": "avlm.modeling.lora",
    "TrainablePolicy": "avlm.modeling.trainable",
    "PRESETS": "avlm.modeling.presets",
    "Preset": "avlm.modeling.presets",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
