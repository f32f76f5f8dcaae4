"""Window benchmark: a long file cut into windows, read in one pass vs one ``load_video`` + ``load_audio`` per window.

The clip (generated once, at test time: tiny frames, 25 fps, a keyframe every 2 s, 48 kHz stereo AAC; ``--keep DIR``
reuses it) is cut into ``--segment`` s windows by ``avlm.inference.windows.plan_windows``. For every window both
paths produce ``--frames`` uniformly sampled frames and the 16 kHz mono audio of the window's span:

- one pass (what ``avlm caption --segment`` does per worker): the frame index is read once, one
  ``vision.windows.WindowReader`` decodes forward through the file, one ``audio.windows.AudioWindowReader`` reads the
  soundtrack in 120 s stretches;
- baseline: ``vision.load_video(path, num_frames, start, end, backend)`` + ``audio.load_audio(path, start=, end=)``
  per window (each call opens the file; ``load_video`` also re-reads the frame index).

Both paths' frames are checked equal, window by window, and their audio the same length (the baseline's audio
differs only in the first milliseconds after its per-window seek: the printed maximum difference is over the rest).

    .venv/bin/python scripts/bench_windows.py [--seconds 3600] [--segment 30] [--frames 16] [--backends pyav decord]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from bench_decode import mux_stereo

from audio import load_audio
from audio.windows import AudioWindowReader
from avlm.inference.windows import plan_windows
from vision import load_video
from vision.frame_table import read_frame_table
from vision.windows import WindowReader

FPS = 25
SETTLE = 0.1  # seconds after a window's start where the baseline's seek may change the audio


def write_long_clip(path: Path, seconds: float, width: int = 64, height: int = 48, gop: int = 50) -> Path:
    """``seconds`` of H.264 (a colour that changes every second, a moving bar) + 48 kHz stereo AAC."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "g": str(gop)})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=48000)
        sound.layout = "stereo"
        array = np.zeros((height, width, 3), dtype=np.uint8)
        for index in range(int(seconds * FPS)):
            array[:] = ((index // FPS) * np.array([37, 91, 151])) % 256
            array[:4, index % width] = 255
            for packet in video.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        started_seconds = len(range(0, int(seconds * 48000), 48000))  # a last, partial second is written whole
        mux_stereo(container, sound, (_second_of_tone(second) for second in range(started_seconds)))
    return path


def _second_of_tone(second: int) -> np.ndarray:
    """Stereo float32 ``[2, 48000]``: second ``second`` of the soundtrack, a new tone every second."""
    t = (second * 48000 + np.arange(48000)) / 48000
    tone = 300 + 100 * (second % 8)
    return 0.3 * np.stack([np.sin(2 * np.pi * tone * t), np.sin(2 * np.pi * 2 * tone * t)]).astype(np.float32)


def one_pass(path: Path, segment: float, frames: int) -> tuple[float, list]:
    """Plan the windows and read them all in one pass; returns (seconds, [(frames, waveform)] per window)."""
    start = time.perf_counter()
    table = read_frame_table(path)
    windows = plan_windows(table.timestamps, table.duration, segment)
    with WindowReader(table, num_frames=frames) as video, AudioWindowReader(path, 16000) as sound:
        read = [(video.read(w.start, w.end).frames, sound.read(w.start, w.end).waveform) for w in windows]
    return time.perf_counter() - start, read


def per_window(path: Path, segment: float, frames: int, backend: str) -> tuple[float, list]:
    """The same windows, each through ``load_video`` + ``load_audio``; the plan is not timed."""
    table = read_frame_table(path)
    windows = plan_windows(table.timestamps, table.duration, segment)
    start = time.perf_counter()
    read = [(load_video(path, num_frames=frames, start=w.start, end=w.end, backend=backend).frames,
             load_audio(path, sample_rate=16000, start=w.start, end=w.end).waveform) for w in windows]
    return time.perf_counter() - start, read


def compare(ours: list, theirs: list) -> float:
    """Raise unless the frames are equal and the audio lengths match; returns the largest audio difference after
    :data:`SETTLE` s of each window."""
    if len(ours) != len(theirs):
        raise AssertionError(f"{len(ours)} windows in one pass, {len(theirs)} per window")
    largest = 0.0
    for index, ((frames, audio), (expected_frames, expected_audio)) in enumerate(zip(ours, theirs, strict=True)):
        if not torch.equal(frames, expected_frames):
            raise AssertionError(f"window {index}: the one-pass frames differ from load_video's")
        if audio.shape != expected_audio.shape:
            raise AssertionError(f"window {index}: audio of {audio.shape} vs {expected_audio.shape} samples")
        skip = int(SETTLE * 16000)
        largest = max(largest, float((audio[skip:] - expected_audio[skip:]).abs().max()))
    return largest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3600.0, help="clip length (default: one hour)")
    parser.add_argument("--segment", type=float, default=30.0, help="window length in seconds")
    parser.add_argument("--frames", type=int, default=16, help="frames per window")
    parser.add_argument("--backends", nargs="+", choices=["auto", "decord", "pyav"], default=["pyav", "decord"],
                        help="load_video backends of the baseline, one row each (decord is what auto uses)")
    parser.add_argument("--keep", type=Path, default=None, help="folder to keep (and reuse) the generated clip in")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"long_{args.seconds:g}s.mp4"
        if not path.exists():
            begin = time.perf_counter()
            write_long_clip(path, args.seconds)
            print(f"generated {path.name} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - begin:.0f} s",
                  file=sys.stderr)
        ours_seconds, ours = one_pass(path, args.segment, args.frames)
        windows = len(ours)
        print(f"clip: {args.seconds:g} s at {FPS} fps, {windows} windows of {args.segment:g} s, {args.frames} frames "
              f"+ 16 kHz audio each")
        print(f"one pass:   {ours_seconds:8.2f} s  ({ours_seconds / windows * 1000:7.1f} ms/window)")
        for backend in args.backends:
            theirs_seconds, theirs = per_window(path, args.segment, args.frames, backend)
            difference = compare(ours, theirs)
            print(f"per window: {theirs_seconds:8.2f} s  ({theirs_seconds / windows * 1000:7.1f} ms/window, "
                  f"load_video backend {backend})")
            print(f"ratio ({backend}): {theirs_seconds / ours_seconds:.2f}x (goal >= 3x); frames equal in every "
                  f"window; audio equal in length, max difference after {SETTLE:g} s of a window {difference:.2e}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
