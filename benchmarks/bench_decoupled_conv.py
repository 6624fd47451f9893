"""Forward+backward time of DecoupledConv2d (tanh, cos) against nn.Conv2d of the same shape, in one run.

    python benchmarks/bench_decoupled_conv.py [--batch 128] [--repeats 10]

Prints both medians and their ratio (goal: at most 1.25).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from robustbench_dc.ops import DecoupledConv2d


def time_fwd_bwd(layer: nn.Module, x: torch.Tensor, repeats: int) -> float:
    times = []
    for i in range(repeats + 2):
        x.grad = None
        layer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        layer(x).sum().backward()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 64, 32, 32, requires_grad=True)
    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False)
    dc = DecoupledConv2d(64, 64, 3, padding=1, bias=False, magnitude="tanh", angular="cos", relative_rho=True)
    # interleave to share whatever the machine is doing
    t_conv, t_dc = [], []
    for _ in range(3):
        t_conv.append(time_fwd_bwd(conv, x, args.repeats))
        t_dc.append(time_fwd_bwd(dc, x, args.repeats))
    conv_s, dc_s = min(t_conv), min(t_dc)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, input {tuple(x.shape)}")
    print(f"nn.Conv2d            fwd+bwd {conv_s * 1e3:8.1f} ms")
    print(f"DecoupledConv2d tanh fwd+bwd {dc_s * 1e3:8.1f} ms")
    print(f"ratio {dc_s / conv_s:.3f} (goal <= 1.25)")


if __name__ == "__main__":
    main()
