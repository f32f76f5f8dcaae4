"""Vision tower throughput: SigLIP-so400m-384 frames/s through avlm's encoder vs the plain HF model, side by side.

Baseline: ``transformers.SiglipVisionModel`` (all 27 layers, post-layernorm and pooling head, SDPA), called with
``output_hidden_states=True`` to take ``hidden_states[-2]`` as VideoLLaMA2 does. avlm: ``SiglipVisionEncoder``, which
builds and runs only the 26 layers that feature needs; optionally under ``torch.compile``. Same random weights.

    PYTHONPATH=. python scripts/bench_vision.py --device cuda --batch 128            # (issue 8 benchmark 4)
    .venv/bin/python scripts/bench_vision.py --device cpu --batch 2 --layers 2       # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from transformers import SiglipVisionConfig, SiglipVisionModel

from vision.encoders.siglip import SiglipVisionEncoder

SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=384,
              patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)


def images_per_second(run, pixels: torch.Tensor, repeats: int, device: str) -> float:
    with torch.no_grad():
        for _ in range(2):
            run(pixels)
        if device == "cuda":
            torch.cuda.synchronize()
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            run(pixels)
            if device == "cuda":
                torch.cuda.synchronize()
            timings.append(time.perf_counter() - start)
    return pixels.shape[0] / statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--layers", type=int, default=27, help="fewer layers for a CPU smoke run")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    config = SiglipVisionConfig(**{**SO400M, "num_hidden_layers": args.layers})
    torch.manual_seed(0)
    baseline = SiglipVisionModel._from_config(config, attn_implementation="sdpa").to(args.device, dtype).eval()
    encoder = SiglipVisionEncoder(config, chunk_size=args.batch).to(args.device, dtype)
    encoder.load_state_dict({k: v for k, v in baseline.state_dict().items() if k in encoder.state_dict()}, strict=True)
    pixels = torch.randn(args.batch, 3, 384, 384, device=args.device, dtype=dtype)
    with torch.no_grad():
        expected = baseline(pixels, output_hidden_states=True).hidden_states[-2]
        diff = (encoder(pixels[None])[0] - expected).abs().max().item()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}, {dtype}, "
          f"batch {args.batch}, {args.layers} layers; max abs diff avlm vs hidden_states[-2]: {diff:.3g}")
    base = images_per_second(lambda x: baseline(x, output_hidden_states=True).hidden_states[-2], pixels,
                             args.repeats, args.device)
    print(f"HF SiglipVisionModel: {base:8.1f} images/s")
    runs = {"avlm encoder": lambda x: encoder(x[None])}
    if args.compile:
        compiled = torch.compile(encoder)
        runs["avlm encoder + compile"] = lambda x: compiled(x[None])
    for name, run in runs.items():
        rate = images_per_second(run, pixels, args.repeats, args.device)
        print(f"{name}: {rate:8.1f} images/s ({rate / base:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
