"""The whole pipeline in one command, on CPU in a few minutes: generate AV-Synth (real H.264 + AAC clips with known
answers), train a small model end to end with the ``av_joint`` recipe, evaluate it on held-out attribute
combinations (and again with the audio silenced and with the video blacked out, to show that the audio-visual
questions need both senses), then caption held-out clips and the real bigbuckbunny.mp4.

Examples::

    avlm demo                          # writes avlm-demo/: data, train, model, report.json, captions.jsonl
    avlm demo --out runs/demo --steps 600 --n-train 600
    avlm demo --full                   # the issue #18 settings (avlm.demo.FULL): wider LLM, 32 px, more data and steps
    avlm caption --model avlm-demo/model my_clips/ -o captions.jsonl   # the trained model, like any other

Re-running continues: the data set and a finished training run are reused.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # The defaults are DemoConfig's, applied in run(): importing avlm.demo here would load torch for --help.
    parser.add_argument("--full", action="store_true",
                        help="the settings aimed at the full targets (avlm.demo.FULL: LLM d=128, 32 px frames, 1600 "
                             "clips, 6500 steps, a video-heavy mix with direction questions twice, learning curves; "
                             "writes avlm-demo-full/, ~30 min on 2 cores); the options below still apply on top")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--n-train", type=int, default=None, help="AV-Synth training clips")
    parser.add_argument("--n-test", type=int, default=None, help="held-out clips")
    parser.add_argument("--steps", type=int, default=None, help="training steps")
    parser.add_argument("--batch-size", type=int, default=None, help="training samples per step")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate")
    parser.add_argument("--model", default=None, help="preset or model folder to train from scratch")
    parser.add_argument("--seed", type=int, default=None, help="seed of the data and the run")
    parser.add_argument("--curve-every", type=int, default=None,
                        help="keep a checkpoint every this many steps and draw held-out learning curves from them "
                             "(OUT/curves/; --full: 2000); 0: none")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="further recipe overrides")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    from avlm.demo import DemoConfig, run_demo

    if args.curve_every is not None and args.curve_every < 0:
        raise ValueError(f"--curve-every {args.curve_every} must be >= 0 (0: no learning curves)")
    for name in ("n_train", "n_test", "steps", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)} must be >= 1")
    given = {name: getattr(args, name) for name in ("out", "n_train", "n_test", "seed", "model", "steps",
                                                   "batch_size", "lr", "curve_every")}
    chosen = {name: value for name, value in given.items() if value is not None}
    config = (DemoConfig.full if args.full else DemoConfig)(**chosen, overrides=list(args.overrides))
    report = run_demo(config)
    _print(report, config.out)
    return 0


def _print(report: dict, out: Path) -> None:
    # Imported here, not at the top, to keep `avlm --help` light.
    from rich.console import Console
    from rich.table import Table

    def percent(value: float | None) -> str:
        return "" if value is None else f"{value:.0%}"

    table = Table(title="avlm demo: held-out AV-Synth (attribute pairs never seen in training)",
                  caption="no audio: soundtracks silenced; no video: frames blacked out (AV questions)")
    for column in ("", "accuracy", "no audio", "no video", "chance", "target"):
        table.add_column(column, justify="left" if not column else "right")
    for row in report["summary"]:
        target = row.get("target")
        mark = "" if target is None else (" [green]met[/green]" if row["met"] else " [red]missed[/red]")
        table.add_row(row["name"], percent(row["accuracy"]), percent(row.get("no_audio")),
                      percent(row.get("no_video")), percent(row.get("chance")),
                      "" if target is None else f">= {target:.0%}{mark}")
    console = Console()
    console.print(table)
    for row in report["captions"]:
        console.print(f"[bold]{Path(row['video']).name}[/bold]: {row.get('caption', row.get('error'))}")
    timing = ", ".join(f"{name} {value:.0f} s" for name, value in report["seconds"].items())
    console.print(f"time: {timing}")
    console.print(f"model: {out / 'model'}   report: {out / 'report.json'}   captions: {out / 'captions.jsonl'}")
