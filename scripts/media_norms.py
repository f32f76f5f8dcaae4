"""Media-token norms next to text-embedding norms: the reference fixtures, the connectors at their default init, and
an avlm model (a preset at init, or a trained model folder) on a batch of real training data.

    python scripts/media_norms.py --fixtures ../shared/fixtures --recipe avlm/recipes/av_joint.yaml \
        model=avlm-demo "data.sources=[{path: data/avsynth/train.json}]" trainable.encoders.video=full

Prints one line per measurement: mean L2 norm per token (``text``, ``video``, ``audio``) and the media / text ratios.
Norms are of the vectors the LLM receives (:mod:`avlm.train.norms`); the fixtures' inputs and outputs are read from
their ``io.safetensors`` (docs/avsynth.md, "Media-token norms").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from avlm.train.recipe import load_recipe
from avlm.train.setup import build_setup
from avlm.train.stages import TrainingForward, labelled_tokens
from fusion import MLPProjector, STCConnectorV35


def mean_norm(tokens: torch.Tensor) -> float:
    """[..., D] -> mean L2 norm over the tokens."""
    return float(tokens.reshape(-1, tokens.shape[-1]).float().norm(dim=-1).mean())


def build_connector_of(case: dict) -> torch.nn.Module | None:
    """The avlm connector of a fixture case at PyTorch's default init (None for other kinds)."""
    config = case.get("constructor", {}).get("config", {})
    if case.get("mm_projector_type") == "stc_connector_v35":
        return STCConnectorV35(config["mm_hidden_size"], config["hidden_size"])
    if case["kind"] == "audio_projector_mlp2x_gelu":
        return MLPProjector(config["mm_hidden_size_a"], config["hidden_size_a"])
    return None


def fixture_rows(root: Path, seeds: int) -> list[dict]:
    """Per STC V35 / mlp2x_gelu case: input, reference output (its re-initialised weights) and the same connector at
    PyTorch's default init (the reference builds its projectors after loading the LLM, so they get that init)."""
    rows = []
    for case_file in sorted(root.glob("*/case.json")):
        case = json.loads(case_file.read_text())
        if build_connector_of(case) is None:
            continue
        io = load_file(str(case_file.parent / "io.safetensors"))
        defaults = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            with torch.no_grad():
                defaults.append(mean_norm(build_connector_of(case).eval()(io["input"])))
        rows.append({"case": case_file.parent.name, "input": mean_norm(io["input"]),
                     "reference_output": mean_norm(io["output"]), "default_init_output": sum(defaults) / len(defaults)})
    return rows


def official_tiny_row(root: Path) -> dict | None:
    """The tiny VideoLLaMA2-AV checkpoint fixture (re-initialised weights): text embeddings vs video / audio tokens."""
    case_dir = root / "videollama2_av_tiny"
    if not (case_dir / "io.safetensors").is_file():
        return None
    io = load_file(str(case_dir / "io.safetensors"))
    case = json.loads((case_dir / "case.json").read_text())
    start, end = case["samples"]["av"]["multimodal_span"]
    embeds = io["av.inputs_embeds"][0]
    text = torch.cat([embeds[:start], embeds[end:]])
    video = io["av.video_tokens"]
    return {"case": "videollama2_av_tiny (av sample)", "text": mean_norm(text), "video": mean_norm(video),
            "audio": mean_norm(embeds[start:end][video.shape[1]:])}


def model_row(recipe_path: Path, overrides: list[str], batches: int) -> dict:
    """The recipe's model (preset at init or folder) on its first training batches."""
    recipe = load_recipe(recipe_path, [*overrides, "data.num_workers=0"])
    setup = build_setup(recipe)
    forward = TrainingForward(setup.model)
    forward.norms.active = True
    sums: dict[str, float] = {}
    iterator = iter(setup.data.loader)
    with torch.no_grad():
        for _ in range(batches):
            batch = next(iterator)
            forward(batch, torch.tensor(float(max(labelled_tokens(batch), 1))))
            for key, value in forward.norms.values.items():
                sums[key] = sums.get(key, 0.0) + value / batches
    return {"case": f"model={recipe.model}", **sums}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, default=None, help="the reference fixtures folder")
    parser.add_argument("--seeds", type=int, default=5, help="default-init draws averaged per fixture case")
    parser.add_argument("--recipe", type=Path, default=None, help="a training recipe whose model and data to measure")
    parser.add_argument("--batches", type=int, default=4, help="training batches averaged for the model")
    parser.add_argument("overrides", nargs="*", help="recipe overrides (dotted.key=value)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    if args.fixtures is not None:
        rows += fixture_rows(args.fixtures, args.seeds)
        official = official_tiny_row(args.fixtures)
        rows += [official] if official is not None else []
    if args.recipe is not None:
        rows.append(model_row(args.recipe, args.overrides, args.batches))
    for row in rows:
        if "text" in row:
            row.update({f"{key}/text": row[key] / row["text"] for key in ("video", "audio") if key in row})
        print(json.dumps({key: round(value, 4) if isinstance(value, float) else value for key, value in row.items()}))


if __name__ == "__main__":
    main()
