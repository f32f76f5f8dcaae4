"""Peak memory of one video through the model as the frame count grows: the streaming ``memory_bank`` connector
against connectors that read every frame at once (``ccam`` at the same token count, ``stc_connector_v35``).

Each (connector, frame count) is measured two ways:

- ``torch``: the peak of the bytes held by torch's CPU allocator during the call, above what was held before it
  (``torch.profiler`` with ``profile_memory=True`` records every allocation and free in order; the running sum of
  their sizes peaks at the answer). The inputs are made before the call and are not counted. Exact and
  deterministic; blind to memory that does not go through torch's allocator (there is almost none in a forward).
- ``rss`` (``--rss``): the largest resident set of a fresh process that builds the model and makes one call
  (``VmHWM`` of ``/proc/self/status``, which starts afresh at ``exec``; ``getrusage``'s ``ru_maxrss`` would carry
  the parent's peak over): everything (Python, torch, weights, inputs), coarser than ``torch``.

``--mode infer`` runs the forward under ``torch.no_grad()`` (captioning); ``--mode train`` runs forward and backward
with the LLM and the connector trained (the encoder frozen, as the recipes do).

    python scripts/bench_temporal_memory.py                                  # avlm-tiny-mbank shape, 8/64/512 frames
    python scripts/bench_temporal_memory.py --preset avsynth-100m --frames 8 64 --mode train --rss
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile

from avlm.modeling.configuration import AVLMConfig, ConnectorSpec
from avlm.modeling.model import AVLMForCausalLM
from avlm.modeling.trainable import TrainablePolicy, set_trainable
from fusion import MemoryBankConnector

CONNECTORS = ("memory_bank", "ccam", "stc_connector_v35")
"""memory_bank takes the preset's options (or its defaults); ccam gets as many queries as the memory bank has tokens,
so the two differ only in how they read the frames; stc_connector_v35's tokens grow with the frames."""


def peak_allocated_bytes(call: Callable[[], Any]) -> int:
    """Peak bytes held by torch's CPU allocator during ``call()``, above the bytes held when it starts."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    sizes: list[tuple[int, int]] = []
    nodes = list(prof.profiler.kineto_results.experimental_event_tree())
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children)
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            sizes.append((node.start_time_ns, node.extra_fields.alloc_size))
    held = peak = 0
    for _, size in sorted(sizes):
        held += size
        peak = max(peak, held)
    return peak


def build(preset: str, connector: str) -> AVLMForCausalLM:
    """The preset's model with ``connector`` as its video connector (random init, seed 0)."""
    config = AVLMConfig.from_preset(preset)
    preset_video = config.connectors["video"]
    bank = dict(preset_video.options) if preset_video.name == "memory_bank" else {}
    options = {"memory_bank": bank, "ccam": {"num_queries": MemoryBankConnector(8, 8, **bank).num_queries},
               "stc_connector_v35": {}}[connector]
    connectors = {**config.connectors, "video": ConnectorSpec(connector, options)}
    torch.manual_seed(0)
    return AVLMForCausalLM(AVLMConfig.from_preset(preset, connectors=connectors))


def one_call(model: AVLMForCausalLM, frames: int, mode: str) -> Callable[[], Any]:
    """A video of ``frames`` frames and a short prompt; returns the call to measure (its inputs already made)."""
    side = model.encoders["video"].image_size
    pixels = torch.randn(1, frames, 3, side, side)
    video = model.config.placeholder_token_ids["video"]
    input_ids = torch.tensor([[20, 21, video, 22, 23, 24]])
    if mode == "infer":
        model.eval()
        return lambda: _infer(model, input_ids, pixels)
    set_trainable(model, TrainablePolicy(llm="full", encoders={m: "frozen" for m in model.encoders}))
    model.train()
    model.zero_grad(set_to_none=True)  # every measured call allocates its gradients afresh
    return lambda: model(input_ids=input_ids, video_pixels=pixels, labels=input_ids).loss.backward()


def _infer(model: AVLMForCausalLM, input_ids: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids, video_pixels=pixels).logits


def measure_rss(preset: str, connector: str, frames: int, mode: str) -> int:
    """Peak resident set (bytes) of a fresh process that builds the model and makes one call."""
    code = (f"import sys; sys.argv = ['x', '--child', '{preset}', '{connector}', '{frames}', '{mode}']; "
            "import bench_temporal_memory as b; b.main()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=__file__.rsplit("/", 1)[0])
    return json.loads(out.stdout.strip().splitlines()[-1])["rss"]


def _child(preset: str, connector: str, frames: int, mode: str) -> None:
    torch.set_num_threads(1)
    one_call(build(preset, connector), frames, mode)()
    status = Path("/proc/self/status").read_text()
    print(json.dumps({"rss": int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) * 1024}))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[2], int(argv[3]), argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="avlm-tiny-mbank", help="model shape (a preset name)")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 64, 512])
    parser.add_argument("--connectors", nargs="+", default=list(CONNECTORS), choices=CONNECTORS)
    parser.add_argument("--mode", choices=["infer", "train"], default="infer")
    parser.add_argument("--rss", action="store_true", help="also measure max RSS, one fresh process per run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"preset {args.preset}, mode {args.mode}, torch {torch.__version__}, 1 thread")
    print(f"{'connector':>18} {'frames':>6} {'video tokens':>12} {'torch peak MiB':>14} {'rss MiB':>8} {'s':>6}")
    for connector in args.connectors:
        model = build(args.preset, connector)
        for frames in args.frames:
            tokens = model.num_media_tokens(frames)["video"]
            call = one_call(model, frames, args.mode)
            start = time.perf_counter()
            peak = peak_allocated_bytes(call)
            seconds = time.perf_counter() - start
            rss = f"{measure_rss(args.preset, connector, frames, args.mode) / 2**20:8.1f}" if args.rss else f"{'-':>8}"
            print(f"{connector:>18} {frames:>6} {tokens:>12} {peak / 2**20:>14.2f} {rss} {seconds:>6.1f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
