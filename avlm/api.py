"""The Python API for scripts: ``model = avlm.load(PATH)``, then ``model.caption(...)`` and ``model.ask(...)``.

Example::

    import avlm

    model = avlm.load("runs/av7b", device="cuda", dtype="bfloat16")
    model.caption("clip.mp4")                                   # -> str
    for result in model.caption(["a.mp4", "b.mp4", clip, frames], batch_size=8):
        print(result.index, result.text or result.error)
    model.ask(video="clip.mp4", question="What instrument is playing?")   # audio: the clip's own soundtrack

A video is a path, a ``vision.load_video`` result (``VideoClip``) or uint8 frames ``[t, h, w, 3]``; an audio is a
path, an ``audio.AudioClip`` or a mono float waveform ``[n]`` at 16 kHz. By default a video file (or a clip read from
one) brings its own soundtrack; a file without an audio track is answered from the video alone (``has_audio`` False).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from avlm.assembly import load_pretrained
from avlm.inference.requests import AUTO, Request, prepare
from avlm.inference.runner import Result, default_batch_size, default_num_workers, generate_texts, run_requests
from avlm.inference.windows import WindowResult, answer_windows
from avlm.modeling.model import AVLMForCausalLM
from avlm.processing.processor import Processor
from vision import VideoClip

DEFAULT_CAPTION_PROMPT = "Describe this video in detail."
DEFAULT_MAX_NEW_TOKENS = 256


def load(path: str | os.PathLike, device: str | torch.device | None = None,
         dtype: str | torch.dtype | None = None) -> AVLM:
    """Load a model folder (avlm or official VideoLLaMA2) with its processor, ready to generate.

    Args:
        path: local model folder.
        device: ``"cuda"``, ``"cuda:1"``, ``"cpu"``, ...; default CUDA when available, else CPU.
        dtype: ``"bfloat16"``, ``"float16"``, ``"float32"``, ``"auto"`` (as saved) or a torch dtype; default
            bfloat16 on an accelerator, float32 on CPU.
    """
    device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    model, processor = load_pretrained(path, dtype=dtype, device=device)
    return AVLM(model.eval(), processor)


class AVLM:
    """A model and its processor with the inference entry points (see the module docstring).

    Keyword arguments of the methods: ``batch_size`` (default 16 on an accelerator, 4 on CPU), ``num_workers``
    (decoding processes; default one per core but one, 0 for a single item), ``max_new_tokens`` (default 256),
    ``seed`` (for sampling) and any other ``model.generate`` setting (``do_sample``, ``temperature``, ``top_p``, ...).
    Decoding is greedy unless ``do_sample=True`` (the sampling defaults of a checkpoint's generation_config are off).
    """

    def __init__(self, model: AVLMForCausalLM, processor: Processor) -> None:
        self.model = model
        self.processor = processor

    @property
    def device(self) -> torch.device:
        return self.model.device

    def caption(self, videos: Any, *, prompt: str = DEFAULT_CAPTION_PROMPT, audio: bool = True,
                segment: float | None = None, overlap: float = 0.0, frames_per_segment: int | None = None,
                **options: Any) -> str | list[Result] | list[WindowResult]:
        """Caption one video (-> str; an unreadable clip raises) or a list of them (-> one :class:`Result` each,
        in input order; an unreadable clip gives a Result with ``error`` set and the others go on).

        With ``segment``: cut one video file into windows of that many seconds (``avlm caption --segment``) and
        caption each from its frames and the audio of the same span -> one :class:`WindowResult` per window (its
        ``segment``, ``start``, ``end``, ``text`` or ``error``), in time order.

        Args:
            videos: a video or a list of videos (paths, ``VideoClip``, uint8 frames ``[t, h, w, 3]``); with
                ``segment``, one video file.
            prompt: the instruction given with every clip.
            audio: give each clip's own soundtrack when it has one; False: video only.
            segment: window length in seconds (see :mod:`avlm.inference.windows` for the rule).
            overlap: seconds shared by consecutive windows.
            frames_per_segment: frames per window (default: the processor's ``num_frames``).
        """
        if segment is not None:
            return self._windows(videos, prompt, AUTO if audio else None, segment, overlap, frames_per_segment,
                                 options)
        single = _is_single(videos)
        requests = [Request(prompt, video, AUTO if audio else None) for video in ([videos] if single else videos)]
        return self._one(requests[0], options) if single else self.run(requests, **options)

    def ask(self, question: str, video: Any = None, audio: Any = AUTO, *, segment: float | None = None,
            overlap: float = 0.0, frames_per_segment: int | None = None, **options: Any) -> str | list[WindowResult]:
        """Answer one question about a video and/or an audio; media errors raise. With ``segment``, answer it for each
        window of the video file (as :meth:`caption` does) -> one :class:`WindowResult` per window.

        Args:
            question: the question.
            video: a video (path, ``VideoClip``, uint8 frames) or None.
            audio: ``"auto"`` (the video file's soundtrack when it has one), None (no audio), a path, an
                ``AudioClip`` or a waveform (with ``segment``: ``"auto"``, None or a path).
            segment, overlap, frames_per_segment: as in :meth:`caption`.
        """
        if segment is not None:
            return self._windows(video, question, audio, segment, overlap, frames_per_segment, options)
        return self._one(Request(question, video, audio), options)

    def ask_many(self, items: Sequence[Request | dict[str, Any]], **options: Any) -> list[Result]:
        """Answer many questions: ``Request`` objects or dicts ``{"question", "video"?, "audio"?}``; one Result each,
        in input order (unreadable media give a Result with ``error`` set)."""
        requests = [item if isinstance(item, Request) else Request(**item) for item in items]
        return self.run(requests, **options)

    def run(self, requests: Sequence[Request], *, batch_size: int | None = None, num_workers: int | None = None,
            seed: int | None = None, **generation: Any) -> list[Result]:
        """Answer requests in batches (the runner behind ``avlm caption`` / ``avlm ask``); results in input order."""
        if num_workers is None:
            num_workers = min(default_num_workers(), max(len(requests) - 1, 0))
        if seed is not None:
            torch.manual_seed(seed)
        results: list[Result | None] = [None] * len(requests)
        for batch in run_requests(self.model, self.processor, requests, num_workers=num_workers,
                                  batch_size=batch_size or default_batch_size(self.device),
                                  generate_kwargs=self._generation(generation)):
            for result in batch:
                results[result.index] = result
        return results  # type: ignore[return-value]  (every index is filled)

    def _one(self, request: Request, options: dict[str, Any]) -> str:
        options = dict(options)
        options.pop("batch_size", None), options.pop("num_workers", None)
        seed = options.pop("seed", None)
        if seed is not None:
            torch.manual_seed(seed)
        item = prepare(self.processor, request, 0, raise_errors=True)
        return generate_texts(self.model, self.processor, [item.sample], self._generation(options))[0]

    def _windows(self, video: Any, question: str, audio: Any, segment: float, overlap: float,
                 frames_per_segment: int | None, options: dict[str, Any]) -> list[WindowResult]:
        if not isinstance(video, (str, os.PathLike)):
            raise TypeError(f"segment= reads the windows of one video file; got {type(video).__name__} (call it once "
                            "per file, or use `avlm caption --segment` for many)")
        options = dict(options)
        batch_size, num_workers = options.pop("batch_size", None), options.pop("num_workers", None)
        seed = options.pop("seed", None)
        if seed is not None:
            torch.manual_seed(seed)
        return answer_windows(self.model, self.processor, video, question, segment=segment, overlap=overlap,
                              frames_per_segment=frames_per_segment, audio=audio,
                              batch_size=batch_size or default_batch_size(self.device), num_workers=num_workers,
                              generate_kwargs=self._generation(options))

    def _generation(self, options: dict[str, Any]) -> dict[str, Any]:
        return {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS, **options}


def _is_single(videos: Any) -> bool:
    return isinstance(videos, (str, os.PathLike, VideoClip, torch.Tensor))
