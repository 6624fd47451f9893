"""Training steps with the allocator keeping freed memory (``devices.keep_freed_memory``) against glibc's default.

    python benchmarks/bench_freed_memory.py [--models baseline,tanhconv] [--training fgsm] [--width 0.5]
        [--batch 512] [--steps 8] [--rounds 2] [--channels-last auto|yes|no]

The switch is process-wide and cannot be undone, so each side runs in a process of its own, the two alternating
round by round (both see the same machine load). Each process trains ``--steps`` warm-up steps, then times
``--steps`` more of ``robustbench_dc.train``'s step (``batch_step`` in the mode ``train`` chooses for this device,
the fast recipe's optimiser) on random CIFAR-10-shaped images, and reports images per second, the kernel's share of
its CPU time and the page faults per image. Prints the median of the rounds and the ratio kept/default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

WORKER = r"""
import json, resource, sys, time
import torch
import robustbench_dc.devices as D
import robustbench_dc.train as T
from robustbench_dc.data import INFOS, ImageDataset
name, training, width, batch, steps, kept, layout = sys.argv[1:8]
width, batch, steps = float(width), int(batch), int(steps)
if kept == "0":
    T.keep_freed_memory = D.keep_freed_memory = lambda: False  # glibc's default allocator behaviour
config = T.recipe_config("fast", model=name, dataset="cifar10", width=width, training=training, batch_size=batch,
                         channels_last={"auto": None, "yes": True, "no": False}[layout])
g = torch.Generator().manual_seed(0)
n = batch * steps
data = ImageDataset(INFOS["cifar10"], "train", torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                    torch.randint(0, 10, (n,), generator=g), "random")
model = T.build(config)
mode = T.place_for_training(model, config, torch.device("cpu"))
model.train()
opt, sched = T._optimizer_and_schedule(model, config, steps)
def run():
    for idx in torch.arange(n).split(batch):
        T.batch_step(model, data, idx, config, True, g, mode, opt, None)
run()  # warm-up
r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
run()
dt, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(json.dumps({"img_s": n / dt, "kernel_share": (r1.ru_stime - r0.ru_stime) / cpu,
                  "faults_per_image": (r1.ru_minflt - r0.ru_minflt) / n, "mode": f"{mode.precision}, "
                  f"{'channels-last' if mode.channels_last else 'NCHW'}, threads {torch.get_num_threads()}"}))
"""


def worker(args: argparse.Namespace, name: str, kept: bool) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            name,
            args.training,
            str(args.width),
            str(args.batch),
            str(args.steps),
            str(int(kept)),
            args.channels_last,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="baseline,tanhconv")
    parser.add_argument("--training", default="fgsm")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--channels-last", default="auto", choices=["auto", "yes", "no"], help="default: as train chooses"
    )
    args = parser.parse_args()
    for name in args.models.split(","):
        runs: dict[bool, list[dict]] = {True: [], False: []}
        for _ in range(args.rounds):
            for kept in (False, True):
                runs[kept].append(worker(args, name, kept))
        med = {
            k: {f: statistics.median(r[f] for r in v) for f in ("img_s", "kernel_share", "faults_per_image")}
            for k, v in runs.items()
        }
        print(f"{name} {args.training}, cnn9 width {args.width:g}, batch {args.batch} ({runs[True][0]['mode']}):")
        for kept, label in ((False, "glibc default"), (True, "freed memory kept")):
            m = med[kept]
            print(
                f"  {label:18s} {m['img_s']:6.0f} img/s (rounds {[round(r['img_s']) for r in runs[kept]]}), kernel "
                f"{m['kernel_share']:.0%} of CPU time, {m['faults_per_image']:.0f} page faults per image"
            )
        print(f"  ratio kept/default {med[True]['img_s'] / med[False]['img_s']:.2f}", flush=True)


if __name__ == "__main__":
    main()
