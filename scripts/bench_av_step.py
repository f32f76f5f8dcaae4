"""Audio-visual training step (issue 8 benchmark 2): avlm's forward + packing vs the straightforward assembly.

One model (``videollama2.1-7b-av`` shapes for ``--shape real``: SigLIP-so400m-384 frozen over 16 frames ->
stc_connector_v35 trained -> Qwen2-7B with LoRA r=128; BEATs frozen over 30 s of fbank -> mlp2x_gelu trained; audio
appended to the video tokens), random weights, one batch mixing audio-visual, video-only and audio-only samples
(``--mix``, cycled to ``--batch`` rows; each sample: prompt, media, labelled answer). Both paths use the same modules
and weights and HF gradient checkpointing on the LLM (non-reentrant); each gets its own AdamW over the trained
parameters.

Baseline (the reference way): all videos through the encoder and connector, all clips through the audio encoder and
projector, then a per-sample Python loop cutting each prompt at its placeholder and concatenating text and media
embeddings, a right-padded batch, ``llm(inputs_embeds, attention_mask).logits`` over every position and HF's
``ForCausalLMLoss`` (fp32 logits), ``torch.optim.AdamW`` (default implementation).
avlm: the model's branches as ``AVLMForCausalLM.forward`` runs them (each branch's encode and connect steps,
vectorised ``merge``), sequence packing (:mod:`avlm.modeling.packing`; ``--no-pack`` keeps the padded batch), the
decoder (attention
``--attn``: with SDPA a packed row still computes the masked cross-sample blocks, ``flex_attention`` skips them) and
:func:`avlm.modeling.loss.causal_lm_loss` on the labelled positions only, fused AdamW on CUDA (``--no-fused``), and with
``--autocast`` bf16 autocast (peft keeps the LoRA weights in fp32 and would run their matmuls in fp32),
``--checkpoint-every N`` (checkpoint every N-th LLM layer only) and ``--compile`` (each LLM decoder layer). The
baseline runs (loss, then timed steps) before the avlm path changes any of these on the shared model.

Reported (wall time on CUDA, process CPU time on CPU): samples/s and ratio, per-stage seconds (device-synchronised:
vision, audio, connectors, splice, LLM forward, loss, backward, optimizer), LLM positions computed, peak memory on
CUDA; and the loss of both paths on the same batch before any update, with their difference. ``--json PATH`` also
writes these figures (plus the setup, versions, GPU and date) as one JSON object; ``scripts/gpu_run.sh`` runs the GPU
figures this way.

    PYTHONPATH=. python scripts/bench_av_step.py --device cuda --shape real                  # GPU, batch 4
    PYTHONPATH=. python scripts/bench_av_step.py --device cuda --shape real --batch 8 --only avlm
    .venv/bin/python scripts/bench_av_step.py --shape small                                  # CPU smoke run
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from bench_step_common import (
    IGNORE_INDEX,
    Stopwatch,
    adamw,
    environment,
    free_memory,
    peak_gib,
    reset_peak,
    set_threads,
    write_json,
)
from torch.nn.utils.rnn import pad_sequence
from transformers.loss.loss_utils import ForCausalLMLoss

STAGES = ("vision", "audio", "connectors", "splice", "llm_forward", "loss", "backward", "optimizer")


@dataclass(frozen=True)
class Shape:
    """A preset with overrides of its LLM and encoder configs, the media sizes and the text lengths."""

    preset: str
    text_config: dict
    frames: int
    side: int
    audio_frames: int
    prompt: int
    answer: int
    rank: int
    encoders: dict = field(default_factory=dict)
    """modality -> encoder config fields replaced (``"audio": None``: the avlm-tiny preset's audio encoder config)."""


_NARROW_LLM = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
               "num_key_value_heads": 2, "vocab_size": 1024, "bos_token_id": None, "eos_token_id": None}
