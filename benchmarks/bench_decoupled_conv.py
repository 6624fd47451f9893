"""Forward+backward time of DecoupledConv2d (tanh, cos) against nn.Conv2d of the same shape, in one run,
for each layout (NCHW, channels-last) and precision (fp32, bf16 autocast where supported).

    python benchmarks/bench_decoupled_conv.py [--batch 128] [--repeats 10] [--channels 64] [--compile]

In the bf16 modes the input itself is bf16 (what a layer inside a bf16 network gets). Prints both times and their ratio
per mode (goal: at most 1.25 in the default training mode); with
``--compile`` also DecoupledConv2d through ``torch.compile`` (what ``TrainConfig.compile`` does to a network).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from robustbench_dc.devices import bf16_supported
from robustbench_dc.ops import DecoupledConv2d


def time_fwd_bwd(layer: nn.Module, x: torch.Tensor, repeats: int, bf16: bool) -> float:
    times = []
    for i in range(repeats + 2):
        x.grad = None
        layer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = layer(x)
        y.float().sum().backward()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="also time DecoupledConv2d through torch.compile")
    args = parser.parse_args()
    torch.manual_seed(0)
    c = args.channels
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, input ({args.batch}, {c}, 32, 32), CPU")
    for bf16 in (False, True) if bf16_supported(torch.device("cpu")) else (False,):
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            # In bf16 the input is bf16, as every layer but the first of a bf16 network receives it.
            x = (
                torch.randn(args.batch, c, 32, 32, dtype=torch.bfloat16 if bf16 else torch.float32)
                .contiguous(memory_format=fmt)
                .requires_grad_(True)
            )
            conv = nn.Conv2d(c, c, 3, padding=1, bias=False).to(memory_format=fmt)
            dc = DecoupledConv2d(c, c, 3, padding=1, bias=False, magnitude="tanh", angular="cos", relative_rho=True).to(
                memory_format=fmt
            )
            compiled = torch.compile(dc) if args.compile else None
            t_conv, t_dc, t_compiled = [], [], []
            for _ in range(3):  # interleave to share whatever the machine is doing
                t_conv.append(time_fwd_bwd(conv, x, args.repeats, bf16))
                t_dc.append(time_fwd_bwd(dc, x, args.repeats, bf16))
                if compiled is not None:
                    t_compiled.append(time_fwd_bwd(compiled, x, args.repeats, bf16))
            conv_s, dc_s = min(t_conv), min(t_dc)
            mode = f"{'bf16' if bf16 else 'fp32'}, {'channels-last' if channels_last else 'NCHW'}"
            line = f"{mode:20s} nn.Conv2d {conv_s * 1e3:7.1f} ms  DecoupledConv2d tanh {dc_s * 1e3:7.1f} ms  "
            line += f"ratio {dc_s / conv_s:.3f} (goal <= 1.25)"
            if t_compiled:
                line += f" | compiled {min(t_compiled) * 1e3:7.1f} ms  ratio {min(t_compiled) / conv_s:.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
