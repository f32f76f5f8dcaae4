"""Generate AV-Synth: mp4 clips with known objects, motion and sounds, and train/test annotation files.

The test split uses attribute pairs never seen together in training (listed in OUT_DIR/synth.json). Records carry
their task (caption, audio_qa, video_qa, av_qa); OUT_DIR/{split}_meta.jsonl adds the question kind and the answer.
"""

from __future__ import annotations

import argparse

from avlm.synth.generate import SynthConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SynthConfig()
    parser.add_argument("out_dir", help="output folder (clips/, train.json, test.json, *_meta.jsonl, synth.json)")
    parser.add_argument("--n-train", type=int, default=defaults.n_train, help="clips in the train split")
    parser.add_argument("--n-test", type=int, default=defaults.n_test, help="clips in the test split")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of scenes and held-out pairs")
    parser.add_argument("--duration", type=float, default=defaults.duration, help="clip length in seconds")
    parser.add_argument("--side", type=int, default=defaults.side, help="frame width and height in pixels")
    parser.add_argument("--fps", type=float, default=defaults.fps, help="frame rate")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top, to keep `avlm --help` light.
    from rich.console import Console
    from rich.table import Table

    from avlm.synth.generate import generate

    config = SynthConfig(n_train=args.n_train, n_test=args.n_test, seed=args.seed, duration=args.duration,
                         side=args.side, fps=args.fps)
    manifest = generate(args.out_dir, config)
    table = Table(title=f"AV-Synth in {args.out_dir} ({manifest['seconds']} s)")
    table.add_column("task/kind")
    for split in manifest["records"]:
        table.add_column(split, justify="right")
    keys = sorted({key for counts in manifest["records"].values() for key in counts})
    for key in keys:
        table.add_row(key, *(str(counts.get(key, 0)) for counts in manifest["records"].values()))
    Console().print(table)
    pairs = "; ".join(f"{kind}: " + ", ".join("/".join(pair) for pair in found)
                      for kind, found in manifest["held_out"].items())
    print(f"held out of training: {pairs}")
    return 0
