"""The inference loop shared by ``avlm caption``, ``avlm ask`` and the Python API.

Notation: b samples in a batch, L longest prompt, new generated tokens.

Requests are decoded, preprocessed and tokenized by DataLoader worker processes (``num_workers``) ahead of the model,
one request per item, in input order, a window ahead. The main process collects a window of prepared samples, sorts
it by padded size (prompt tokens, frames, audio frames) so that a batch holds samples of similar length, collates
each ``batch_size`` slice (left padding), runs ``model.generate`` once per batch (all frames of the batch through the
vision encoder in one call) and yields the decoded results. A request that could not be read is yielded as an error
result at once. Results carry their request index, so callers key them by it: order does not matter.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from avlm.inference.requests import Prepared, PrepareDataset, Request
from avlm.modeling.model import AVLMForCausalLM
from avlm.processing.collator import collate
from avlm.processing.processor import Processor
from avlm.resources import usable_cores

SAMPLING_SETTINGS = ("temperature", "top_p", "top_k")


@dataclass
class Result:
    """The outcome of one request.

    Attributes:
        index: position of the request in the job's list.
        text: the generated text (None on error).
        error: why the request failed (names the file), None on success.
        num_frames: frames given to the model.
        has_audio: whether audio was given to the model.
        seconds: duration of the clip span the frames cover (None when unknown).
    """

    index: int
    text: str | None
    error: str | None
    num_frames: int = 0
    has_audio: bool = False
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def default_num_workers() -> int:
    """Decoding workers: one per CPU core but one (for the main process), at most 8; 0 on a single core."""
    return max(0, min(8, usable_cores() - 1))


def default_batch_size(device: torch.device | str) -> int:
    """Samples per ``generate`` call: 16 on an accelerator (a 7B model in bf16 with 16 frames + audio needs about
    3 GB beyond its weights at 16), 4 on CPU (where a bigger batch gains little and delays the first results)."""
    return 4 if torch.device(device).type == "cpu" else 16


def run_requests(model: AVLMForCausalLM, processor: Processor, requests: Sequence[Request], *, batch_size: int,
                 num_workers: int, generate_kwargs: dict[str, Any],
                 sort_window: int | None = None) -> Iterator[list[Result]]:
    """Prepare and answer ``requests``; yields the results of each finished batch (or of each failed request).

    Args:
        model: an ``AVLMForCausalLM`` in eval mode, on its device.
        processor: its :class:`avlm.Processor`.
        requests: what to answer.
        batch_size: samples per ``generate`` call.
        num_workers: DataLoader worker processes decoding ahead (0: decode in this process).
        generate_kwargs: passed to ``model.generate`` (``max_new_tokens``, ``do_sample``, ``temperature``, ...).
        sort_window: prepared samples collected and sorted by length before batching; default ``2 * batch_size``
            (media tokens dominate a prompt, so a small window removes most padding; every sample of a window is
            in memory at once, and as many again are prefetched by the workers).
    """
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"batch_size={batch_size} must be >= 1 and num_workers={num_workers} >= 0")
    window = sort_window if sort_window is not None else 2 * batch_size
    # while a window is being answered, the workers prepare the next one: at least a window in flight
    dataset = PrepareDataset(processor, list(requests), model.dtype)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False,
        num_workers=num_workers, collate_fn=_identity, worker_init_fn=_one_thread if num_workers else None,
        prefetch_factor=max(2, math.ceil(window / num_workers)) if num_workers else None)
    pending: list[Prepared] = []
    for item in loader:
        if item.sample is None:
            yield [Result(item.index, None, item.error)]
            continue
        pending.append(item)
        if len(pending) >= window:
            yield from _answer_window(model, processor, pending, batch_size, generate_kwargs)
            pending = []
    if pending:
        yield from _answer_window(model, processor, pending, batch_size, generate_kwargs)
    dataset.close()  # window readers opened in this process (num_workers=0); an abandoned run leaves them to the GC


def _answer_window(model: AVLMForCausalLM, processor: Processor, items: list[Prepared], batch_size: int,
                   generate_kwargs: dict[str, Any]) -> Iterator[list[Result]]:
    items = sorted(items, key=Prepared.length_key)
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        texts = generate_texts(model, processor, [item.sample for item in chunk], generate_kwargs)
        yield [Result(item.index, text, None, item.num_frames, item.has_audio, item.seconds)
               for item, text in zip(chunk, texts, strict=True)]


def generate_texts(model: AVLMForCausalLM, processor: Processor, samples: list[dict[str, Any]],
                   generate_kwargs: dict[str, Any]) -> list[str]:
    """Collate samples (left padding), generate (greedy unless ``do_sample=True``: :func:`greedy_unless_sampling`),
    and decode the new tokens of each row (special tokens skipped)."""
    batch = collate(samples, processor.tokenizer.pad_token_id, "left")
    inputs = batch.to(model.device, media_dtype=model.dtype).model_inputs(labels=False)
    with torch.inference_mode():
        new_tokens = model.generate(**inputs, **greedy_unless_sampling(generate_kwargs))
    return [text.strip() for text in processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def greedy_unless_sampling(generate_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Greedy decoding unless ``do_sample=True`` is given, as in VideoLLaMA2's inference: the sampling settings a
    checkpoint's ``generation_config`` may carry (official folders: ``do_sample`` true, temperature 0.7, top_p 0.8,
    top_k 20) are then switched off instead of silently sampling."""
    if generate_kwargs.get("do_sample", False):
        return generate_kwargs
    off = {name: None for name in SAMPLING_SETTINGS if name not in generate_kwargs}
    return {**generate_kwargs, "do_sample": False, **off}


def _identity(item: Prepared) -> Prepared:
    return item


def _one_thread(worker_id: int) -> None:
    """Workers decode with FFmpeg's threads; one torch thread each keeps them from oversubscribing the cores."""
    torch.set_num_threads(1)
