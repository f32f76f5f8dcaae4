"""The training forward pass: the model's own embedding path and loss, with per-stage times taken by module hooks.

:class:`TrainingForward` wraps the model for accelerate (DDP / FSDP wrap *it*, so gradient synchronisation works as
with the model's own forward). It calls ``AVLMForCausalLM.embed_multimodal`` (each modality's branch, then the
splice) and the model's loss on the spliced embeddings; nothing here walks the modalities again.

Stage times ("vision", "audio", "connectors", "llm_forward") are wall-clock seconds taken by forward hooks on the
encoders and connectors; "llm_forward" is the rest of the call (splice, LLM and loss). On CUDA each hook synchronises
the device first, so the times are true but the hooks cost a little; on CPU they cost nothing measurable.

Missing modalities. With ``run_all_encoders`` the model runs a branch without items on a dummy input and adds
``0 * sum(tokens)`` (``embed_multimodal(run_all_branches=True)``): every rank touches every parameter in the same
order each step (FSDP / ZeRO-3 gather the same shards on all ranks; DDP sees no unused parameters). Values and
gradients are unchanged.

Loss scaling. The model sums the token losses of the micro-batch and divides by ``num_items``, the labelled tokens of
the whole global batch (all micro-batches of the step on all ranks), times ``world_size`` (DDP averages gradients
over ranks): the step's gradient is then the token mean over the global batch, whatever the split into processes
and micro-batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from avlm.constants import IGNORE_INDEX
from avlm.modeling.model import AVLMForCausalLM
from avlm.processing.collator import Batch
from avlm.train.norms import TokenNorms

STAGES = ("vision", "audio", "connectors", "llm_forward")
ENCODER_STAGES = {"video": "vision", "audio": "audio"}


class TrainingForward(nn.Module):
    """``forward(batch, num_items, world_size) -> loss``; ``times`` holds the last call's stage seconds,
    ``tokens`` its LLM tokens (text + media, without padding) and ``norms`` the token norms of the calls made while
    ``norms.active`` (:class:`avlm.train.norms.TokenNorms`).

    Args:
        model: the model.
        run_all_encoders: run every branch every call (see the module docstring).
        pack: run the LLM on the packed real tokens (``AVLMForCausalLM.forward(pack=True)``).
    """

    def __init__(self, model: AVLMForCausalLM, run_all_encoders: bool = False, pack: bool = False) -> None:
        super().__init__()
        self.model = model
        self.run_all_encoders = run_all_encoders
        self.pack = pack
        self.times: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.tokens = 0
        self._sync = _synchronizer(model.get_input_embeddings().weight.device)
        for modality, encoder in model.encoders.items():
            _time_module(encoder, ENCODER_STAGES[modality], self.times, self._sync)
        for connector in model.connectors.values():
            _time_module(connector, "connectors", self.times, self._sync)
        self.norms = TokenNorms(model)

    def forward(self, batch: Batch, num_items: torch.Tensor, world_size: int = 1) -> torch.Tensor:
        """Loss of one micro-batch: summed token loss / ``num_items`` x ``world_size`` (a scalar tensor)."""
        for stage in STAGES:
            self.times[stage] = 0.0
        with self._timed_call():
            inputs = batch.model_inputs()
            merged = self.model.embed_multimodal(**inputs, run_all_branches=self.run_all_encoders)
            out = self.model(inputs_embeds=merged.inputs_embeds, attention_mask=merged.attention_mask,
                             position_ids=merged.position_ids, labels=merged.labels, num_items_in_batch=num_items,
                             pack=self.pack)
        self.norms.finish(batch.input_ids, batch.attention_mask)
        mask = batch.attention_mask_cpu if batch.attention_mask_cpu is not None else batch.attention_mask
        self.tokens = int(mask.sum()) - merged.media_items + merged.media_tokens
        loss = out.loss * world_size
        if not loss.requires_grad:  # the batch touched no trained part (e.g. text-only while only audio trains)
            loss = loss + sum(parameter.sum() * 0.0 for parameter in self.parameters() if parameter.requires_grad)
        return loss

    @contextmanager
    def _timed_call(self) -> Iterator[None]:
        """The whole call; what the hooks did not take is "llm_forward"."""
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            hooked = sum(self.times[stage] for stage in STAGES if stage != "llm_forward")
            self.times["llm_forward"] = time.perf_counter() - start - hooked


def _time_module(module: nn.Module, stage: str, times: dict[str, float], sync: Callable[[], None]) -> None:
    """Add the wall time of every ``module`` call to ``times[stage]`` (forward pre/post hooks)."""
    started: list[float] = []

    def before(*_: object) -> None:
        sync()
        started.append(time.perf_counter())

    def after(*_: object) -> None:
        sync()
        times[stage] += time.perf_counter() - started.pop()

    module.register_forward_pre_hook(before)
    module.register_forward_hook(after)


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def labelled_tokens(batch: Batch) -> int:
    """Tokens the loss is taken on: labelled positions after the one-token shift (``labels[:, 1:]``)."""
    return int((batch.labels[:, 1:] != IGNORE_INDEX).sum())
