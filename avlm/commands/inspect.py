"""Show what the model sees of a clip: its streams, the sampled frames and the audio over the same span.

Prints a table of the container's streams and writes a PNG contact sheet: the sampled frames with their
timestamps, above the log-mel spectrogram of the audio of the same time span (frame times marked on it).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from avlm.assets import SAMPLE_CLIPS, sample_clip

if TYPE_CHECKING:
    import torch

    from vision.container import MediaInfo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("clip", nargs="?", type=Path, help="video (or audio) file to inspect")
    source.add_argument("--sample", choices=sorted(SAMPLE_CLIPS), help="inspect a bundled real sample clip instead")
    parser.add_argument("--num-frames", type=int, default=16, help="frames sampled uniformly over the clip")
    parser.add_argument("--fps", type=float, default=None, help="sample at this rate instead (capped by --num-frames)")
    parser.add_argument("--out", type=Path, default=Path("sheet.png"), help="where to write the PNG contact sheet")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    from rich.console import Console

    from audio import NoAudioStreamError, load_audio
    from vision import load_video, probe

    console = Console()
    path = sample_clip(args.sample) if args.sample else args.clip
    info = probe(path)
    console.print(_streams_table(info))
    clip = load_video(path, num_frames=args.num_frames, fps=args.fps)
    try:
        sound = load_audio(path, sample_rate=16000, start=clip.start, end=clip.end)
    except NoAudioStreamError:
        sound = None
    _write_sheet(args.out, clip, sound)
    times = ", ".join(f"{t:.2f}" for t in clip.timestamps.tolist())
    console.print(f"read by [bold]{clip.backend}[/]: {len(clip.timestamps)} frames at t = {times} s")
    heard = f"{sound.duration:.2f} s at {sound.sample_rate} Hz, mono" if sound else "no audio stream"
    console.print(f"audio: {heard}")
    console.print(f"wrote {args.out}")
    return 0


def _streams_table(info: MediaInfo):
    # Imported here, not at the top, to keep `avlm --help` light.
    from rich.table import Table

    table = Table(title=f"{info.path}  ({info.container}, {info.duration:.3f} s, {info.size_bytes / 1e6:.2f} MB)")
    for column in ("stream", "codec", "format", "rate", "duration (s)"):
        table.add_column(column)
    if info.video:
        v = info.video
        table.add_row("video", v.codec, f"{v.width}x{v.height}, {v.num_frames or '?'} frames", f"{v.fps:.3f} fps",
                      f"{v.duration:.3f}")
    if info.audio:
        a = info.audio
        table.add_row("audio", a.codec, f"{a.channels} channel(s)", f"{a.sample_rate} Hz", f"{a.duration:.3f}")
    return table


def _log_mel(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """[n] -> [80, frames] log-mel, 25 ms windows every 10 ms (display only)."""
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=400, hop_length=160, n_mels=80)(waveform)
    return torch.log10(mel.clamp_min(1e-10)).clamp_min(mel.clamp_min(1e-10).log10().max() - 8)


def _write_sheet(out: Path, clip, sound) -> None:
    # Imported here, not at the top, to keep `avlm --help` light.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(clip.timestamps)
    columns = min(count, 8)
    rows = math.ceil(count / columns)
    figure = plt.figure(figsize=(2.2 * columns, 1.6 * rows + 2.4), constrained_layout=True)
    grid = figure.add_gridspec(rows + 1, columns, height_ratios=[1.3] * rows + [2.0])
    for index, (frame, time) in enumerate(zip(clip.frames, clip.timestamps.tolist(), strict=True)):
        axis = figure.add_subplot(grid[index // columns, index % columns])
        axis.imshow(frame.numpy())
        axis.set_title(f"#{index}  t={time:.2f}s", fontsize=8)
        axis.axis("off")
    axis = figure.add_subplot(grid[rows, :])
    if sound is not None:
        mel = _log_mel(sound.waveform, sound.sample_rate)
        axis.imshow(mel.numpy(), origin="lower", aspect="auto", cmap="magma",
                    extent=(sound.start, sound.start + sound.duration, 0, mel.shape[0]))
        axis.set_ylabel("mel bin")
    else:
        axis.text(0.5, 0.5, "no audio stream", ha="center", va="center", transform=axis.transAxes)
    for index, time in enumerate(clip.timestamps.tolist()):
        axis.axvline(time, color="cyan", linewidth=0.8)
        axis.text(time, 1.0, str(index), color="cyan", fontsize=7, ha="center", va="bottom",
                  transform=axis.get_xaxis_transform())
    axis.set_xlim(clip.start, clip.end)
    axis.set_xlabel("time (s)")
    figure.suptitle(f"{Path(clip.path).name}: {count} frames, {clip.fps:.2f} fps source, {clip.duration:.2f} s")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)
    plt.close(figure)
