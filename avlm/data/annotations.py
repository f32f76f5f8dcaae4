"""Annotation files in the VideoLLaMA2 / LLaVA conversation format: loading and validation before training.

A record (one JSON object; files are a JSON list or JSONL)::

    {"id": "clip-1", "video": "videos/a.mp4", "audio": "audio/a.wav", "task": "qa",
     "conversations": [{"from": "human", "value": "<video>\\nWhat is playing?"}, {"from": "gpt", "value": "A violin."}]}

``video`` / ``audio`` / ``image`` are paths relative to the data root (absolute paths are kept). Each given medium
needs its placeholder (``<video>``, ``<audio>``, ``<image>``) in one human turn, except that an audio-visual record may
use the ``<video>`` placeholder alone (VideoLLaMA2-AV style: one placeholder for the pair). With ``audio_from_video``
a video record also uses the audio track of its video file (VideoLLaMA2-AV ``va=True``). Every problem in every file is
collected first; then either one :class:`AnnotationError` lists them all, or (``skip_invalid``) the bad records are
dropped and the :class:`AnnotationReport` says how many and why.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from avlm.constants import PLACEHOLDER_TOKENS
from avlm.data.json_records import MalformedLine, read_json_records

RECORD_KEYS = ("id", "video", "audio", "image", "task", "conversations")
ROLES = ("human", "gpt")
Group = Literal["av", "video", "audio", "image", "text"]


class AnnotationError(ValueError):
    """Annotation files have problems; ``problems`` lists every one as ``file:line: record 'id': message``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} annotation problem(s):\n" + "\n".join(f"  {p}" for p in problems)
                         + "\nfix them, or pass skip_invalid=True (recipe: data.skip_invalid) to drop bad records")


@dataclass(frozen=True)
class AnnotationSource:
    """One annotation file and how to read it."""

    path: Path
    """A ``.json`` list or ``.jsonl`` file of records."""
    data_root: Path | None = None
    """Folder media paths are relative to; None: the ``data_root`` given to :func:`load_annotations`."""
    audio_from_video: bool = False
    """Video records also use their video file's audio track (VideoLLaMA2-AV ``va=True``); they become AV samples."""


@dataclass(frozen=True)
class Record:
    """One validated sample. ``conversations`` holds ``{"from", "value"}`` dicts, alternating human / gpt."""

    id: str
    conversations: tuple[dict[str, str], ...]
    video: Path | None = None
    audio: Path | None = None
    image: Path | None = None
    audio_from_video: bool = False
    task: str | None = None
    location: str = ""

    @property
    def modalities(self) -> tuple[str, ...]:
        """Model modalities the sample feeds, in splice order: ``video`` (an image is a one-frame video), ``audio``."""
        has_audio = self.audio is not None or (self.audio_from_video and self.video is not None)
        return tuple(m for m, present in (("video", self.video or self.image), ("audio", has_audio)) if present)

    @property
    def group(self) -> Group:
        """Mixing group: ``av``, ``video``, ``audio``, ``image`` or ``text``."""
        if self.image is not None and "audio" not in self.modalities:
            return "image"
        return {("video", "audio"): "av", ("video",): "video", ("audio",): "audio", (): "text"}[self.modalities]

    @property
    def audio_path(self) -> Path | None:
        """The file the audio comes from (the video itself with ``audio_from_video``)."""
        return self.audio if self.audio is not None else (self.video if self.audio_from_video else None)

    def without_audio(self) -> Record:
        """This record with its audio dropped (used when audio fails to decode and the recipe allows it)."""
        return replace(self, audio=None, audio_from_video=False)


@dataclass
class AnnotationReport:
    """What :func:`load_annotations` read, kept and skipped."""

    num_read: int = 0
    num_kept: int = 0
    problems: list[str] = field(default_factory=list)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    kept_by_group: dict[str, int] = field(default_factory=dict)

    @property
    def num_skipped(self) -> int:
        return self.num_read - self.num_kept

    def summary(self) -> str:
        groups = ", ".join(f"{g} {n}" for g, n in sorted(self.kept_by_group.items()))
        lines = [f"{self.num_kept} of {self.num_read} records kept ({groups}); {self.num_skipped} skipped"]
        lines += [f"  {count} x {reason}" for reason, count in sorted(self.skipped_by_reason.items())]
        return "\n".join(lines)


def load_annotations(
    sources: Sequence[str | Path | AnnotationSource],
    data_root: str | Path | None = None,
    *,
    skip_invalid: bool = False,
    check_media: bool = True,
) -> tuple[list[Record], AnnotationReport]:
    """Read and validate annotation files.

    Args:
        sources: annotation files (paths, or :class:`AnnotationSource` for per-file options).
        data_root: default folder for relative media paths; None: each annotation file's own folder.
        skip_invalid: drop bad records (counted in the report) instead of raising.
        check_media: check that every media file exists (one ``stat`` per file).

    Returns:
        ``(records, report)`` in file order.

    Raises:
        AnnotationError: listing every problem; with ``skip_invalid`` only for unreadable files.
    """
    records: list[Record] = []
    report = AnnotationReport()
    fatal: list[str] = []
    for source in sources:
        source = source if isinstance(source, AnnotationSource) else AnnotationSource(Path(source))
        root = Path(source.data_root or data_root or Path(source.path).parent)
        items, file_problem = read_json_records(Path(source.path))
        if file_problem:
            fatal.append(file_problem)
        for location, item in items:
            report.num_read += 1
            record, problems = _validate(item, location, root, source.audio_from_video, check_media)
            if problems:
                report.problems += [f"{location}: record {_id_of(item)!r}: {message}" for message, _ in problems]
                for reason in {reason for _, reason in problems}:
                    report.skipped_by_reason[reason] = report.skipped_by_reason.get(reason, 0) + 1
            else:
                records.append(record)
    if fatal or (report.problems and not skip_invalid):
        raise AnnotationError(fatal + report.problems)
    report.num_kept = len(records)
    report.kept_by_group = dict(Counter(record.group for record in records))
    return records, report


