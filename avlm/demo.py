"""The end-to-end demo: generate AV-Synth, train a small model with the ``av_joint`` recipe, evaluate it with and
without each sense, and caption held-out clips plus a real one.

Layout of ``out``::

    data/            the generated AV-Synth set (train/test annotations, clips, metadata; with ``oversample`` also
                     train_oversampled.json, the training annotations with some question kinds repeated)
    train/           the training run (recipe.yaml, metrics.jsonl, loss.png, checkpoints/)
    model/           the trained model folder (``avlm.load`` / ``avlm caption --model``)
    report.json      evaluation on the held-out split, the ablations, captions, timings and targets
    captions.jsonl   captions of held-out clips and of bigbuckbunny.mp4
    curves/          with ``curve_every``: the held-out accuracy of the run's checkpoints, a PNG per task and
                     curves.json (``avlm.eval.curves``)

Every step reuses what an earlier run of the same settings left (the data set, a finished training run), so an
interrupted demo continues where it stopped.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from avlm.api import AVLM, load
from avlm.assets import sample_clip
from avlm.eval.curves import curve_point, evaluate_checkpoints, plot_curves
from avlm.eval.harness import EvalSet, build_report, evaluate, load_eval_set
from avlm.inference.requests import Request
from avlm.synth import SynthConfig, generate
from avlm.synth.questions import TASK_OF_KIND as KINDS
from avlm.train.checkpoints import NAME as CHECKPOINT_NAME
from avlm.train.checkpoints import list_checkpoints
from avlm.train.loop import train
from avlm.train.recipe import load_recipe

RECIPE = Path(__file__).parent / "recipes" / "av_joint.yaml"
TARGETS = {"caption attributes": 0.9, "audio_qa": 0.9, "video_qa": 0.9, "av_qa": 0.8}
"""Held-out accuracy the demo model must reach (issue #7)."""


@dataclass
class DemoConfig:
    """Settings of ``avlm demo``; the defaults come from the learnability study in docs/avsynth.md."""

    out: Path = Path("avlm-demo")
    """Folder for the data, the run, the model and the report."""
    n_train: int = 400
    """AV-Synth training clips."""
    n_test: int = 60
    """Held-out clips (every one holds an attribute pair never seen in training)."""
    seed: int = 0
    """Seed of the data and of the training run."""
    model: str = "avlm-demo"
    """Preset (or model folder) to train from scratch: the LLM, the vision encoder and both connectors train; the
    random audio encoder stays frozen (training it too made audio answers plateau in half of the study's runs)."""
    steps: int = 2200
    """Optimizer steps."""
    batch_size: int = 16
    """Samples per step."""
    lr: float = 2e-3
    """Peak learning rate (cosine schedule)."""
    mix: dict[str, int] = field(default_factory=lambda: {"av": 2, "video": 1, "audio": 1})
    """Samples per mixing unit by record group (``data.mix_ratios``); keep ``batch_size`` a multiple of their sum."""
    oversample: dict[str, int] = field(default_factory=dict)
    """Question kinds written this many times into the training annotations (AV-Synth's ``kind``, e.g.
    ``{"direction": 2}``): a larger share of each batch without new clips; {}: every record once."""
    overrides: list[str] = field(default_factory=list)
    """Further ``dotted.key=value`` recipe overrides."""
    eval_batch_size: int = 32
    """Questions per generate call in the evaluation."""
    caption_clips: int = 4
    """Held-out clips captioned next to bigbuckbunny.mp4."""
    curve_every: int = 0
    """Learning curves: keep a checkpoint every this many steps and evaluate each on the held-out split after
    training (``curves/``; the finished model is the last point); 0: none."""
    curve_clips: int | None = None
    """Held-out clips whose questions the curve points are evaluated on (None: all; the report uses all)."""

    @classmethod
    def full(cls, **changes: Any) -> DemoConfig:
        """``avlm demo --full``: :data:`FULL` (``changes`` on top), the settings for the issue #18 targets."""
        return cls(**{**FULL, **changes})

    @property
    def train_annotations(self) -> Path:
        """The training annotation file (``train_oversampled.json`` with ``oversample``)."""
        return self.out / "data" / ("train_oversampled.json" if self.oversample else "train.json")

    def recipe_overrides(self) -> list[str]:
        """The ``av_joint`` recipe turned into the demo run: the generated data, all but the audio encoder
        trainable, CPU sizes, the decoded clips kept in memory."""
        mix = ", ".join(f"{group}: {share}" for group, share in self.mix.items())
        return [
            f"model={self.model}",
            f"data.sources=[{{path: {self.train_annotations}}}]", f"data.mix_ratios={{{mix}}}",
            "data.max_length=null", "data.num_workers=1", "data.cache_media=true", f"data.seed={self.seed}",
            "trainable.llm=full", "trainable.encoders.video=full", "trainable.encoders.audio=frozen",
            "trainable.connectors.video=full", "trainable.connectors.audio=full",
            f"train.output_dir={self.out / 'train'}", f"train.max_steps={self.steps}",
            f"train.batch_size={self.batch_size}", "train.grad_accum=1", f"train.lr={self.lr}",
            "train.warmup_ratio=0.05", "train.mixed_precision=fp32", "train.gradient_checkpointing=false",
            *self._checkpointing(), "train.log_every=10",
            "train.resume=auto", f"train.seed={self.seed}", "distributed.strategy=ddp",
            *self.overrides,
        ]

    def _checkpointing(self) -> list[str]:
        if self.curve_every < 0:
            raise ValueError(f"curve_every {self.curve_every} must be >= 0 (0: no learning curves)")
        if self.curve_every:  # every checkpoint kept for the curves
            return [f"train.save_every={self.curve_every}", f"train.keep_last={self.steps // self.curve_every + 1}"]
        return [f"train.save_every={max(1, self.steps // 4)}", "train.keep_last=1"]


FULL: dict[str, Any] = {
    "out": Path("avlm-demo-full"), "model": "avlm-demo-full", "n_train": 1600, "n_test": 200, "steps": 6500,
    "mix": {"av": 3, "video": 4, "audio": 1}, "oversample": {"direction": 2}, "curve_every": 1000, "curve_clips": 100,
}
"""``avlm demo --full`` (issue #18), from the studies and runs in docs/avsynth.md: the ``avlm-demo-full`` preset (LLM
d=128, 32 px frames, 64 video tokens), 4x the clips of the quick demo (direction overfits 400), 6,500 steps (24
minutes end to end at ~5.2 steps/s on the quiet 2-core machine, inside the 30-minute budget) and a mix that no longer
starves a question kind: video records get half of every batch (AV 3 : video 4 : audio 1; audio was learned with
less) and direction questions are written twice. It does not reach the video, AV and caption targets (docs/avsynth.md:
three runs, and why held-out shapes cannot be reached under the current held-out rule). Learning curves from a
checkpoint every 1,000 steps, evaluated on the questions of 100 held-out clips (the report itself uses all 200)."""


def run_demo(config: DemoConfig, say: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns the report also written to ``out/report.json``."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    data = _dataset(config, say)
    if config.oversample:
        write_oversampled(data, config.oversample, config.train_annotations)
    seconds["data"] = time.perf_counter() - started

    mark = time.perf_counter()
    say(f"training {config.model} with {RECIPE.name} for {config.steps} steps (all parts but the audio encoder)")
    result = train(load_recipe(RECIPE, config.recipe_overrides()), say=say)
    model_dir = config.out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(result.final, model_dir)
    seconds["train"] = time.perf_counter() - mark

    mark = time.perf_counter()
    model = load(model_dir, device="cpu")
    reports = _evaluations(model, data, config)
    seconds["evaluate"] = time.perf_counter() - mark

    mark = time.perf_counter()
    captions = _captions(model, data, config)
    seconds["caption"] = time.perf_counter() - mark

    if config.curve_every:
        mark = time.perf_counter()
        say(f"learning curves: evaluating the checkpoints every {config.curve_every} steps")
        _curves(model, data, config, reports["held_out"])
        seconds["curves"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    report = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
              "summary": summary_rows(reports), "targets": TARGETS, **reports, "captions": captions,
              "seconds": {key: round(value, 1) for key, value in seconds.items()}}
    (config.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary_rows(reports: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{"name", "accuracy", "no_audio", "no_video", "chance", "target", "met"}`` for the demo table."""
    full = reports["held_out"]
    rows = [{"name": "caption attributes", "accuracy": full["attributes"].get("all", {}).get("accuracy")}]
    for task, stats in full["exact_match"].get("task", {}).items():
        rows.append({"name": task, "accuracy": stats["accuracy"]})
    for kind, stats in full["exact_match"].get("kind", {}).items():
        if kind.startswith("av_qa/"):
            rows.append({"name": kind, "accuracy": stats["accuracy"], "chance": full["chance"].get(kind)})
    for row in rows:
        for ablation in ("no_audio", "no_video"):
            if row["name"].startswith("av_qa"):
                ablated = reports[ablation]["exact_match"]
                stats = ablated["all"] if row["name"] == "av_qa" else ablated.get("kind", {}).get(row["name"])
                row[ablation] = None if stats is None else stats["accuracy"]
        target = TARGETS.get(row["name"])
        if target is not None:
            row.update(target=target, met=row["accuracy"] is not None and row["accuracy"] >= target)
    return rows


def _dataset(config: DemoConfig, say: Callable[[str], Any]) -> Path:
    """Generate the AV-Synth set, or reuse one generated earlier with the same settings."""
    data = config.out / "data"
    settings = SynthConfig(n_train=config.n_train, n_test=config.n_test, seed=config.seed)
    manifest = data / "synth.json"
    if manifest.is_file() and json.loads(manifest.read_text())["config"] == asdict(settings):
        say(f"reusing the AV-Synth set in {data}")
        return data
    say(f"generating AV-Synth: {config.n_train} training and {config.n_test} held-out clips")
    generate(data, settings)
    return data


def write_oversampled(data: Path, copies: dict[str, int], target: Path) -> None:
    """``data/train.json`` with the records of each question kind in ``copies`` written that many times (kinds from
    ``train_meta.jsonl``; copies keep their id, so per-record results stay keyed by it)."""
    unknown = sorted(kind for kind, count in copies.items() if count < 1 or kind not in KINDS)
    if unknown:
        raise ValueError(f"oversample: {unknown} are not AV-Synth question kinds with a count >= 1; kinds are "
                         f"{sorted(KINDS)}")
    kinds = {row["id"]: row["kind"] for row in map(json.loads, (data / "train_meta.jsonl").read_text().splitlines())}
    records = json.loads((data / "train.json").read_text())
    repeated = [record for record in records for _ in range(copies.get(kinds[record["id"]], 1))]
    target.write_text(json.dumps(repeated) + "\n")


def _evaluations(model: AVLM, data: Path, config: DemoConfig) -> dict[str, dict[str, Any]]:
    """The held-out split, then its audio-visual questions with silence and with black frames."""
    options = {"batch_size": config.eval_batch_size, "num_workers": 1, "max_new_tokens": 40}
    reports = {}
    for name, tasks, ablate in (("held_out", (), None), ("no_audio", ("av_qa",), "audio"),
                                ("no_video", ("av_qa",), "video")):
        evaluation = load_eval_set(data / "test.json", tasks=tasks, ablate=ablate,
                                   num_frames=model.processor.config.num_frames)
        reports[name] = build_report(evaluation, evaluate(model, evaluation, **options), data=str(data / "test.json"),
                                     ablate=ablate)
    return reports


def _curves(model: AVLM, data: Path, config: DemoConfig, final: dict[str, Any]) -> None:
    """``curves/``: the held-out accuracy of each kept checkpoint before the last step, then the finished model's
    (``final``, the report's held-out evaluation). Leaves the model with the weights of the last checkpoint read."""
    checkpoints = [(int(CHECKPOINT_NAME.match(path.name).group(1)), path)
                   for path in list_checkpoints(config.out / "train" / "checkpoints")]
    evaluation = load_eval_set(data / "test.json", num_frames=model.processor.config.num_frames)
    if config.curve_clips is not None:
        evaluation = _first_clips(evaluation, config.curve_clips)
    points = evaluate_checkpoints(model, [(step, path) for step, path in checkpoints if step < config.steps],
                                  evaluation, batch_size=config.eval_batch_size, num_workers=1, max_new_tokens=40)
    plot_curves([*points, curve_point(config.steps, final)], config.out / "curves", TARGETS)


def _first_clips(evaluation: EvalSet, count: int) -> EvalSet:
    """The questions of the first ``count`` clips (by file name) of ``evaluation``."""
    def clip(request: Request) -> str:
        return str(request.video if request.video is not None else request.audio)

    chosen = set(sorted({clip(request) for request in evaluation.requests})[:count])
    pairs = [(request, row) for request, row in zip(evaluation.requests, evaluation.references, strict=True)
             if clip(request) in chosen]
    return EvalSet([request for request, _ in pairs], [row for _, row in pairs])


def _captions(model: AVLM, data: Path, config: DemoConfig) -> list[dict[str, Any]]:
    """Captions of the first held-out clips and of the real bigbuckbunny.mp4, also written to captions.jsonl."""
    clips = sorted((data / "clips").glob("test-*.mp4"))[: config.caption_clips] + [sample_clip("bigbuckbunny")]
    # the question and the media as in AV-Synth's caption records (the whole soundtrack of the clip)
    requests = [Request("Describe the clip.", str(clip), str(clip)) for clip in clips]
    results = model.run(requests, batch_size=8, num_workers=0, max_new_tokens=40)
    rows = [{"video": str(clip), **({"caption": result.text} if result.error is None else {"error": result.error})}
            for clip, result in zip(clips, results, strict=True)]
    (config.out / "captions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows
