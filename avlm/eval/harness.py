"""The evaluation harness behind ``avlm eval``: annotation records -> questions -> batched answers -> scores.

Any annotation file in the training format works (AV-Synth's, or AVQA / Clotho-AQA-style files a user has): each
record's first human turn (placeholders removed) is the question, its first answer the reference, its media the
record's ``video`` / ``image`` / ``audio`` (or the video's own soundtrack with ``audio_from_video``). The task of a
record is its ``task`` field ("untyped" without one); a metadata file (AV-Synth writes ``<split>_meta.jsonl`` next to
``<split>.json``, found automatically) adds the question ``kind`` and, for captions, the ``attributes`` they state.
Records that are not valid records are skipped and listed in the report; a record whose media file is missing or
broken gets an error row and the others are answered.

Ablations: ``ablate="audio"`` gives every sample silence of its clip's length instead of its soundtrack and
``ablate="video"`` black frames instead of its video, so the prompt keeps its form and only the information is gone.
Questions that need the removed sense should fall to chance; ``chance`` in the report is 1 / (distinct reference
answers) per question kind.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from avlm.api import AVLM
from avlm.data.annotations import AnnotationSource, Record, load_annotations
from avlm.eval.scoring import caption_metrics, normalize_answer, score_answers
from avlm.inference.requests import Request
from avlm.processing.tokenizer import PLACEHOLDER_TOKENS
from avlm.synth import parse_caption
from vision.container import probe

Ablation = Literal["audio", "video"]
_PLACEHOLDER = re.compile("|".join(re.escape(token) for token in PLACEHOLDER_TOKENS.values()))


@dataclass
class EvalSet:
    """What to ask and what to expect: ``requests[i]`` answers ``references[i]`` (keyed by ``id``)."""

    requests: list[Request] = field(default_factory=list)
    references: list[dict[str, Any]] = field(default_factory=list)
    """Rows ``{"id", "question", "answer", "task", "kind", "attributes"?}`` (see :mod:`avlm.eval.scoring`)."""
    failed: list[dict[str, Any]] = field(default_factory=list)
    """Records that could not be prepared (``{"id", "error"}``), e.g. a clip whose length cannot be read."""
    skipped: list[str] = field(default_factory=list)
    """Problems of records that are not valid records (malformed JSON, no answer, ...), one line each with file and
    line; those records are left out. A missing media file is not skipped: its record fails when it is answered."""


def load_eval_set(data: str | Path, data_root: str | Path | None = None, meta: str | Path | None = None,
                  tasks: Sequence[str] = (), ablate: Ablation | None = None, num_frames: int = 16,
                  limit: int | None = None) -> EvalSet:
    """Questions and references of an annotation file.

    Args:
        data: annotation file (JSON list or JSONL, training format).
        data_root: folder the media paths are relative to (default: the annotation file's folder).
        meta: metadata JSONL (``id``, ``kind``, ``attributes``); default ``<data stem>_meta.jsonl`` when it exists.
        tasks: keep only records of these tasks (empty: all).
        ablate: replace one sense by a neutral input (see the module docstring).
        num_frames: frames of the black video of ``ablate="video"``.
        limit: keep the first ``limit`` records (after the task filter).

    Raises:
        AnnotationError: the file cannot be read at all.
        ValueError: a metadata row is malformed, or nothing is left to evaluate.
    """
    records, report = load_annotations([AnnotationSource(Path(data))], data_root, skip_invalid=True,
                                       check_media=False)
    metadata = _read_meta(_meta_path(Path(data), meta))
    if tasks:
        records = [record for record in records if (record.task or "untyped") in tasks]
    records = records[:limit] if limit is not None else records
    if not records:
        problems = "".join(f"\n  {line}" for line in report.problems[:10])
        raise ValueError(f"{data}: no record to evaluate (tasks filter {list(tasks) or 'none'}, limit {limit})"
                         f"{problems}")
    out = EvalSet(skipped=list(report.problems))
    for record in records:
        question, answer = _first_exchange(record)
        extra = metadata.get(record.id, {})
        out.references.append({"id": record.id, "question": question, "answer": answer,
                               "task": record.task or extra.get("task") or "untyped",
                               "kind": extra.get("kind") or record.task or "untyped",
                               **({"attributes": extra["attributes"]} if "attributes" in extra else {})})
        try:
            out.requests.append(ablate_request(_request(record, question), ablate, num_frames))
        except (ValueError, OSError) as error:
            out.references.pop()
            out.failed.append({"id": record.id, "error": str(error)})
    return out


def build_report(evaluation: EvalSet, answers: dict[str, dict[str, Any]], **header: Any) -> dict[str, Any]:
    """The evaluation report: exact match per task and kind, caption attributes, BLEU / CIDEr, chance levels.

    Args:
        evaluation: what was asked.
        answers: id -> ``{"prediction": text}`` or ``{"error": message}`` (the answers file's rows).
        header: fields put first in the report (model, data, ablate, seconds, ...).
    """
    predictions = {key: row["prediction"] for key, row in answers.items() if "prediction" in row}
    scores = score_answers(predictions, evaluation.references, parse_caption)
    captions = {row["id"]: [row["answer"]] for row in evaluation.references if row["task"] == "caption"}
    errors = [{"id": key, "error": row["error"]} for key, row in answers.items() if "error" in row]
    errors += [row for row in evaluation.failed if row["id"] not in answers]
    return {**header, "records": len(evaluation.references) + len(evaluation.failed), "answered": len(predictions),
            "errors": errors, "skipped": evaluation.skipped, **scores,
            "caption_metrics": caption_metrics(predictions, captions),
            "chance": chance_levels(evaluation.references)}


def evaluate(model: AVLM, evaluation: EvalSet, **options: Any) -> dict[str, dict[str, Any]]:
    """Answer every request of ``evaluation`` in memory with an :class:`avlm.api.AVLM` (``options``: batch_size,
    num_workers, max_new_tokens, ...); returns id -> ``{"prediction"}`` or ``{"error"}`` rows for
    :func:`build_report`."""
    results = model.run(evaluation.requests, **options)
    answers = {}
    for row, result in zip(evaluation.references, results, strict=True):
        answers[row["id"]] = {"prediction": result.text} if result.error is None else {"error": result.error}
    return answers


def chance_levels(references: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per ``task/kind``: 1 / (distinct normalised reference answers), the accuracy of guessing uniformly."""
    answers: dict[str, set[str]] = defaultdict(set)
    for row in references:
        if not row.get("attributes"):
            answers[f"{row['task']}/{row['kind']}"].add(normalize_answer(row["answer"]))
    return {kind: 1.0 / len(values) for kind, values in sorted(answers.items())}


def _first_exchange(record: Record) -> tuple[str, str]:
    """The first human turn without placeholders, and the answer that follows it."""
    turns = record.conversations
    question = " ".join(_PLACEHOLDER.sub(" ", turns[0]["value"]).split())
    return question, turns[1]["value"].strip()


def _request(record: Record, question: str) -> Request:
    visual = record.video if record.video is not None else record.image
    audio = record.audio_path
    return Request(question, None if visual is None else str(visual), None if audio is None else str(audio))


def ablate_request(request: Request, ablate: Ablation | None, num_frames: int) -> Request:
    """``request`` with one sense replaced by a neutral input (module docstring): ``"video"``: ``num_frames`` black
    frames; ``"audio"``: silence as long as its audio file (read from the file: raises ``ValueError``/``OSError``
    naming it when that cannot be read). Run where the request is decoded (``avlm.scale`` decode workers) or
    before. Without ``ablate`` the request is returned as it is (a window request keeps its ``start``/``end``)."""
    if ablate is None:
        return request
    visual, audio = request.video, request.audio
    if ablate == "video" and visual is not None:
        visual = torch.zeros(num_frames, 32, 32, 3, dtype=torch.uint8)
    if ablate == "audio" and isinstance(audio, (str, Path)):
        audio = torch.zeros(max(1, round(_duration(Path(audio)) * 16000)))
    return dataclasses.replace(request, video=visual, audio=audio)


def _duration(path: Path) -> float:
    info = probe(path)
    seconds = info.audio.duration if info.audio is not None else info.duration
    if not seconds == seconds or seconds <= 0:  # NaN: the container does not say
        raise ValueError(f"{path}: cannot read the audio length to replace it by silence")
    return seconds


def _meta_path(data: Path, meta: str | Path | None) -> Path | None:
    if meta is not None:
        if not Path(meta).is_file():
            raise FileNotFoundError(f"{meta}: metadata file not found")
        return Path(meta)
    default = data.with_name(f"{data.stem}_meta.jsonl")
    return default if default.is_file() else None


def _read_meta(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None:
        return {}
    rows = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON line ({error.msg})") from error
        if not isinstance(row, dict) or "id" not in row:
            raise ValueError(f"{path}:{number}: a metadata row needs an 'id' field")
        rows[str(row["id"])] = row
    return rows
