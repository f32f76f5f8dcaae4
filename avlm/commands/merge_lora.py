"""Fold LoRA adapters into the base model and write a full model folder, after checking that nothing changed.

``avlm merge-lora ADAPTER_DIR OUT_DIR`` loads the base model named in ``ADAPTER_DIR/avlm_adapter.json`` (or
``--base``), attaches the adapters and trained connectors, and computes the logits of a fixed audio-visual sample
before and after merging (float32). It writes OUT_DIR only if they agree within ``--tolerance``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter_dir", type=Path,
                        help="folder written by avlm.modeling.lora.save_adapter (or training)")
    parser.add_argument("out_dir", type=Path, help="folder to write the merged model into")
    parser.add_argument("--base", type=Path, default=None,
                        help="base model folder (default: the one the adapter names)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest allowed |merged - unmerged| logit difference on the check sample")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    import torch

    from avlm.modeling.lora import load_adapter, merge_lora, read_adapter_meta
    from avlm.modeling.model import AVLMForCausalLM
    from avlm.processing.processor import Processor

    base = args.base or Path(read_adapter_meta(args.adapter_dir)["base_model"])
    model = AVLMForCausalLM.from_pretrained(base, dtype=torch.float32)
    processor = Processor.from_pretrained(base)
    load_adapter(model, args.adapter_dir)
    batch = check_sample(processor, list(model.encoders))
    with torch.no_grad():
        unmerged = model.eval()(**batch).logits
        merged = merge_lora(model)(**batch).logits
    difference = (merged - unmerged).abs().max().item()
    print(f"max |merged - unmerged| logit difference on the check sample: {difference:.3g} "
          f"(tolerance {args.tolerance:.3g}, logits up to {unmerged.abs().max().item():.3g})")
    if not difference <= args.tolerance or math.isnan(difference):
        print(f"refusing to write {args.out_dir}: the merged model does not reproduce the adapted one")
        return 1
    model.save_pretrained(args.out_dir)
    processor.save_pretrained(args.out_dir)
    print(f"wrote {args.out_dir}")
    return 0


def check_sample(processor, modalities: list[str], seed: int = 0) -> dict:
    """A fixed synthetic sample with every modality the model has: seeded frames and a 2 s tone with noise."""
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    import torch

    generator = torch.Generator().manual_seed(seed)
    side = 2 * processor.config.image_processor.size
    frames = torch.randint(0, 256, (processor.config.num_frames, side, side, 3), generator=generator,
                           dtype=torch.uint8)
    time = torch.arange(2 * processor.config.sample_rate) / processor.config.sample_rate
    waveform = 0.3 * torch.sin(2 * math.pi * 440 * time) + 0.05 * torch.randn(len(time), generator=generator)
    return processor("Describe what you see and hear.", videos=frames if "video" in modalities else None,
                     audios=waveform if "audio" in modalities else None)
