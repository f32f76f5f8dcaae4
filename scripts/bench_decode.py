"""Decode benchmark: "16 uniform frames + 10 s of audio features" per clip, avlm vs a naive PyAV loader.

Both run side by side in this process on the same generated H.264 + AAC clips (360p and 720p, 12 s and 60 s,
25 fps, camera-like content at x264 crf 23, a keyframe every 2 s or every 10 s):
- avlm:     vision.load_video (seeks only to the 16 frames it needs; one row per ``--backends`` entry: decord,
            the default reader, and PyAV, its fallback) + audio.load_audio over the same 10 s window +
            audio.features.beats_fbank (batched Kaldi fbank);
- baseline: PyAV decodes every video frame to RGB and picks 16, decodes the whole audio track, resamples it
            with torchaudio and computes torchaudio's Kaldi fbank on the first 10 s.
Before timing, each backend's 16 frames are checked equal to the full decode's frames at the same indices.
Also reports audio-feature throughput alone, as a multiple of real time.

    .venv/bin/python scripts/bench_decode.py [--clips 4] [--repeats 3] [--seconds 12 60] [--gop 50 250] \
        [--backends decord pyav]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import av
import numpy as np
import torch
import torchaudio

from audio import load_audio
from audio.features import beats_fbank
from vision import load_video

AUDIO_SECONDS = 10.0
FPS = 25


def _scene(index: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A camera-like frame: a slowly drifting colour gradient, two moving discs, mild sensor noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = index / 50
    frame = np.stack([128 + 100 * np.sin(x / width * 3 + phase), 128 + 100 * np.cos(y / height * 2 - phase),
                      128 + 60 * np.sin((x + y) / (width + height) * 4 + 2 * phase)], axis=-1)
    for k, colour in enumerate(([250, 40, 40], [40, 40, 250])):
        cx = (0.2 + 0.6 * abs(np.sin(phase * (k + 1)))) * width
        cy = (0.3 + 0.4 * abs(np.cos(phase * (k + 2)))) * height
        frame[(x - cx) ** 2 + (y - cy) ** 2 < (height / 8) ** 2] = colour
    frame += rng.normal(0, 3, frame.shape)
    return frame.clip(0, 255).astype(np.uint8)


def write_clip(path: Path, width: int, height: int, seed: int, gop: int, seconds: float = 12.0) -> Path:
    """A ``seconds`` long H.264 clip of a camera-like scene (a keyframe every ``gop`` frames) with a 48 kHz stereo
    AAC track."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "g": str(gop), "crf": "23"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=48000)
        sound.layout = "stereo"
        for index in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(_scene(index + seed, width, height, rng), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        t = np.arange(int(seconds * 48000)) / 48000
        samples = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)]).astype(np.float32) * 0.3
        mux_stereo(container, sound, (samples[:, start:start + 1024] for start in range(0, samples.shape[1], 1024)))
    return path


def mux_stereo(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
               blocks: Iterable[np.ndarray]) -> None:
    """Encode float32 stereo blocks ``[2, n]`` at 48 kHz, one after another, into ``stream``; then flush it."""
    start = 0
    for samples in blocks:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48000, start
        start += samples.shape[1]
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def avlm_loader(path: Path, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    clip = load_video(path, num_frames=16, backend=backend)
    sound = load_audio(path, sample_rate=16000, start=0.0, end=AUDIO_SECONDS)
    return clip.frames, beats_fbank(sound.waveform[None], 16000)


def naive_loader(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    picks = np.linspace(0, len(frames) - 1, 16).round().astype(int)
    video = torch.from_numpy(np.stack([frames[i] for i in picks]))
    with av.open(str(path)) as container:
        chunks = [frame.to_ndarray() for frame in container.decode(audio=0)]
        rate = container.streams.audio[0].sample_rate
    waveform = torch.from_numpy(np.concatenate(chunks, axis=1)).float().mean(0)
    waveform = torchaudio.functional.resample(waveform, rate, 16000)[: int(AUDIO_SECONDS * 16000)]
    fbank = torchaudio.compliance.kaldi.fbank(waveform[None] * 32768, num_mel_bins=128, sample_frequency=16000,
                                              frame_length=25, frame_shift=10)
    return video, fbank


def check_same_frames(path: Path, backend: str) -> None:
    """avlm's frames must equal the naive full decode's frames at the same indices (raises AssertionError)."""
    clip = load_video(path, num_frames=16, backend=backend)
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    expected = np.stack([frames[i] for i in clip.indices.tolist()])
    if not np.array_equal(clip.frames.numpy(), expected):
        raise AssertionError(f"{path}: avlm ({backend}) frames differ from the full decode at {clip.indices.tolist()}")


def clips_per_second(loader, paths: list[Path], repeats: int) -> float:
    loader(paths[0])  # warm-up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            loader(path)
        timings.append(time.perf_counter() - start)
    return len(paths) / statistics.median(timings)


def feature_real_time_factor(repeats: int) -> dict[str, float]:
    """Seconds of audio turned into BEATs fbank per second of compute (best of ``repeats``: the machine is shared)."""
    waveform = torch.randn(8, int(AUDIO_SECONDS * 16000)) * 0.1
    result = {}
    for batch in (1, 8):
        beats_fbank(waveform[:batch], 16000)
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            beats_fbank(waveform[:batch], 16000)
            timings.append(time.perf_counter() - start)
        result[f"batch {batch}, best of {repeats}"] = batch * AUDIO_SECONDS / min(timings)
        result[f"batch {batch}, median"] = batch * AUDIO_SECONDS / statistics.median(timings)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4, help="clips per resolution")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, nargs="+", default=[12.0, 60.0],
                        help="clip durations (12 s: a short clip, 60 s: a typical video-QA clip)")
    parser.add_argument("--gop", type=int, nargs="+", default=[50, 250],
                        help="keyframe intervals in frames (50 = 2 s, streaming-style; 250 = x264's default)")
    parser.add_argument("--backends", nargs="+", choices=["auto", "decord", "pyav"], default=["decord", "pyav"],
                        help="load_video backends to time, one row each")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, torchaudio {torchaudio.__version__}, av {av.__version__}, "
          f"threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as folder:
        for seconds in args.seconds:
            for gop in args.gop:
                for name, (width, height) in {"360p": (640, 360), "720p": (1280, 720)}.items():
                    paths = [write_clip(Path(folder) / f"{name}_{seconds:g}_{gop}_{i}.mp4", width, height, i, gop,
                                        seconds) for i in range(args.clips)]
                    slow = clips_per_second(naive_loader, paths, args.repeats)
                    for backend in args.backends:
                        check_same_frames(paths[0], backend)
                        fast = clips_per_second(partial(avlm_loader, backend=backend), paths, args.repeats)
                        print(f"{seconds:g} s {name}, keyframe every {gop / FPS:g} s: avlm ({backend}) "
                              f"{fast:6.2f} clips/s | naive PyAV {slow:6.2f} clips/s | ratio {fast / slow:5.1f}x",
                              flush=True)
                    for path in paths:
                        path.unlink()
    for label, factor in feature_real_time_factor(args.repeats * 3).items():
        print(f"audio features (beats_fbank, 10 s at 16 kHz, {label}): {factor:,.0f}x real time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
