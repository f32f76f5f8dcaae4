"""Study: does a trained AV-Synth model answer colour and shape questions from the video, or from the colour/shape
pairs it saw in training? (issue #18)

AV-Synth's test split gives every clip's first object a colour/shape pair never seen in training
(``synth.json["held_out"]["colour_shape"]``), and its questions name the partner attribute: "What shape is the
{colour} object?", "What colour is the {shape}?". This script answers the test split's colour and shape questions
with a model and splits the accuracy by whether the asked object's pair is held out or was seen in training; for
held-out shape questions it also counts how often the model names the held-out shape at all.

    .venv/bin/python scripts/study_pair_prior.py avlm-demo-full/model avlm-demo-full/data
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from avlm.api import load
from avlm.eval.harness import evaluate, load_eval_set
from avlm.synth.vocab import COLOURS, SHAPES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="trained model folder")
    parser.add_argument("data", type=Path, help="AV-Synth folder (synth.json, test.json, test_meta.jsonl)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    held = {tuple(pair) for pair in json.loads((args.data / "synth.json").read_text())["held_out"]["colour_shape"]}
    meta = (args.data / "test_meta.jsonl").read_text().splitlines()
    kinds = {row["id"]: row["kind"] for row in map(json.loads, meta)}
    model = load(args.model, device="cpu")
    evaluation = load_eval_set(args.data / "test.json", tasks=("video_qa",),
                               num_frames=model.processor.config.num_frames)
    answers = evaluate(model, evaluation, batch_size=32, num_workers=0, max_new_tokens=8)

    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # right, total, named the held shape
    for request, reference in zip(evaluation.requests, evaluation.references, strict=True):
        kind = kinds[reference["id"]]
        if kind not in ("colour", "shape"):
            continue
        words = request.question.lower().replace("?", " ").split()
        if kind == "shape":
            pair = (next(word for word in words if word in COLOURS), reference["answer"])
        else:
            pair = (reference["answer"], next(word for word in words if word in SHAPES))
        group = "held-out pair" if pair in held else "seen pair"
        predicted = answers[reference["id"]].get("prediction", "").strip().lower()
        count = counts[(kind, group)]
        count[0] += predicted == reference["answer"]
        count[1] += 1
        count[2] += any(predicted == shape for colour, shape in held if colour == pair[0])
    print(f"held-out colour/shape pairs: {sorted(held)}")
    for (kind, group), (right, total, named) in sorted(counts.items()):
        extra = f"; named the held-out shape {named} times" if (kind, group) == ("shape", "held-out pair") else ""
        print(f"{kind:>6} questions, {group:>13}: {right}/{total} = {right / total:.0%}{extra}")


if __name__ == "__main__":
    main()
