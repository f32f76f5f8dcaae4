"""Learnability study on AV-Synth: which model size / frames / frame size / tokenizer / steps reach the demo targets.

A minimal plain loop (AdamW on ``AVLMForCausalLM``, all parts trainable) over media decoded once per clip and cached,
then greedy generation + exact match on the held-out test split, with the AV questions re-asked with audio removed
and with video removed. One JSON line per run is appended to ``--results``.

    python scripts/study_avsynth.py --data /tmp/avs --variant tiny --minutes 3
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from pathlib import Path

import torch

from avlm.data import load_annotations
from avlm.data.conversation import tokenize_conversation
from avlm.eval import score_answers
from avlm.modeling.configuration import AVLMConfig
from avlm.modeling.model import AVLMForCausalLM
from avlm.modeling.presets import PRESETS
from avlm.modeling.trainable import TrainablePolicy, set_trainable
from avlm.processing.collator import collate
from avlm.processing.media import MediaConfig, load_audio_features, load_video_frames
from avlm.processing.processor import Processor
from avlm.synth import parse_caption
from vision.preprocess import ImageProcessorConfig


def variant_config(name: str, side: int, vocab: int, connector: str, grid: int = 0, patch: int = 4,
                   llm_width: int = 0, vision_width: int = 0, llm_layers: int = 0) -> AVLMConfig:
    """avlm-tiny, optionally wider/deeper, with SigLIP at ``side`` px and the given video connector."""
    model = copy.deepcopy(PRESETS["avlm-tiny"].model)
    options = {"grid": grid or side // patch} if connector == "spatial_pool" else {}
    model["connectors"]["video"] = {"name": connector, "options": options}
    model["encoders"]["video"]["config"]["image_size"] = side
    model["encoders"]["video"]["config"]["patch_size"] = patch
    if llm_width:
        model["text_config"].update(hidden_size=llm_width, intermediate_size=2 * llm_width)
    if llm_layers:
        model["text_config"]["num_hidden_layers"] = llm_layers
    if vision_width:
        model["encoders"]["video"]["config"].update(hidden_size=vision_width, intermediate_size=2 * vision_width)
    model["text_config"]["vocab_size"] = vocab
    if name in ("small", "small4"):
        width = 64
        model["text_config"].update(hidden_size=width, intermediate_size=4 * width, num_attention_heads=4)
        model["encoders"]["video"]["config"].update(hidden_size=width, intermediate_size=2 * width)
        model["encoders"]["audio"]["config"].update(encoder_embed_dim=width, encoder_ffn_embed_dim=2 * width,
                                                    hidden_size=width)
        if name == "small4":
            model["text_config"]["num_hidden_layers"] = 4
    return AVLMConfig(**model)


def make_tokenizer(kind: str, vocab: int):
    import avlm.processing.tokenizer as tokenizer_module
    from avlm.synth.tokenizer import vocabulary_words

    if kind == "synth":  # the tiny tokenizer's words plus AV-Synth's, the latter weighted so they become single tokens
        saved = tokenizer_module.WORDS
        words = vocabulary_words()  # answers start a line (no leading space): both forms
        tokenizer_module.WORDS = saved + (" " + " ".join(words) + "\n" + "\n".join(words)) * 8
        try:
            return tokenizer_module.train_tiny_tokenizer(vocab_size=vocab)
        finally:
            tokenizer_module.WORDS = saved
    return tokenizer_module.train_tiny_tokenizer(vocab_size=vocab)


def cache_media(records, media: MediaConfig) -> dict[str, dict[str, torch.Tensor]]:
    """clip path -> {"video": [t, 3, S, S], "audio": [f, 128]} (each clip decoded once)."""
    cache = {}
    for record in records:
        path = str(record.video or record.audio)
        if path not in cache:
            frames, _ = load_video_frames(path, media)
            cache[path] = {"video": frames, "audio": load_audio_features(path, media)}
    return cache


def training_samples(records, tokenizer, ids, cache):
    samples = []
    for record in records:
        sample = tokenize_conversation(tokenizer, record.conversations, ids, record.modalities)
        media = cache[str(record.video or record.audio)]
        samples.append({**sample, **{m: media[m] for m in record.modalities}, "id": record.id, "media_error": None})
    return samples


def train(model, samples, pad_id, args) -> dict:
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    started, step, losses = time.perf_counter(), 0, []
    budget = args.minutes * 60
    rng = random.Random(args.seed)
    model.train()
    while True:
        elapsed = time.perf_counter() - started
        if (args.steps and step >= args.steps) or (not args.steps and elapsed >= budget):
            break
        progress = step / args.steps if args.steps else elapsed / budget
        warm = min(1.0, (step + 1) / 30)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * warm * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        batch = collate(rng.sample(samples, args.batch), pad_id, "right")
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels", "video_pixels", "video_frame_counts",
                                        "video_sample_index", "audio_features", "audio_lengths",
                                        "audio_sample_index") if k in batch}
        loss = model(**inputs).loss
        optimizer.zero_grad()
        loss.backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        losses.append(loss.item())
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {sum(losses[-50:]) / 50:.3f} {time.perf_counter() - started:.0f}s", flush=True)
    return {"steps": step, "train_s": round(time.perf_counter() - started, 1),
            "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4)}


@torch.no_grad()
def answer(model, processor, records, cache, drop: str | None, batch_size: int = 32) -> dict[str, str]:
    model.eval()
    out = {}
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        samples = []
        for record in chunk:
            modalities = [m for m in record.modalities if m != drop]
            question = record.conversations[0]["value"].replace("<video>", "").replace("<audio>", "").strip()
            media = cache[str(record.video or record.audio)]
            ids = processor.encode_prompt(question, modalities)
            samples.append({"input_ids": ids, "labels": torch.full_like(ids, -100), "id": record.id,
                            "media_error": None, **{m: media[m] for m in modalities}})
        batch = collate(samples, processor.tokenizer.pad_token_id, "left")
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "video_pixels", "video_frame_counts",
                                        "video_sample_index", "audio_features", "audio_lengths",
                                        "audio_sample_index") if k in batch}
        longest = 40 if any(r.task == "caption" for r in chunk) else 8
        new = model.generate(**inputs, max_new_tokens=longest, do_sample=False)
        for record, tokens in zip(chunk, new, strict=True):
            out[record.id] = processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    return out


def summarize(report: dict) -> dict[str, float]:
    row = {name: round(stats["accuracy"], 3) for name, stats in report["exact_match"].get("kind", {}).items()}
    row.update({f"task:{name}": round(s["accuracy"], 3) for name, s in report["exact_match"].get("task", {}).items()})
    if report["attributes"]:
        row["caption_attributes"] = round(report["attributes"]["all"]["accuracy"], 3)
        row["caption_exact"] = round(report["attributes"]["caption"]["accuracy"], 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--variant", default="tiny", choices=["tiny", "small", "small4"])
    parser.add_argument("--side", type=int, default=16)
    parser.add_argument("--connector", default="stc_connector_v35", help="video connector (fusion.CONNECTORS)")
    parser.add_argument("--frozen-audio", action="store_true", help="keep the random-init audio encoder frozen")
    parser.add_argument("--patch", type=int, default=4, help="SigLIP patch size (px)")
    parser.add_argument("--llm-width", type=int, default=0, help="LLM hidden size; 0: the variant's")
    parser.add_argument("--llm-layers", type=int, default=0, help="LLM layers; 0: the variant's")
    parser.add_argument("--vision-width", type=int, default=0, help="SigLIP hidden size; 0: the variant's")
    parser.add_argument("--grid", type=int, default=0, help="spatial_pool grid; 0: no pooling (side / 4)")
    parser.add_argument("--clip", type=float, default=0.0, help="gradient-norm clipping; 0: none")
    parser.add_argument("--val-clips", type=int, default=0, help="hold out the last N train clips (seen combinations)")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--tokenizer", default="tiny", choices=["tiny", "synth"])
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--train-clips", type=int, default=0, help="0: all")
    parser.add_argument("--test-clips", type=int, default=0, help="0: all")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=0, help="fixed step count instead of --minutes")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the batch order")
    parser.add_argument("--tasks", default="", help="comma-separated tasks to train and test on; empty: all")
    parser.add_argument("--kinds", default="", help="comma-separated question kinds (meta 'kind'); empty: all")
    parser.add_argument("--rope-theta", type=float, default=0.0, help="LLM rope_theta; 0: the preset's")
    parser.add_argument("--connector-options", default="{}", help="JSON options of the video connector")
    parser.add_argument("--results", default="study_results.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = Path(args.data)
    started = time.perf_counter()
    train_records, _ = load_annotations([data / "train.json"])
    test_records, _ = load_annotations([data / "test.json"])
    val_records = []
    if args.val_clips:
        last = max(int(r.id.split("-")[1]) for r in train_records) + 1
        val_records = [r for r in train_records if int(r.id.split("-")[1]) >= last - args.val_clips]
        train_records = [r for r in train_records if int(r.id.split("-")[1]) < last - args.val_clips]
    if args.train_clips:
        keep = {f"train-{i:05d}" for i in range(args.train_clips)}
        train_records = [r for r in train_records if r.id.rsplit("-", 1)[0] in keep]
    if args.test_clips:
        keep = {f"test-{i:05d}" for i in range(args.test_clips)}
        test_records = [r for r in test_records if r.id.rsplit("-", 1)[0] in keep]
    if args.tasks:
        train_records = [r for r in train_records if r.task in args.tasks.split(",")]
        test_records = [r for r in test_records if r.task in args.tasks.split(",")]
        val_records = [r for r in val_records if r.task in args.tasks.split(",")]
    meta = {row["id"]: row for split in ("train", "test")
            for row in map(json.loads, (data / f"{split}_meta.jsonl").read_text().splitlines())}
    if args.kinds:
        kinds = set(args.kinds.split(","))
        train_records = [r for r in train_records if meta[r.id]["kind"] in kinds]
        test_records = [r for r in test_records if meta[r.id]["kind"] in kinds]
        val_records = [r for r in val_records if meta[r.id]["kind"] in kinds]
    media = MediaConfig(num_frames=args.frames, image_frames=2, image_processor=ImageProcessorConfig(size=args.side),
                        audio_features="fbank", max_audio_seconds=10.0)
    tokenizer = make_tokenizer(args.tokenizer, args.vocab)
    config = variant_config(args.variant, args.side, args.vocab, args.connector, args.grid, args.patch,
                            args.llm_width, args.vision_width, args.llm_layers)
    if args.rope_theta:
        config.text_config.rope_theta = args.rope_theta
        if getattr(config.text_config, "rope_parameters", None):
            config.text_config.rope_parameters["rope_theta"] = args.rope_theta
    config.connectors["video"].options.update(json.loads(args.connector_options))
    model = AVLMForCausalLM(config)
    encoders = {"video": "full", "audio": "frozen" if args.frozen_audio else "full"}
    trainable = set_trainable(model, TrainablePolicy(llm="full", encoders=encoders))
    processor = Processor(tokenizer, media, config.placeholder_token_ids, config.av_fusion)
    cache = cache_media(train_records + val_records + test_records, media)
    cache_s = time.perf_counter() - started
    samples = training_samples(train_records, tokenizer, config.placeholder_token_ids, cache)
    result = {"args": vars(args), "params": sum(p.numel() for p in model.parameters()), "trainable": trainable,
              "cache_s": round(cache_s, 1), "train_records": len(samples),
              "mean_len": round(sum(len(s["input_ids"]) for s in samples) / len(samples), 1)}
    result.update(train(model, samples, tokenizer.pad_token_id, args))
    evaluated = time.perf_counter()
    if val_records:
        seen = answer(model, processor, val_records, cache, None)
        result["val_seen_pairs"] = summarize(score_answers(seen, [meta[r.id] for r in val_records], parse_caption))
    predictions = answer(model, processor, test_records, cache, None)
    result["full"] = summarize(score_answers(predictions, [meta[r.id] for r in test_records], parse_caption))
    av = [r for r in test_records if r.task == "av_qa"]
    for drop in ("audio", "video"):
        ablated = answer(model, processor, av, cache, drop)
        result[f"no_{drop}"] = summarize(score_answers(ablated, [meta[r.id] for r in av]))
    result["eval_s"] = round(time.perf_counter() - evaluated, 1)
    result["examples"] = {r.id: predictions[r.id] for r in test_records[:9]}
    print(json.dumps(result, indent=1))
    with open(args.results, "a") as handle:
        handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
