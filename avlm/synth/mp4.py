"""Write an mp4 file (H.264 video + AAC audio) with PyAV, byte-identical for identical input (single-threaded
x264, frames converted to yuv420p before encoding).

Notation: t frames, S frame side, n audio samples.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

AUDIO_CHUNK = 1024  # samples per AAC frame


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, audio: np.ndarray, sample_rate: int,
              crf: int = 18) -> Path:
    """Encode uint8 frames ``[t, S, S, 3]`` at ``fps`` and a mono float waveform ``[n]`` into ``path``.

    Args:
        path: output ``.mp4`` file (overwritten).
        frames: RGB frames; the side must be even (yuv420p).
        fps: frame rate.
        audio: waveform in [-1, 1] at ``sample_rate``.
        sample_rate: audio sample rate in Hz (AAC supports 8000-96000).
        crf: x264 quality (lower is better; 18 keeps the flat colours of the synthetic scenes).
    """
    path = Path(path)
    odd = frames.ndim == 4 and (frames.shape[1] % 2 or frames.shape[2] % 2)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or odd:
        raise ValueError(f"frames must be uint8 [t, h, w, 3] with even h, w; got {frames.dtype} {list(frames.shape)}")
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                     options={"crf": str(crf), "preset": "veryfast", "threads": "1"})
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        video.codec_context.thread_count = 1
        sound = container.add_stream("aac", rate=sample_rate)
        sound.layout = "mono"
        for array in frames:  # converted here: letting the encoder convert rgb24 made the bitstream vary run to run
            frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="yuv420p")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        samples = np.ascontiguousarray(audio, dtype=np.float32)[None]
        for start in range(0, samples.shape[1], AUDIO_CHUNK):
            block = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + AUDIO_CHUNK]),
                                               format="fltp", layout="mono")
            block.sample_rate, block.pts = sample_rate, start
            container.mux(sound.encode(block))
        container.mux(sound.encode())
    return path
