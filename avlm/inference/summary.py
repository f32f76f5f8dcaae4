"""One caption for a whole video from its window captions: ``avlm caption --segment ... --summary``.

Once every window of a video has its line in the results file, one more text-only request (no frames, no audio) asks
the model to describe the whole video from the window captions and their times. Its line is
``{"video", "summary", "segments": n}`` (n: the window captions it was written from); a video none of whose
windows could be captioned gets ``{"video", "error"}`` instead. Both are keyed by the video alone, so a rerun writes
each video's summary once, after its last window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from avlm.inference.requests import Request
from avlm.inference.results import record_key
from avlm.inference.windows import Window

SUMMARY_PROMPT = ("These are captions of consecutive parts of one video, each with its time span:\n{captions}\n"
                  "Describe the whole video in a few sentences, in the order things happen.")
"""The summary request; ``{captions}`` becomes one ``H:MM:SS-H:MM:SS caption`` line per window."""


@dataclass
class SummaryWork:
    """The summaries a run still has to write.

    Attributes:
        requests: one text-only request per video ready for its summary.
        records: their base records ``{"video", "segments"}``.
        failed: ``{"video", "error"}`` for ready videos without any window caption.
    """

    requests: list[Request] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)


def summary_work(plans: Mapping[str, Sequence[Window]], done: Mapping[str, dict[str, Any]],
                 key: tuple[str, ...], prompt: str = SUMMARY_PROMPT) -> SummaryWork:
    """The summaries due: videos whose every planned window is in ``done`` and whose summary is not.

    Args:
        plans: each video's windows.
        done: the results file's records by key (``ResultWriter.done``).
        key: the results file's key fields, ``("video", "segment")``.
        prompt: the instruction, with ``{captions}`` where the window captions go.
    """
    work = SummaryWork()
    for video, windows in plans.items():
        if record_key({"video": video}, key) in done:
            continue
        records = [done.get(record_key(window.record(video), key)) for window in windows]
        if not windows or any(record is None for record in records):
            continue  # windows still to do
        captioned = [record for record in records if record.get("caption")]
        if not captioned:
            work.failed.append({"video": video, "error": f"{video}: no window could be captioned "
                                                         f"({len(windows)} windows), so no summary"})
            continue
        lines = "\n".join(f"{clock(r['start'])}-{clock(r['end'])} {' '.join(r['caption'].split())}" for r in captioned)
        work.requests.append(Request(prompt.format(captions=lines), video=None, audio=None))
        work.records.append({"video": video, "segments": len(captioned)})
    return work


def clock(seconds: float) -> str:
    """``H:MM:SS`` (whole seconds, rounded down)."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
