"""VideoLLaMA2's frame selection and pixel preprocessing, reproduced exactly (for checkpoint parity).

Reference: DAMO-NLP-SG/VideoLLaMA2, branch ``audio_visual`` @ 8cedfbd, ``videollama2/mm_utils.py``
(``frame_sample``, ``process_video``, ``process_image``, ``expand2square``). Its quirks are kept on purpose:

- the ``[s, e]`` window becomes frames ``max(int(s * fps) - 1, 0) .. min(int(e * fps) - 1, n - 1)``;
- a clip with fewer than ``num_frames`` frames gets black frames appended (with height and width swapped, as
  ``np.zeros((*image.size, 3))`` on a PIL image does; this shows only in "pad" mode), then at most
  ``MAX_FRAMES`` frames are kept;
- inference (``model_init``) never pads to a square (``aspect_ratio=None``): frames go straight into the
  image processor; ``"pad"`` (expand2square with the mean colour) is the training preprocessing.

avlm's own :func:`vision.load_video` uses the same uniform rule but a time-based window; use
:func:`load_videollama2_video` where frame-exact agreement with the reference matters.

Notation:
    t: frames decoded; T: frames after black padding and the MAX_FRAMES cap.
    S: processor output side.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import torch

from vision.decode import BACKENDS, VideoClip, decode_frames
from vision.frame_table import read_frame_table
from vision.preprocess import ImageProcessorConfig, preprocess_frames
from vision.sampling import uniform_indices

MAX_FRAMES = 32  # mm_utils.MAX_FRAMES: frames kept after black padding


def videollama2_frame_indices(num_source_frames: int, num_frames: int | None, fps: float | None = None) -> list[int]:
    """``frame_sample``: uniform segment midpoints for ``num_frames``, else one frame per second of ``fps`` video.

    Args:
        num_source_frames: frames in the window (the reference's ``duration``).
        num_frames: frames to take uniformly; None selects the reference's ``'fps'`` mode.
        fps: source frame rate, used only when ``num_frames`` is None.
    """
    if num_frames is not None:
        return uniform_indices(num_source_frames, num_frames)
    if fps is None or not fps >= 1:
        raise ValueError(f"fps={fps!r}: one-frame-per-second sampling (num_frames=None) needs the source fps >= 1")
    import numpy as np

    segment = min(fps // 1, num_source_frames)
    return np.arange(segment // 2, num_source_frames, segment, dtype=int).tolist()  # numpy's rounding kept


def videollama2_frame_range(num_source_frames: int, fps: float, start: float | None, end: float | None) -> range:
    """Frames ``process_video`` reads for the window ``[start, end]`` seconds (both or neither given)."""
    if (start is None) != (end is None):
        raise ValueError(f"start={start!r}, end={end!r}: the reference uses a window only when both are given")
    if start is not None:
        start, end = max(start, 0.0), max(end, 0.0)
        if start > end:
            start, end = end, start
        elif start == end:
            end = start + 1
    first = 0 if start is None else max(int(start * fps) - 1, 0)
    last = num_source_frames - 1 if end is None else min(int(end * fps) - 1, num_source_frames - 1)
    if last < first:
        raise ValueError(f"the window start={start} end={end} selects no frame of a {num_source_frames}-frame, "
                         f"{fps:.3f} fps video")
    return range(first, last + 1)


def videollama2_pixel_values(frames: torch.Tensor, config: ImageProcessorConfig, num_frames: int | None,
                             aspect_ratio: Literal["pad"] | None = None) -> torch.Tensor:
    """``process_video`` on decoded frames: black-pad to ``num_frames``, keep ``MAX_FRAMES``, run the processor.

    Args:
        frames: uint8 ``[t, h, w, 3]``; every frame is kept (no sub-sampling).
        config: the tower's image processor (its own geometry is used unless ``aspect_ratio="pad"``).
        num_frames: pad with black frames up to this many; None pads nothing.
        aspect_ratio: ``"pad"`` for expand2square (training), None for the inference path.

    Returns:
        float32 ``[T, 3, S, S]``.
    """
    if aspect_ratio not in (None, "pad"):
        raise ValueError(f"aspect_ratio={aspect_ratio!r}: choose 'pad' (training) or None (inference)")
    if aspect_ratio == "pad":
        config = dataclasses.replace(config, mode="pad")
    if frames.shape[0] == 0:
        raise ValueError("frames: got 0 frames; the reference needs at least one to size the black padding frames")
    missing = max(0, (num_frames or 0) - frames.shape[0])
    pixels = preprocess_frames(frames[:MAX_FRAMES], config)
    if missing and pixels.shape[0] < MAX_FRAMES:
        _, height, width, _ = frames.shape
        black = torch.zeros(1, width, height, 3, dtype=torch.uint8, device=frames.device)  # size swapped, as upstream
        black_pixels = preprocess_frames(black, config).expand(missing, -1, -1, -1)
        pixels = torch.cat([pixels, black_pixels])[:MAX_FRAMES]
    return pixels


def videollama2_image_pixel_values(image: torch.Tensor, config: ImageProcessorConfig,
                                   aspect_ratio: Literal["pad"] | None = None) -> torch.Tensor:
    """``process_image``: uint8 ``[h, w, 3]`` -> float32 ``[1, 3, S, S]`` (the model repeats it num_frames times)."""
    return videollama2_pixel_values(image[None], config, num_frames=None, aspect_ratio=aspect_ratio)


def load_videollama2_video(path: str | os.PathLike, config: ImageProcessorConfig, num_frames: int | None = 16,
                           start: float | None = None, end: float | None = None,
                           aspect_ratio: Literal["pad"] | None = None,
                           backend: Literal["auto", "decord", "pyav"] = "auto") -> tuple[torch.Tensor, VideoClip]:
    """``process_video`` on a file: the reference's frame choice, then :func:`videollama2_pixel_values`.

    Returns:
        ``(pixel_values [T, 3, S, S], clip)``; ``clip.start``/``clip.end`` span the frames read, for the audio.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: choose one of {BACKENDS}")
    table = read_frame_table(path)
    frames = videollama2_frame_range(table.num_frames, table.fps, start, end)
    indices = [frames[i] for i in videollama2_frame_indices(len(frames), num_frames, table.fps)]
    span_end = min(table.timestamps[frames[-1]] + 1 / table.fps, table.duration)
    clip = decode_frames(table, indices, start=table.timestamps[frames[0]], end=span_end, backend=backend)
    return videollama2_pixel_values(clip.frames, config, num_frames, aspect_ratio), clip
