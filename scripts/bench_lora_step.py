"""LLM LoRA training step (issue 8 benchmark 1): avlm's training path vs plain HF + peft, side by side.

Both paths train LoRA adapters (rank r, alpha 2r, no dropout) on every linear layer of the same random-weight
Qwen2 (same base weights, same initial adapters, same batch), with gradient checkpointing, for ``--steps`` timed steps
after ``--warmup`` steps.

Baseline: ``Qwen2ForCausalLM`` + ``peft.get_peft_model`` + ``model(input_ids, labels=labels).loss`` (HF's loss over
full fp32 logits) + ``torch.optim.AdamW`` (default implementation), HF gradient checkpointing (non-reentrant).
avlm: the LLM inside ``AVLMForCausalLM`` with ``avlm.modeling.trainable.prepare_for_training`` (LoRA through
avlm.modeling.lora), the calls of ``avlm.train.stages.TrainingForward`` (``embed_multimodal`` then
``forward(inputs_embeds, labels)``: the chunked loss on the labelled positions only, :mod:`avlm.modeling.loss`), plus
the options below, each switchable so gains can be attributed:

    --hf-loss             avlm path with HF's full-logits loss instead of avlm.modeling.loss
    --no-fused            avlm path with the default (foreach) AdamW instead of fused AdamW
    --checkpoint-every N  checkpoint every N-th decoder layer only (1 = all, HF's every_n_layers); 0 = no checkpointing
    --compile             torch.compile each decoder layer (avlm path)
    --autocast            bf16 autocast around the avlm forward (what accelerate's mixed_precision="bf16" in the
                          trainer does): peft keeps LoRA weights in fp32 and otherwise runs the adapter matmuls in
                          fp32 (no TF32 by default), about 4% of the FLOPs at far lower throughput
    --label-fraction F    labels on the last F of each sequence (1.0: every token, as the issue's anchor)
    --fp32-base           the LLM's frozen weights in fp32 under bf16 autocast, as avlm.train runs today (it loads
                          the model in fp32 and lets accelerate autocast): every matmul casts its weight each pass

Times are wall-clock on CUDA and process CPU time on CPU (one thread by default). Units: tokens/s counts every token
of the batch; MFU_6N = tokens/s x (6N + 12 L d T) / peak and useful-MFU = tokens/s x
(4N + 8 L d T) / peak (N: all LLM parameters; /work/shared/docs/benchmarks.md section 1), against 989 TFLOP/s (H100
spec) and 787 TFLOP/s (measured bf16 matmul, issue 8).

``--json PATH`` also writes the figures (per path: ms/step, tokens/s, step seconds, first loss, peak memory,
TFLOP/s, MFU; the ratio; shape, dtype, versions, GPU, date) as one JSON object; ``scripts/gpu_run.sh`` runs the GPU
figures this way.

    PYTHONPATH=. python scripts/bench_lora_step.py --device cuda --shape real               # GPU: Qwen2-7B, 4 x 2048
    .venv/bin/python scripts/bench_lora_step.py --shape small                               # CPU smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from bench_step_common import (
    IGNORE_INDEX,
    adamw,
    clock,
    environment,
    free_memory,
    peak_gib,
    reset_peak,
    set_threads,
    synchronize,
    write_json,
)
from transformers import Qwen2Config, Qwen2ForCausalLM

PEAK_TFLOPS = {"spec": 989.0, "measured": 787.0}
SHAPES = {  # LLM config overrides of Qwen2-7B, batch, sequence, LoRA rank
    "real": ({}, 4, 2048, 128),
    "small": ({"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 4, "num_attention_heads": 4,
               "num_key_value_heads": 2, "vocab_size": 4096}, 2, 256, 16),
    "tiny": ({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 512}, 2, 32, 8),
}


@dataclass
class Run:
    """What one path measured: per-step seconds after warm-up, the first step's loss, peak memory (GiB or None)."""

    seconds: list[float]
    first_loss: float
    peak_allocated: float | None
    peak_reserved: float | None


