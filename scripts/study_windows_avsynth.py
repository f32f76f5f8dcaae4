"""Do window captions name what changes, in the right window? AV-Synth test clips played back to back as one video.

The first ``--clips`` clips of an AV-Synth test split (``avlm synth`` / ``avlm demo``'s ``data/``) are decoded and
written as one long mp4 (frames and sound concatenated; each clip is one scene: coloured shapes, one sound or none).
``model.caption(long, segment=clip length)`` then captions one window per clip, and each window caption is parsed
with the AV-Synth grammar and scored against the attributes of the clip playing in that window (object colours and
the sound, and all attributes), next to the captions of the separate clips for reference. Prints one JSON line.

    .venv/bin/python scripts/study_windows_avsynth.py --model avlm-demo/model --data avlm-demo/data --clips 30
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import torch

import avlm
from audio import load_audio
from avlm.synth import parse_caption
from avlm.synth.mp4 import write_mp4

PROMPT = "Describe the clip."  # the question of AV-Synth's caption records


def concatenate(clips: list[Path], out: Path) -> tuple[Path, float]:
    """Every frame and the 16 kHz sound of ``clips``, one after the other, in ``out``; returns it and the clip
    length (all clips have the same length and rate)."""
    frames, sounds, fps = [], [], None
    for clip in clips:
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate)
            clip_frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        frames += clip_frames
        sound = load_audio(clip, sample_rate=16000).waveform
        length = round(len(clip_frames) / fps * 16000)  # exactly the clip's length of sound
        sounds.append(torch.nn.functional.pad(sound, (0, max(0, length - len(sound))))[:length])
    write_mp4(out, np.stack(frames), fps, torch.cat(sounds).numpy(), 16000)
    return out, len(frames) / len(clips) / fps


def score(captions: list[str | None], attributes: list[dict[str, str]]) -> dict[str, float]:
    """Accuracy of parsed captions per attribute group: object colours, sound, every attribute."""
    hits: dict[str, list[bool]] = {"colour": [], "sound": [], "all": []}
    for caption, truth in zip(captions, attributes, strict=True):
        said = parse_caption(caption or "")
        for key, value in truth.items():
            group = "colour" if key.endswith(".colour") else "sound" if key == "sound" else None
            if group:
                hits[group].append(said.get(key) == value)
            hits["all"].append(said.get(key) == value)
    return {name: round(sum(flags) / len(flags), 3) for name, flags in hits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a model trained on AV-Synth (avlm demo's model/)")
    parser.add_argument("--data", type=Path, required=True, help="the AV-Synth folder (clips/, test_meta.jsonl)")
    parser.add_argument("--clips", type=int, default=30, help="test clips played back to back")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    meta = [json.loads(line) for line in (args.data / "test_meta.jsonl").read_text().splitlines()]
    truth = {row["clip"]: row["attributes"] for row in meta if row["task"] == "caption"}
    clips = sorted((args.data / "clips").glob("test-*.mp4"))[: args.clips]
    attributes = [truth[clip.stem] for clip in clips]
    model = avlm.load(args.model, device="cpu")
    options = {"max_new_tokens": args.max_new_tokens, "batch_size": 8, "num_workers": 0}
    with tempfile.TemporaryDirectory() as scratch:
        long, length = concatenate(clips, Path(scratch) / "sequence.mp4")
        windows = model.caption(str(long), prompt=PROMPT, segment=length, **options)
    separate = [result.text for result in model.caption([str(clip) for clip in clips], prompt=PROMPT, **options)]
    in_windows = [window.text for window in windows[: len(clips)]]
    aligned = len(windows) == len(clips) and all(abs(w.start - i * length) < 1e-3 for i, w in enumerate(windows))
    report = {"clips": len(clips), "clip_seconds": round(length, 3), "windows": len(windows),
              "window_spans_match_clips": aligned,
              "window_captions": score(in_windows, attributes), "separate_clip_captions": score(separate, attributes),
              "same_text_as_separate_clip": round(sum(a == b for a, b in zip(in_windows, separate, strict=True))
                                                  / len(clips), 3)}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
