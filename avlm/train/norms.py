"""Token norms of a training step: the mean L2 norm of the vectors the LLM receives, per source.

``text`` is the LLM's input embedding of the batch's text tokens (padding and placeholders left out), ``video`` /
``audio`` the tokens each connector writes at the placeholders. A pre-norm LLM adds these vectors to its residual
stream as they are, so their ratio says how much the media dominate the text there (docs/avsynth.md, "Media-token
norms"). The loop logs them as ``media_norms`` in ``metrics.jsonl``.

Forward hooks on the input embedding and on the connectors keep their outputs only while ``active`` (the loop turns it
on for the steps it logs); the other steps pay nothing. Values are of the last micro-batch of the step on this process.

Notation: b batch rows, L text tokens, n media tokens, D LLM width.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class TokenNorms:
    """Hooks on ``model``'s input embedding and connectors; :meth:`finish` turns a call's outputs into ``values``.

    Args:
        model: an ``AVLMForCausalLM`` (its ``connectors``, ``get_input_embeddings()`` and placeholder token ids).
    """

    def __init__(self, model: nn.Module) -> None:
        self.active = False
        """Keep the outputs of the next calls (set by the loop for logged steps)."""
        self.values: dict[str, float] = {}
        """Mean L2 norm per token of the last measured call: ``text``, then one entry per modality with tokens."""
        self._outputs: dict[str, list[torch.Tensor]] = {}
        self._placeholders = torch.tensor(sorted(model.config.placeholder_token_ids.values()))
        model.get_input_embeddings().register_forward_hook(self._keep("text"))
        for modality, connector in model.connectors.items():
            connector.register_forward_hook(self._keep(modality))

    def _keep(self, key: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            if self.active and isinstance(output, torch.Tensor):
                self._outputs.setdefault(key, []).append(output.detach())

        return hook

    def finish(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """Set ``values`` from the outputs kept during the call on ``input_ids`` / ``attention_mask`` [b, L]."""
        outputs, self._outputs = self._outputs, {}
        if not self.active:
            return
        values = {}
        text = [tensor for tensor in outputs.pop("text", []) if tensor.shape[:2] == input_ids.shape]
        if text:  # the splice embeds the text once, [b, L, D]; placeholders and padding are not text
            real = attention_mask.bool() & ~torch.isin(input_ids, self._placeholders.to(input_ids.device))
            values["text"] = _mean_norm(text[0][real])
        for modality, tensors in outputs.items():  # connector outputs [b, n, D] (one call per group of items)
            values[modality] = _mean_norm(torch.cat([tensor.reshape(-1, tensor.shape[-1]) for tensor in tensors]))
        self.values = {key: value for key, value in values.items() if value is not None}


def _mean_norm(vectors: torch.Tensor) -> float | None:
    """[N, D] -> mean of the N L2 norms (None when N = 0)."""
    return float(vectors.float().norm(dim=-1).mean()) if vectors.shape[0] else None