def qwen2_config(shape: str, attn: str) -> Qwen2Config:
    from avlm.modeling.presets import _QWEN2_7B_INSTRUCT

    fields = {**_QWEN2_7B_INSTRUCT, **SHAPES[shape][0], "use_cache": False}
    fields.pop("model_type")
    if shape != "real":  # reduced vocabularies do not hold Qwen2's special-token ids
        fields.update(bos_token_id=None, eos_token_id=None)
    config = Qwen2Config(**fields)
    config._attn_implementation = attn
    return config


def token_batch(vocab: int, batch: int, seq: int, label_fraction: float, device: str) -> dict[str, torch.Tensor]:
    """Random ids [b, T], all-ones mask, labels = ids on the last ``label_fraction`` of each row (IGNORE before)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq), generator=generator)
    labels = ids.clone()
    labels[:, : seq - max(2, round(seq * label_fraction))] = IGNORE_INDEX
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device)}


def measure(step: Callable[[], float], warmup: int, steps: int, device: str) -> Run:
    """Run ``step`` (returns the loss) warmup + steps times; peak memory over all of them (CUDA only)."""
    reset_peak(device)
    seconds, first, now = [], None, clock(device)
    for index in range(warmup + steps):
        synchronize(device)
        start = now()
        loss = step()
        synchronize(device)
        first = loss if first is None else first
        if index >= warmup:
            seconds.append(now() - start)
    return Run(seconds, first, *(peak_gib(device) or (None, None)))


def baseline_step(llm: torch.nn.Module, batch: dict[str, torch.Tensor], rank: int,
                  checkpointing: bool) -> tuple[torch.nn.Module, Callable[[], float]]:
    """Plain HF + peft: returns the peft model and one training step."""
    import peft

    if checkpointing:
        llm.gradient_checkpointing_enable()
    lora = peft.LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear",
                           task_type="CAUSAL_LM")
    model = peft.get_peft_model(llm, lora).train()
    optimizer = adamw([p for p in model.parameters() if p.requires_grad], fused=False)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        loss.backward()
        optimizer.step()
        return loss.item()

    return model, step


def avlm_model(llm: torch.nn.Module, rank: int, checkpoint_every: int) -> torch.nn.Module:
    """``AVLMForCausalLM`` around ``llm`` (no encoders), LoRA by avlm's policy, checkpointing as the trainer does."""
    from avlm.modeling.configuration import AVLMConfig
    from avlm.modeling.lora import LoRAConfig
    from avlm.modeling.model import AVLMForCausalLM
    from avlm.modeling.trainable import TrainablePolicy, prepare_for_training

    config = AVLMConfig(text_config=llm.config.to_dict(), encoders={}, connectors={},
                        placeholder_token_ids={"video": -201, "audio": -202, "image": -200})
    model = AVLMForCausalLM(config, llm=llm, encoders={}, connectors={})
    prepare_for_training(model, TrainablePolicy(encoders={}, connectors={}),
                         LoRAConfig(rank=rank, alpha=2.0 * rank, dropout=0.0))
    if checkpoint_every:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False},
                                            every_n_layers=checkpoint_every)
    return model.train()


def avlm_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], args: argparse.Namespace) -> Callable[[], float]:
    """One step through the calls ``avlm.train.stages.TrainingForward`` makes (merge, then the model's loss)."""
    if args.compile:
        for layer in model.llm.get_base_model().model.layers:
            layer.compile()
    fused = not args.no_fused and args.device.startswith("cuda")  # fused AdamW on CPU measured 3x slower
    optimizer = adamw([p for p in model.parameters() if p.requires_grad], fused=fused)
    num_items = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()

    precision = {"device_type": args.device.split(":")[0], "dtype": torch.bfloat16, "enabled": args.autocast}

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(**precision):
            merged = model.merge(batch["input_ids"], batch["attention_mask"], batch["labels"], {}, {})
            out = model(inputs_embeds=merged.inputs_embeds, attention_mask=merged.attention_mask,
                        position_ids=merged.position_ids, labels=merged.labels, num_items_in_batch=num_items,
                        return_logits=args.hf_loss)
        out.loss.backward()
        optimizer.step()
        return out.loss.item()

    return step


