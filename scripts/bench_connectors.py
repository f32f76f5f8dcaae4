"""STC connector benchmark: avlm's ``stc_connector_v35`` vs a reference-style build, side by side, same weights.

The baseline is written the way the reference builds the connector (timm ``RegStage`` blocks on NCHW tensors,
``LayerNorm2d`` as permute -> layer_norm -> permute on a channels-first map, readout MLP). avlm runs the same
function channels-last, where the norm's permute is a free view. Both get the same weights; the script prints the
max abs difference of their outputs, then median forward and forward+backward times, peak memory and the ratio.

    python scripts/bench_connectors.py --device cuda --dtype bf16 --shape real   # 4 x 16 x 27x27x1152 -> 3584
    python scripts/bench_connectors.py                                           # CPU, reduced shape
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from fusion.stc import STCConnectorV35

_MODULES: list[nn.Module] = []  # every module under test, so timings start from the same memory state
SHAPES = {"real": dict(batch=4, frames=16, side=27, input_dim=1152, output_dim=3584),
          "reduced": dict(batch=1, frames=8, side=9, input_dim=256, output_dim=512)}


class _ReferenceLayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class _ReferenceConvNorm(nn.Module):
    def __init__(self, cin, cout, k=1, groups=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False)
        self.bn = _ReferenceLayerNorm2d(cout, eps=1e-5)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class _ReferenceSE(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

    def forward(self, x):
        return x * self.fc2(F.silu(self.fc1(x.mean((2, 3), keepdim=True)))).sigmoid()


class _ReferenceBottleneck(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = _ReferenceConvNorm(cin, cout)
        self.conv2 = _ReferenceConvNorm(cout, cout, 3, groups=cout)
        self.se = _ReferenceSE(cout, int(round(cin * 0.25)))
        self.conv3 = _ReferenceConvNorm(cout, cout, act=False)
        self.downsample = _ReferenceConvNorm(cin, cout, act=False) if cin != cout else None

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.silu(self.conv3(self.se(self.conv2(self.conv1(x)))) + shortcut)


class ReferenceSTC(nn.Module):
    """The connector as the reference assembles it (NCHW throughout); same key names as avlm's."""

    def __init__(self, cin, cout, depth=4):
        super().__init__()
        self.s1 = nn.Sequential()
        self.s2 = nn.Sequential()
        for i in range(depth):
            self.s1.add_module(f"b{i + 1}", _ReferenceBottleneck(cin if i == 0 else cout, cout))
            self.s2.add_module(f"b{i + 1}", _ReferenceBottleneck(cout, cout))
        self.sampler = nn.Sequential(nn.Conv3d(cout, cout, 2, stride=2, padding=0), nn.SiLU())
        self.readout = nn.Sequential(nn.Linear(cout, cout), nn.GELU(), nn.Linear(cout, cout))

    def forward(self, x):
        b, t, n, d = x.shape
        side = int(n ** 0.5)
        x = rearrange(x, "b t (h w) d -> (b t) d h w", h=side)
        x = self.s1(x)
        x = rearrange(x, "(b t) d h w -> b d t h w", b=b)
        x = self.sampler(x)
        t2 = x.shape[2]
        x = rearrange(x, "b d t h w -> (b t) d h w")
        x = self.s2(x)
        x = rearrange(x, "(b t) d h w -> b (t h w) d", b=b, t=t2)
        return self.readout(x)


def _time(module, x, backward: bool, repeats: int, device: str) -> tuple[float, float]:
    """Median ms of one step and peak GiB, with every other module's gradients freed first."""
    for other in _MODULES:
        other.zero_grad(set_to_none=True)
    x.grad = None

    def step():
        x.grad = None
        out = module(x)
        if backward:
            out.float().sum().backward()
    for _ in range(2):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return statistics.median(times) * 1000, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default=None, help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None, help="default: real on cuda, reduced on cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="also time avlm's connector under torch.compile")
    args = parser.parse_args()
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype or ("bf16" if args.device == "cuda" else "fp32")]
    shape = SHAPES[args.shape or ("real" if args.device == "cuda" else "reduced")]
    torch.manual_seed(0)
    avlm = STCConnectorV35(shape["input_dim"], shape["output_dim"]).to(args.device, dtype)
    baseline = ReferenceSTC(shape["input_dim"], shape["output_dim"]).to(args.device, dtype)
    baseline.load_state_dict(avlm.state_dict(), strict=True)
    _MODULES.extend([avlm, baseline])
    x = torch.randn(shape["batch"], shape["frames"], shape["side"] ** 2, shape["input_dim"], device=args.device,
                    dtype=dtype, requires_grad=True)
    params = sum(p.numel() for p in avlm.parameters())
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}, "
          f"{dtype}, input {tuple(x.shape)}, {params / 1e6:.1f}M parameters")
    with torch.no_grad():
        out_a, out_b = avlm(x), baseline(x)
    print(f"output {tuple(out_a.shape)}, max abs diff avlm vs baseline {(out_a - out_b).abs().max().item():.3g}")
    candidates = {"avlm": avlm}
    if args.compile:
        candidates["avlm+compile"] = torch.compile(avlm)
    for label, backward in (("forward", False), ("forward+backward", True)):
        with torch.set_grad_enabled(backward):
            base_ms, base_peak = _time(baseline, x, backward, args.repeats, args.device)
            for name, module in candidates.items():
                ms, peak = _time(module, x, backward, args.repeats, args.device)
                print(f"{label:17s} baseline {base_ms:8.1f} ms ({base_peak:5.1f} GiB) | {name} {ms:8.1f} ms "
                      f"({peak:5.1f} GiB) | time avlm/baseline {ms / base_ms:4.2f} (speed-up {base_ms / ms:4.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
