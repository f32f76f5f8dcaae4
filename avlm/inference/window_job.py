"""The work of ``avlm caption --segment``: which windows of which videos are still to caption, and the subtitle files.

Results are keyed by :data:`WINDOW_KEY`, ``(video, segment)``: a window line ``{"video", "segment", "start", "end",
"caption", "num_frames", "has_audio", "seconds"}`` (or ``{..., "error"}``), and a video-level line with no
``segment``: the video's summary, or the error of a file that cannot be read at all. A rerun plans each video again
(from its frame index, no decoding) and skips every window already in the file, so a run killed in the middle of a
long video resumes at its first missing window; a video with a summary line is complete and is not read again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from avlm.inference.requests import Request
from avlm.inference.results import record_key
from avlm.inference.subtitles import cues_from_records, write_subtitles
from avlm.inference.windows import Window, check_window_options, plan_video, window_requests

WINDOW_KEY = ("video", "segment")
"""The key fields of a windowed results file."""


@dataclass
class WindowPlan:
    """The windows of a run.

    Attributes:
        plans: each readable video's windows; None for a video already complete (its summary is in the file).
        requests: one request per readable window, in video and time order.
        records: their base records ``{"video", "segment", "start", "end"}``.
        failed: error records known before decoding: files that cannot be read, stretches where a file ends early.
    """

    plans: dict[str, list[Window] | None] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)


def plan_job(videos: Sequence[str], segment: float, overlap: float, question: str, audio: Any,
             done: Mapping[str, dict[str, Any]]) -> WindowPlan:
    """Plan every video's windows; files that cannot be read become video-level error records.

    Args:
        videos: the video paths, in input order.
        segment: window length in seconds.
        overlap: seconds shared by consecutive windows.
        question: the prompt of every window.
        audio: ``AUTO`` (each video's own soundtrack) or None.
        done: the results already in the file (``ResultWriter.done``); a video-level line makes the video complete.

    Raises:
        ValueError: the file holds windows planned with another ``--segment``/``--overlap``.
    """
    check_window_options(segment, overlap)
    plan = WindowPlan()
    for video in videos:
        finished = done.get(record_key({"video": video}, WINDOW_KEY))
        if finished is not None and "summary" not in finished and "error" not in finished:
            raise ValueError(f"the results file holds a whole-clip line for {video} (written without --segment); "
                             "write the windows to another --output")
        if finished is not None:
            plan.plans.setdefault(video, None)  # summarized, or the file failed before: nothing left to read
            continue
        try:
            windows = plan_video(video, segment, overlap)
        except (ValueError, OSError) as error:  # MediaError is a ValueError; FileNotFoundError an OSError
            plan.failed.append({"video": video, "error": str(error)})
            continue
        _check_same_windows(video, windows, done)
        plan.plans[video] = windows
        for window in windows:
            (plan.failed if window.error is not None else plan.records).append(window.record(video))
        plan.requests += window_requests(video, windows, question, audio)
    return plan


def video_records(done: Mapping[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The window records of a results file, grouped by video."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in done.values():
        if record.get("segment") is not None:
            grouped[record["video"]].append(record)
    return grouped


def complete_videos(plan: WindowPlan, done: Mapping[str, dict[str, Any]]) -> list[str]:
    """The videos whose windows are all in ``done`` (in input order; unreadable files excluded)."""
    complete = []
    for video, windows in plan.plans.items():
        if windows is None:
            if "error" not in done[record_key({"video": video}, WINDOW_KEY)]:
                complete.append(video)
        elif all(record_key(window.record(video), WINDOW_KEY) in done for window in windows):
            complete.append(video)
    return complete


def subtitle_path(video: str, subtitle_format: Literal["srt", "vtt"], folder: Path | None) -> Path:
    """``FOLDER/<video name>.srt`` (or ``.vtt``), or next to the video when no folder is given (where players look)."""
    name = Path(video).with_suffix(f".{subtitle_format}").name
    return folder / name if folder is not None else Path(video).with_suffix(f".{subtitle_format}")


def check_subtitle_names(videos: Sequence[str], folder: Path | None) -> None:
    """Raise ValueError when two videos would write the same subtitle file into ``folder``."""
    if folder is None:
        return
    seen: dict[str, str] = {}
    for video in videos:
        other = seen.setdefault(Path(video).stem, video)
        if other != video:
            raise ValueError(f"{other} and {video} would both write {Path(video).stem} subtitles into {folder}; "
                             "leave out --subtitles to write each file next to its video")


def write_video_subtitles(plan: WindowPlan, done: Mapping[str, dict[str, Any]],
                          subtitle_format: Literal["srt", "vtt"], folder: Path | None) -> list[Path]:
    """A subtitle file for every complete video (rewritten from the results file on each run); returns the paths."""
    grouped = video_records(done)
    return [write_subtitles(subtitle_path(video, subtitle_format, folder), cues_from_records(grouped[video]),
                            subtitle_format) for video in complete_videos(plan, done)]


def _check_same_windows(video: str, windows: Sequence[Window], done: Mapping[str, dict[str, Any]]) -> None:
    for window in windows:
        record = done.get(record_key(window.record(video), WINDOW_KEY))
        moved = record is not None and max(abs(record["start"] - window.start), abs(record["end"] - window.end)) > 1e-3
        if moved:
            raise ValueError(f"the results file holds window {window.segment} of {video} as {record['start']}-"
                             f"{record['end']} s, but these options plan it as {window.start:.3f}-{window.end:.3f} s; "
                             "resume with the same --segment and --overlap, or write to another --output")