def flops_per_token(config: Qwen2Config, parameters: int, seq: int) -> tuple[float, float]:
    """(6N + 12 L d T, 4N + 8 L d T) per token."""
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq
    return 6 * parameters + attention, 4 * parameters + attention * 2 / 3


def figures(run: Run, tokens: int, flops: tuple[float, float], device: str) -> dict:
    """The numbers of one path, as printed by :func:`describe` and written by ``--json``."""
    step = statistics.median(run.seconds)
    rate = tokens / step
    achieved = [rate * value / 1e12 for value in flops]
    record = {"ms_per_step": step * 1e3, "tokens_per_s": rate, "step_seconds": run.seconds,
              "first_loss": run.first_loss, "peak_allocated_gib": run.peak_allocated,
              "peak_reserved_gib": run.peak_reserved, "tflops_6n": achieved[0], "tflops_useful": achieved[1]}
    if device.startswith("cuda"):
        record["mfu_6n"] = {name: achieved[0] / peak for name, peak in PEAK_TFLOPS.items()}
        record["useful_mfu"] = {name: achieved[1] / peak for name, peak in PEAK_TFLOPS.items()}
    return record


def describe(name: str, run: Run, tokens: int, flops: tuple[float, float], device: str,
             base: Run | None = None) -> str:
    numbers = figures(run, tokens, flops, device)
    step, rate = statistics.median(run.seconds), numbers["tokens_per_s"]
    line = f"{name:<34} {step * 1e3:9.1f} ms/step {rate:10.1f} tokens/s"
    if base is not None:
        line += f" ({statistics.median(base.seconds) / step:.2f}x)"
    if run.peak_allocated is not None:
        line += f"  peak {run.peak_allocated:.1f} GiB allocated, {run.peak_reserved:.1f} GiB reserved"
    line += f"  {numbers['tflops_6n']:.2f} TFLOP/s (6N)"
    if device.startswith("cuda"):
        line += "  MFU_6N " + " / ".join(f"{value:.1%}" for value in numbers["mfu_6n"].values())
        line += "  useful-MFU " + " / ".join(f"{value:.1%}" for value in numbers["useful_mfu"].values())
        line += " (of 989 / 787 TF)"
    return line


