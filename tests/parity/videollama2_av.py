"""The official tiny VideoLLaMA2.1-AV checkpoint (fixture kind ``videollama2_av_checkpoint``), loaded unchanged.

Feeds the stored pixel values and fbank with the stored prompts and compares, per sample, the prompt ids, vision
features, video tokens, audio features, spliced embeddings and mask, final hidden states and logits, then the greedy
tokens with and without the checkpoint's repetition penalty. Preprocessing (pixels, fbank, frame indices) is checked
against the same case in tests/test_preprocess.py and tests/test_audio_features.py.
"""

from __future__ import annotations

from pathlib import Path

import torch

from avlm.assembly import load_model
from avlm.convert.videollama2 import PLACEHOLDER_IDS, prompt_ids
from parity.common import assert_close, load_io

MODALS = {value: key for key, value in PLACEHOLDER_IDS.items()}


def _inputs(sample: str, io: dict, num_frames: int) -> dict:
    batch = {}
    if f"{sample}.pixel_values" in io:
        pixels = io[f"{sample}.pixel_values"]
        if pixels.shape[0] == 1:  # an image: repeated to num_frames, as the reference does
            pixels = pixels.expand(num_frames, -1, -1, -1)
        batch["video_pixels"] = pixels[None]
    if f"{sample}.fbank" in io:
        batch["audio_features"] = io[f"{sample}.fbank"].float()
    return batch


def check_checkpoint(case_dir: Path, case: dict) -> None:
    from transformers import AutoTokenizer

    folder = case_dir / next(name for name in case["files"] if name.endswith("/")).rstrip("/")
    model = load_model(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    io, tolerance = load_io(case_dir), case["tolerance"]
    num_frames = io["av.pixel_values"].shape[0]

    def check(name: str, actual: torch.Tensor) -> None:
        assert_close(name, actual, io[name], tolerance[name])

    for sample, facts in case["samples"].items():
        ids = prompt_ids(tokenizer, facts["question"], MODALS[facts["placeholder_id"]])[None]
        check(f"{sample}.input_ids", ids)
        check(f"{sample}.attention_mask", torch.ones_like(ids))
        batch = _inputs(sample, io, num_frames)
        with torch.no_grad():
            if "video_pixels" in batch:
                features = model.encoders["video"](batch["video_pixels"])
                check(f"{sample}.vision_features", features[0])
                check(f"{sample}.video_tokens", model.connectors["video"](features))
            if "audio_features" in batch:
                check(f"{sample}.audio_features", model.encoders["audio"](batch["audio_features"])[0])
            merged = model.embed_multimodal(ids, torch.ones_like(ids), **batch)
            check(f"{sample}.inputs_embeds", merged.inputs_embeds)
            check(f"{sample}.attention_mask_spliced", merged.attention_mask)
            out = model.llm(inputs_embeds=merged.inputs_embeds, attention_mask=merged.attention_mask,
                            position_ids=merged.position_ids, output_hidden_states=True)
        check(f"{sample}.final_hidden", out.hidden_states[-1])
        if f"{sample}.logits" in io:
            check(f"{sample}.logits", out.logits)
        else:
            check(f"{sample}.logits_at_positions", out.logits[:, io[f"{sample}.logit_positions"]])

    ids = prompt_ids(tokenizer, case["samples"]["av"]["question"], "video")[None]
    steps = io["av.generated_ids"].shape[1]
    for name, penalty in (("av.generated_ids", None), ("av.generated_ids_no_repetition_penalty", 1.0)):
        extra = {} if penalty is None else {"repetition_penalty": penalty}
        generated = model.generate(ids, torch.ones_like(ids), **_inputs("av", io, num_frames), do_sample=False,
                                   max_new_tokens=steps, **extra)
        check(name, generated)