def _id_of(item: Any) -> Any:
    return item.get("id") if isinstance(item, dict) else None


def _validate(item: Any, location: str, root: Path, audio_from_video: bool, check_media: bool):
    """``(record or None, [(message, reason), ...])`` for one parsed item."""
    if isinstance(item, MalformedLine):
        return None, [(f"malformed JSON: {item.message}", "malformed JSON")]
    if not isinstance(item, dict):
        return None, [(f"expected a JSON object, got {type(item).__name__}", "not an object")]
    problems: list[tuple[str, str]] = []
    for key in item:
        if key not in RECORD_KEYS:
            close = difflib.get_close_matches(str(key), RECORD_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append((f"unknown key {key!r}{hint}; valid keys: {', '.join(RECORD_KEYS)}", "unknown key"))
    if not isinstance(item.get("id"), str | int) or isinstance(item.get("id"), bool):
        problems.append((f"'id' must be a string or an integer, got {item.get('id')!r}", "bad id"))
    if item.get("task") is not None and not (isinstance(item["task"], str) and item["task"]):
        problems.append((f"'task' must be a non-empty string, got {item['task']!r}", "bad task"))
    media = {key: _media_path(item, key, root, check_media, problems) for key in PLACEHOLDER_TOKENS}
    if media["image"] and media["video"]:
        problems.append(("has both 'image' and 'video'; a sample has at most one visual input", "image and video"))
    turns = _check_turns(item.get("conversations"), problems)
    if turns is not None:
        _check_placeholders(turns, media, audio_from_video, problems)
    if problems:
        return None, problems
    return Record(id=str(item["id"]), conversations=tuple(turns), video=media["video"], audio=media["audio"],
                  image=media["image"], audio_from_video=audio_from_video and media["video"] is not None,
                  task=item.get("task"), location=location), []


def _media_path(item: dict, key: str, root: Path, check: bool, problems: list) -> Path | None:
    if item.get(key) is None:
        return None
    if not isinstance(item[key], str) or not item[key].strip():
        problems.append((f"{key!r} must be a non-empty path string, got {item[key]!r}", "bad media path"))
        return None
    path = root / item[key]
    if check and not path.is_file():
        problems.append((f"{key} file not found: {path}" if not path.exists() else f"{key} path is a folder: {path}",
                         "missing media file"))
    return path


def _check_turns(turns: Any, problems: list) -> list[dict[str, str]] | None:
    if not isinstance(turns, list) or not turns:
        problems.append((f"'conversations' must be a non-empty list of turns, got {turns!r}", "bad conversations"))
        return None
    ok = True
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict) or set(turn) != {"from", "value"} or not isinstance(turn["value"], str):
            problems.append((f"turn {index} must be {{'from': ..., 'value': str}}, got {turn!r}", "bad turn"))
            ok = False
        elif turn["from"] != ROLES[index % 2]:
            problems.append((f"turn {index} is from {turn['from']!r}, expected {ROLES[index % 2]!r}; turns alternate "
                             "human, gpt, human, ... starting with human", "roles not alternating"))
            return None
        elif turn["from"] == "gpt" and not turn["value"].strip():
            problems.append((f"turn {index} (gpt) has an empty answer", "empty answer"))
            ok = False
    if len(turns) % 2:
        problems.append((f"{len(turns)} turns: the conversation must end with a gpt answer", "no final answer"))
    return turns if ok else None


def _check_placeholders(turns: list, media: dict, audio_from_video: bool, problems: list) -> None:
    found_in: dict[str, list[int]] = {key: [] for key in PLACEHOLDER_TOKENS}
    for index, turn in enumerate(turns):
        for key, text in PLACEHOLDER_TOKENS.items():
            found_in[key] += [index] * turn["value"].count(text)
    for key, text in PLACEHOLDER_TOKENS.items():
        where = found_in[key]
        covered = key == "audio" and media["video"] is not None and (audio_from_video or media["audio"] is not None)
        if where and media[key] is None and not covered:
            problems.append((f"placeholder {text} in turn {where[0]} but the record has no {key!r} file",
                             "placeholder without media"))
        if media[key] is not None and not where and not (key == "audio" and media["video"] is not None):
            problems.append((f"{key!r} file given but no {text} placeholder in the conversation",
                             "media without placeholder"))
        if len(where) > 1:
            problems.append((f"placeholder {text} appears {len(where)} times; one per sample", "repeated placeholder"))
        if any(index % 2 for index in where):
            problems.append((f"placeholder {text} in a gpt turn; put it in a human turn", "placeholder in answer"))
    if len({index for where in found_in.values() for index in where}) > 1:
        problems.append(("placeholders are spread over several turns; put them in one human turn",
                         "split placeholders"))