_NARROW_SIGLIP = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
SHAPES = {
    "real": Shape("videollama2.1-7b-av", {}, 16, 384, 3000, 32, 32, 128),
    # the real layout (placeholder ids, 16 frames of 384 px -> 1,352 tokens, 30 s of audio -> 1,496 tokens, 2,913-token
    # AV samples) with narrow one- or two-layer parts: checks the real shapes' code path on CPU
    "layout": Shape("videollama2.1-7b-av", _NARROW_LLM, 16, 384, 3000, 32, 32, 8,
                    {"video": _NARROW_SIGLIP, "audio": None}),
    "small": Shape("avlm-tiny", {"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 4,
                                 "num_attention_heads": 4, "num_key_value_heads": 2}, 8, 16, 96, 16, 16, 16),
    "tiny": Shape("avlm-tiny", {}, 4, 16, 48, 8, 8, 4),
}


def build_model(shape: Shape, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """Random-init model of the shape's preset (audio appended to the video tokens), LoRA on the LLM, checkpointing."""
    from avlm.modeling import AVLMConfig
    from avlm.modeling.lora import LoRAConfig
    from avlm.modeling.model import AVLMForCausalLM
    from avlm.modeling.presets import PRESETS
    from avlm.modeling.trainable import TrainablePolicy, prepare_for_training

    fields = copy.deepcopy(PRESETS[shape.preset].model)
    text = {**fields["text_config"], **shape.text_config, "use_cache": False}
    encoders = fields["encoders"]
    for modality, overrides in shape.encoders.items():
        spec = encoders[modality]
        spec["config"] = (copy.deepcopy(PRESETS["avlm-tiny"].model["encoders"][modality]["config"]) if overrides is None
                          else {**spec["config"], **overrides})
    config = AVLMConfig.from_preset(shape.preset, av_fusion="concat_at_video", text_config=text, encoders=encoders)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = AVLMForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    prepare_for_training(model, TrainablePolicy(), LoRAConfig(rank=shape.rank, alpha=2.0 * shape.rank, dropout=0.0))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.train()


def make_batch(model: torch.nn.Module, shape: Shape, kinds: list[str], device: str,
               dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Collator-layout batch: rows ``prompt[:4] <placeholder> prompt[4:] answer``, right-padded; answers labelled."""
    generator = torch.Generator().manual_seed(0)
    ids = model.config.placeholder_token_ids
    vocab, low = model.config.text_config.vocab_size, max(0, *(token + 1 for token in ids.values()))  # real: < 0
    rows, labels = [], []
    for kind in kinds:
        prompt = torch.randint(low, vocab, (shape.prompt,), generator=generator)
        answer = torch.randint(low, vocab, (shape.answer,), generator=generator)
        marker = torch.tensor([ids["audio" if kind == "audio" else "video"]])
        rows.append(torch.cat([prompt[:4], marker, prompt[4:], answer]))
        labels.append(torch.cat([torch.full((shape.prompt + 1,), IGNORE_INDEX), answer]))
    videos = [row for row, kind in enumerate(kinds) if kind in ("av", "video")]
    clips = [row for row, kind in enumerate(kinds) if kind in ("av", "audio")]
    batch = {"input_ids": torch.stack(rows), "attention_mask": torch.ones(len(rows), len(rows[0]), dtype=torch.long),
             "labels": torch.stack(labels), "video_sample_index": torch.tensor(videos),
             "video_pixels": torch.randn(len(videos), shape.frames, 3, shape.side, shape.side, generator=generator),
             "video_frame_counts": torch.full((len(videos),), shape.frames),
             "audio_features": torch.randn(len(clips), shape.audio_frames, 128, generator=generator),
             "audio_lengths": torch.full((len(clips),), shape.audio_frames), "audio_sample_index": torch.tensor(clips)}
    batch = {k: v.to(device) for k, v in batch.items()}
    for key in ("video_pixels", "audio_features"):
        batch[key] = batch[key].to(dtype)
    return batch


def baseline_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], watch: Stopwatch) -> tuple[torch.Tensor, int]:
    """The reference assembly: batched encoders, per-sample splice loop, padded batch, HF loss on full logits."""
    with watch("vision"), torch.no_grad():
        frames = model.encoders["video"](batch["video_pixels"])
    with watch("audio"), torch.no_grad():
        clips, _ = model.encoders["audio"](batch["audio_features"], batch["audio_lengths"])
    with watch("connectors"):
        videos, sounds = model.connectors["video"](frames), model.connectors["audio"](clips)
    with watch("splice"):
        embed, markers = model.get_input_embeddings(), model.config.placeholder_token_ids
        video_of = dict(zip(batch["video_sample_index"].tolist(), videos, strict=True))
        audio_of = dict(zip(batch["audio_sample_index"].tolist(), sounds, strict=True))
        embeds, labels = [], []
        for row, (ids, row_labels) in enumerate(zip(batch["input_ids"], batch["labels"], strict=True)):
            at = int(torch.isin(ids, torch.tensor(list(markers.values()), device=ids.device)).nonzero()[0])
            media = torch.cat([item[row] for item in (video_of, audio_of) if row in item])
            embeds.append(torch.cat([embed(ids[:at]), media, embed(ids[at + 1:])]))
            ignore = torch.full((len(media),), IGNORE_INDEX, device=ids.device)
            labels.append(torch.cat([row_labels[:at], ignore, row_labels[at + 1:]]))
        mask = pad_sequence([torch.ones(len(e), dtype=torch.long, device=e.device) for e in embeds], batch_first=True)
        embeds = pad_sequence(embeds, batch_first=True)
        labels = pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX)
    with watch("llm_forward"):
        logits = model.llm(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
    with watch("loss"):
        loss = ForCausalLMLoss(logits, labels, vocab_size=logits.shape[-1])
    return loss, mask.numel()


def avlm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], watch: Stopwatch,
              pack: bool) -> tuple[torch.Tensor, int]:
    """``AVLMForCausalLM.forward(**batch, pack=pack)`` run stage by stage (each modality's branch split into its
    encode and connect steps, so they can be timed apart)."""
    from avlm.modeling.branches import BRANCHES
    from avlm.modeling.loss import causal_lm_loss
    from avlm.modeling.packing import pack_sequences

    inputs = {m: branch.inputs(batch) for m, branch in BRANCHES.items()}
    with watch("vision"), torch.no_grad():
        frames = BRANCHES["video"].encode(model.encoders["video"], inputs["video"])
    with watch("audio"), torch.no_grad():
        clips = BRANCHES["audio"].encode(model.encoders["audio"], inputs["audio"])
    with watch("connectors"):
        media = {"video": BRANCHES["video"].connect(model.connectors["video"], frames),
                 "audio": BRANCHES["audio"].connect(model.connectors["audio"], clips)}
    with watch("splice"):
        index = {m: inputs[m].sample_index for m in media}
        merged = model.merge(batch["input_ids"], batch["attention_mask"], batch["labels"], media, index)
        embeds, mask, positions = merged.inputs_embeds, merged.attention_mask, merged.position_ids
        labels = merged.labels
        if pack:
            packed = pack_sequences(embeds, mask, labels)
            embeds, mask, positions, labels = packed.inputs_embeds, None, packed.position_ids, packed.labels
    with watch("llm_forward"):
        hidden = model.llm.get_decoder()(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                         use_cache=False).last_hidden_state
    with watch("loss"):
        loss = causal_lm_loss(hidden, labels, model.get_output_embeddings())
    return loss, embeds.shape[0] * embeds.shape[1]


@dataclass
class Result:
    """Median seconds per step and per stage, peak memory (GiB, CUDA only), LLM positions computed per step."""

    step: float
    stages: dict[str, float]
    peak: float | None
    computed: int


def measure(model: torch.nn.Module, forward, args: argparse.Namespace, fused: bool) -> Result:
    """``--warmup`` + ``--steps`` full steps (forward, backward, optimizer) of one path; medians of the timed steps."""
    optimizer = adamw([p for p in model.parameters() if p.requires_grad], fused=fused)
    reset_peak(args.device)
    steps, stages, computed = [], defaultdict(list), 0
    for index in range(args.warmup + args.steps):
        watch = Stopwatch(args.device)
        start = watch.now()
        optimizer.zero_grad(set_to_none=True)
        loss, computed = forward(watch)
        with watch("backward"):
            loss.backward()
        with watch("optimizer"):
            optimizer.step()
        if index >= args.warmup:
            steps.append(watch.now() - start)
            for stage in STAGES:
                stages[stage].append(watch.times[stage])
    peak = (peak_gib(args.device) or (None,))[0]
    model.zero_grad(set_to_none=True)
    del optimizer
    free_memory(args.device)
    return Result(statistics.median(steps), {k: statistics.median(v) for k, v in stages.items()}, peak, computed)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="real" if torch.cuda.is_available() else "small")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default=None, help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--mix", default="av,av,video,audio", help="sample kinds (av, video, audio), cycled")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--no-pack", action="store_true", help="avlm path on the padded batch")
    parser.add_argument("--no-fused", action="store_true", help="avlm path: default AdamW, not fused")
    parser.add_argument("--attn", default="sdpa", help="avlm path: the LLM's attention (sdpa, flex_attention, "
                        "flash_attention_2, ...); packed sequences need flex or flash to skip cross-sample blocks")
    parser.add_argument("--autocast", action="store_true",
                        help="avlm path: bf16 autocast (the trainer's mixed_precision=bf16): LoRA matmuls in bf16")
    parser.add_argument("--checkpoint-every", type=int, default=1, help="avlm path: checkpoint every N-th LLM layer")
    parser.add_argument("--compile", action="store_true", help="avlm path: torch.compile each LLM decoder layer")
    parser.add_argument("--only", choices=["both", "baseline", "avlm"], default="both")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 on cpu)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the figures as one JSON object to PATH (after each path, then complete)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.mix.split(",")) - {"av", "video", "audio"})
    if unknown:
        parser.error(f"--mix kinds {unknown} unknown; use av, video, audio")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.device, args.threads)
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if (args.dtype or ("bf16" if cuda else "fp32")) == "bf16" else torch.float32
    shape = SHAPES[args.shape]
    model = build_model(shape, args.device, dtype)
    mix = args.mix.split(",")
    kinds = [mix[row % len(mix)] for row in range(args.batch)]
    batch = make_batch(model, shape, kinds, args.device, dtype)
    pack = not args.no_pack
    print(setup_line(model, args, kinds, dtype, pack))
    losses, results = {}, {}
    initial = {k: v.detach().to("cpu", copy=True) for k, v in model.named_parameters() if v.requires_grad}
    for name in ("baseline", "avlm") if args.only == "both" else (args.only,):
        with torch.no_grad():  # each path starts from the same trained weights
            for key, value in model.named_parameters():
                if key in initial:
                    value.copy_(initial[key])
        forward = configure(model, batch, args, name)
        with torch.no_grad():
            losses[name] = forward(Stopwatch(args.device))[0].item()
        results[name] = measure(model, forward, args, fused=name == "avlm" and cuda and not args.no_fused)
        write_json(args.json, json_record(model, args, kinds, dtype, results, losses, complete=False))
    report(results, losses, args.batch)
    write_json(args.json, json_record(model, args, kinds, dtype, results, losses, complete=True))
    return 0


def configure(model: torch.nn.Module, batch: dict[str, torch.Tensor], args: argparse.Namespace, path: str):
    """Set the shared model up for ``path`` (attention, checkpointed layers, compiled layers); its forward."""
    llm = model.llm.get_base_model()
    if path == "baseline":
        llm.set_attn_implementation("sdpa")
        return lambda watch: baseline_loss(model, batch, watch)
    llm.set_attn_implementation(args.attn)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False},
                                        every_n_layers=args.checkpoint_every)  # the LLM's layers come first
    if args.compile:
        for layer in llm.model.layers:
            layer.compile()
    precision = {"device_type": args.device.split(":")[0], "dtype": torch.bfloat16, "enabled": args.autocast}

    def forward(watch: Stopwatch) -> tuple[torch.Tensor, int]:
        with torch.autocast(**precision):
            return avlm_loss(model, batch, watch, not args.no_pack)

    return forward


def setup_line(model: torch.nn.Module, args: argparse.Namespace, kinds: list[str], dtype: torch.dtype,
               pack: bool) -> str:
    shape, cuda = SHAPES[args.shape], args.device.startswith("cuda")
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return (f"torch {torch.__version__}, {torch.cuda.get_device_name() if cuda else 'cpu'}, {dtype}; {shape.preset} "
            f"({args.shape}): {total / 1e6:.1f}M parameters, {trained / 1e6:.2f}M trained; batch {kinds}, "
            f"{shape.frames} frames of {shape.side} px, {shape.audio_frames} fbank frames; avlm: packing {pack}, "
            f"attention {args.attn}")


def json_record(model: torch.nn.Module, args: argparse.Namespace, kinds: list[str], dtype: torch.dtype,
                results: dict[str, Result], losses: dict[str, float], complete: bool) -> dict:
    """The ``--json`` object: setup, each path's figures (as :func:`report` prints them), the comparisons."""
    shape, cuda = SHAPES[args.shape], args.device.startswith("cuda")
    record = {
        "benchmark": "B2 audio-visual step (bench_av_step.py)", "complete": complete, "shape": args.shape,
        "preset": shape.preset, "device": args.device, "dtype": str(dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "batch": args.batch, "kinds": kinds, "frames": shape.frames, "side": shape.side,
        "audio_frames": shape.audio_frames, "prompt_tokens": shape.prompt, "answer_tokens": shape.answer,
        "lora_rank": shape.rank, "warmup": args.warmup, "steps": args.steps, "only": args.only,
        "timer": "wall, cuda-synchronised" if cuda else "process CPU time",
        "avlm_flags": {"pack": not args.no_pack, "attn": args.attn, "no_fused": args.no_fused,
                       "autocast": args.autocast, "checkpoint_every": args.checkpoint_every, "compile": args.compile},
        "paths": {name: {"samples_per_s": args.batch / result.step, "step_s": result.step,
                         "stages_s": {stage: result.stages.get(stage, 0.0) for stage in STAGES},
                         "llm_positions": result.computed, "peak_gib": result.peak,
                         "loss_before_update": losses[name]} for name, result in results.items()},
    }
    if len(results) == 2:
        base, ours = results["baseline"], results["avlm"]
        record["ratio_avlm_over_baseline"] = base.step / ours.step
        record["peak_memory_ratio"] = ours.peak / base.peak if base.peak is not None else None
        record["loss_difference"] = losses["avlm"] - losses["baseline"]
    return {**record, "env": environment(args.device)}


def report(results: dict[str, Result], losses: dict[str, float], batch: int) -> None:
    names = list(results)
    print(f"{'':<22}" + "".join(f"{name:>14}" for name in names))
    rows = [("samples/s", [batch / r.step for r in results.values()], "{:14.3f}"),
            ("step s", [r.step for r in results.values()], "{:14.3f}")]
    rows += [(f"  {stage} s", [r.stages.get(stage, 0.0) for r in results.values()], "{:14.4f}") for stage in STAGES]
    rows += [("LLM positions", [r.computed for r in results.values()], "{:14d}")]
    if all(r.peak is not None for r in results.values()):
        rows.append(("peak GiB", [r.peak for r in results.values()], "{:14.1f}"))
    rows.append(("loss before update", [losses[name] for name in names], "{:14.6f}"))
    for label, values, form in rows:
        print(f"{label:<22}" + "".join(form.format(value) for value in values))
    if len(names) == 2:
        base, ours = results["baseline"], results["avlm"]
        line = f"avlm / baseline: {base.step / ours.step:.2f}x samples/s"
        if base.peak is not None:
            line += f", {ours.peak / base.peak:.2f}x peak memory"
        print(line + f"; loss difference {losses['avlm'] - losses['baseline']:.3g}")


if __name__ == "__main__":
    sys.exit(main())
