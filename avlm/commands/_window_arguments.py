"""Command-line options of long-video windows (``avlm caption``, ``avlm ask``): ``--segment``, ``--overlap``,
``--frames-per-segment``. argparse only, so that ``--help`` imports neither torch nor transformers; what they do is
in :mod:`avlm.inference.windows`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_window_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Add the window options to ``parser`` in a group "long videos: windows", which is returned for more options."""
    group = parser.add_argument_group("long videos: windows")
    group.add_argument("--segment", type=float, default=None, metavar="SECONDS",
                       help="cut each video into windows of this many seconds on its decoded timeline and answer "
                            "each window (its frames and the audio of the same span); one line per window")
    group.add_argument("--overlap", type=float, default=0.0, metavar="SECONDS",
                       help="seconds shared by consecutive windows (with --segment; default 0)")
    group.add_argument("--frames-per-segment", type=int, default=None, metavar="N",
                       help="frames per window (with --segment; default: --num-frames or the model's)")
    return group


def check_window_arguments(args: argparse.Namespace, given: tuple[str, ...] = ()) -> None:
    """Raise ValueError when a window option is given without ``--segment`` or has a bad value.

    Args:
        args: the parsed options.
        given: further window-only options the command was given (their names, e.g. ``"--summary"``).
    """
    if args.segment is None:
        given = (*given, *(["--frames-per-segment"] if args.frames_per_segment is not None else []),
                 *(["--overlap"] if args.overlap else []))
        if given:
            raise ValueError(f"{', '.join(given)} only apply to windows; add --segment SECONDS")
        return
    if not args.segment > 0:
        raise ValueError(f"--segment {args.segment}: must be a positive number of seconds")
    if not 0 <= args.overlap < args.segment:
        raise ValueError(f"--overlap {args.overlap}: must be >= 0 and less than --segment {args.segment}")
    if args.frames_per_segment is not None and args.frames_per_segment < 1:
        raise ValueError(f"--frames-per-segment {args.frames_per_segment} must be >= 1")


def add_caption_window_arguments(parser: argparse.ArgumentParser) -> None:
    """The window options of ``avlm caption``: those of :func:`add_window_arguments`, ``--summary``, ``--format`` and
    ``--subtitles``."""
    group = add_window_arguments(parser)
    group.add_argument("--summary", action="store_true",
                       help="after the windows of a video, caption the whole video from the window captions and "
                            "their times (one text-only generation): a line {video, summary, segments}")
    group.add_argument("--format", choices=("jsonl", "srt", "vtt"), default="jsonl", dest="subtitle_format",
                       help="srt or vtt: also write a subtitle file per video, one cue per window (next to the "
                            "video, or in --subtitles DIR); the JSONL output is always written")
    group.add_argument("--subtitles", type=Path, default=None, metavar="DIR",
                       help="write the subtitle files into DIR (format: --format, default srt)")


def check_caption_window_arguments(args: argparse.Namespace) -> None:
    """:func:`check_window_arguments` for ``avlm caption`` (``--summary``, ``--format``, ``--subtitles`` included)."""
    given = (*(["--summary"] if args.summary else []), *(["--subtitles"] if args.subtitles is not None else []),
             *([f"--format {args.subtitle_format}"] if args.subtitle_format != "jsonl" else []))
    check_window_arguments(args, given)