def json_record(args: argparse.Namespace, setup: dict, runs: dict[str, Run], tokens: int,
                flops: tuple[float, float], complete: bool) -> dict:
    """The ``--json`` object: setup, each path's figures, and (both paths) ratio, loss and memory comparisons."""
    names = {"baseline (HF + peft)": "baseline", "avlm": "avlm"}
    record = {"benchmark": "B1 LoRA step (bench_lora_step.py)", "complete": complete, **setup,
              "paths": {names[name]: figures(run, tokens, flops, args.device) for name, run in runs.items()}}
    if len(runs) == 2:
        base, ours = runs["baseline (HF + peft)"], runs["avlm"]
        record["ratio_avlm_over_baseline"] = statistics.median(base.seconds) / statistics.median(ours.seconds)
        record["first_loss_difference"] = ours.first_loss - base.first_loss
        record["peak_memory_ratio"] = (ours.peak_allocated / base.peak_allocated
                                       if base.peak_allocated is not None else None)
    return {**record, "env": environment(args.device)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="real" if torch.cuda.is_available() else "small")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default=None, help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--batch", type=int, default=None, help="default: the shape's (real: 4)")
    parser.add_argument("--seq", type=int, default=None, help="default: the shape's (real: 2048)")
    parser.add_argument("--attn", default="sdpa", help="attention implementation of both paths (sdpa, eager, ...)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--label-fraction", type=float, default=1.0)
    parser.add_argument("--no-checkpointing", action="store_true", help="both paths without gradient checkpointing")
    parser.add_argument("--checkpoint-every", type=int, default=1, help="avlm path: checkpoint every N-th layer")
    parser.add_argument("--hf-loss", action="store_true", help="avlm path: HF's full-logits loss")
    parser.add_argument("--no-fused", action="store_true", help="avlm path: default AdamW, not fused")
    parser.add_argument("--compile", action="store_true", help="avlm path: torch.compile each decoder layer")
    parser.add_argument("--autocast", action="store_true",
                        help="avlm path: bf16 autocast (as the trainer's mixed_precision=bf16): LoRA matmuls in bf16")
    parser.add_argument("--fp32-base", action="store_true", help="avlm path as avlm.train runs it today: LLM weights "
                        "in fp32 (the model is loaded in fp32) under bf16 autocast (implies --autocast)")
    parser.add_argument("--only", choices=["both", "baseline", "avlm"], default="both")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default 1 on cpu: OpenMP threads on a busy shared box wait on "
                             "each other)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the figures as one JSON object to PATH (after each path, then complete)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.device, args.threads)
    dtype = torch.bfloat16 if (args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")) == "bf16" \
        else torch.float32
    _, batch_size, seq, rank = SHAPES[args.shape]
    batch_size, seq = args.batch or batch_size, args.seq or seq
    config = qwen2_config(args.shape, args.attn)
    torch.manual_seed(0)
    with torch.device(args.device):
        llm = Qwen2ForCausalLM._from_config(config, dtype=dtype)
    parameters = sum(p.numel() for p in llm.parameters())
    batch = token_batch(config.vocab_size, batch_size, seq, args.label_fraction, args.device)
    flops, tokens = flops_per_token(config, parameters, seq), batch_size * seq
    checkpointing = not args.no_checkpointing
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}, "
          f"{dtype}; Qwen2 {args.shape}: {parameters / 1e9:.3f}B parameters, {config.num_hidden_layers} layers, "
          f"d={config.hidden_size}; batch {batch_size} x {seq} tokens, LoRA r={rank}, attn {args.attn}, "
          f"checkpointing {'on' if checkpointing else 'off'}, label fraction {args.label_fraction}")
    setup = {"shape": args.shape, "device": args.device, "dtype": str(dtype).removeprefix("torch."),
             "parameters": parameters, "layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
             "batch": batch_size, "seq": seq, "tokens_per_step": tokens, "lora_rank": rank, "attn": args.attn,
             "checkpointing": checkpointing, "label_fraction": args.label_fraction, "warmup": args.warmup,
             "steps": args.steps, "only": args.only,
             "timer": "wall, cuda-synchronised" if args.device.startswith("cuda") else "process CPU time",
             "avlm_flags": {"hf_loss": args.hf_loss, "no_fused": args.no_fused, "compile": args.compile,
                            "checkpoint_every": args.checkpoint_every, "autocast": args.autocast,
                            "fp32_base": args.fp32_base}}
    runs: dict[str, Run] = {}
    if args.only in ("both", "baseline"):
        model, step = baseline_step(llm, batch, rank, checkpointing)
        initial = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if "lora_" in k}
        runs["baseline (HF + peft)"] = measure(step, args.warmup, args.steps, args.device)
        write_json(args.json, json_record(args, setup, runs, tokens, flops, complete=False))
        llm = model.unload()  # the frozen base weights, unchanged by training
        if checkpointing:
            llm.gradient_checkpointing_disable()
        del model, step
        free_memory(args.device)
    if args.only in ("both", "avlm"):
        if args.fp32_base:
            llm, args.autocast = llm.float(), True
        model = avlm_model(llm, rank, args.checkpoint_every if checkpointing else 0)
        if args.only == "both":
            model.llm.load_state_dict({**model.llm.state_dict(), **initial}, strict=True)
        runs["avlm"] = measure(avlm_step(model, batch, args), args.warmup, args.steps, args.device)
        setup["avlm_flags"]["autocast"] = args.autocast  # --fp32-base turns it on
    base = runs.get("baseline (HF + peft)")
    for name, run in runs.items():
        print(describe(name, run, tokens, flops, args.device, base if run is not base else None))
    if len(runs) == 2:
        first = [run.first_loss for run in runs.values()]
        print(f"first-step loss: baseline {first[0]:.6f}, avlm {first[1]:.6f}, difference {first[1] - first[0]:.3g}")
        if base.peak_allocated is not None:
            print(f"peak memory ratio avlm / baseline: {runs['avlm'].peak_allocated / base.peak_allocated:.2f}")
    write_json(args.json, json_record(args, setup, runs, tokens, flops, complete=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
