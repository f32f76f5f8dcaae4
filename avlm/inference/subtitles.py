"""Subtitle files from window captions: SubRip (``.srt``) and WebVTT (``.vtt``), one cue per window.

Both formats are a few lines of text per cue, so they are written here rather than through a library; the tests
read them back with the ``srt`` and ``webvtt-py`` packages. A cue's text is the caption on one line (line breaks and
runs of spaces become one space: a blank line would end the cue; control characters are dropped); WebVTT text escapes
``&``, ``<`` and ``>``.
Windows without a caption (errors, empty answers) get no cue. Overlapping windows give overlapping cues, which both
formats allow (players show them together). Files are written to a temporary name and renamed, so a reader never
sees half a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from avlm.inference.results import write_atomically

FORMATS = ("srt", "vtt")


@dataclass(frozen=True)
class Cue:
    """One subtitle: ``text`` shown from ``start`` to ``end`` seconds."""

    start: float
    end: float
    text: str


def cues_from_records(records: Iterable[dict[str, Any]], text_field: str = "caption") -> list[Cue]:
    """Cues of a video's window records (``{"segment", "start", "end", text_field}``), in segment order; records
    without text (errors) are left out."""
    ordered = sorted((record for record in records if record.get(text_field)), key=lambda record: record["segment"])
    cues = [Cue(float(record["start"]), float(record["end"]), _one_line(record[text_field])) for record in ordered]
    return [cue for cue in cues if cue.text]


def format_time(seconds: float, separator: Literal[",", "."]) -> str:
    """``HH:MM:SS,mmm`` (SubRip, ``separator=","``) or ``HH:MM:SS.mmm`` (WebVTT), rounded to the millisecond."""
    milliseconds = round(max(seconds, 0.0) * 1000)
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def srt_text(cues: Sequence[Cue]) -> str:
    """A SubRip file: numbered blocks ``N / start --> end / text`` separated by blank lines."""
    blocks = [f"{number}\n{format_time(cue.start, ',')} --> {format_time(cue.end, ',')}\n{cue.text}\n"
              for number, cue in enumerate(cues, start=1)]
    return "\n".join(blocks)


def vtt_text(cues: Sequence[Cue]) -> str:
    """A WebVTT file: the ``WEBVTT`` header, then ``start --> end / text`` blocks separated by blank lines."""
    blocks = [f"{format_time(cue.start, '.')} --> {format_time(cue.end, '.')}\n{_escape(cue.text)}\n"
              for cue in cues]
    return "\n".join(["WEBVTT\n", *blocks])


def write_subtitles(path: str | os.PathLike, cues: Sequence[Cue], subtitle_format: Literal["srt", "vtt"]) -> Path:
    """Write ``cues`` to ``path`` (UTF-8) atomically; returns the path."""
    if subtitle_format not in FORMATS:
        raise ValueError(f"subtitle format {subtitle_format!r}; choose one of {FORMATS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, srt_text(cues) if subtitle_format == "srt" else vtt_text(cues))
    return path


def _one_line(text: str) -> str:
    """Words joined by single spaces, control characters dropped (a generated caption may hold any character)."""
    return " ".join("".join(char for char in text if char.isprintable() or char.isspace()).split())


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
