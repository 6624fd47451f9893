"""Training speed on a shared CPU: torch threads and OpenMP's wait policy against other busy processes, in one run.

    python benchmarks/bench_threads_contention.py [--steps 12] [--busy 0,2,6] [--threads 1,2]

Each measurement is a fresh process (OpenMP reads its settings once, at start) that trains cnn9 at width 0.25
(fp32, NCHW, batch 128 of random 32x32 images) for ``--steps`` steps after two warm-up steps, while ``busy``
other processes spin on the CPU (a shared login node, a laptop running a browser). Printed: images/s for every
(busy, threads, wait policy), and each setting's speed relative to the default (all usable CPUs, OpenMP's
default active waiting) under the same load. What the default should be follows from these ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKER = r"""
import json, sys, time
import torch
import torch.nn.functional as F
from robustbench_dc.models import create_model
torch.set_num_threads(int(sys.argv[1]))
steps = int(sys.argv[2])
torch.manual_seed(0)
model = create_model("baseline", width=0.25, in_channels=3, input_size=32)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x, y = torch.rand(128, 3, 32, 32), torch.randint(0, 10, (128,))
def step():
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
for _ in range(2):
    step()
t0 = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps({"images_per_s": steps * 128 / (time.perf_counter() - t0)}))
"""


def spin() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(threads: int, policy: str | None, steps: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(threads), str(steps)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--busy", default="0,2,6", help="numbers of spinning processes beside the training")
    parser.add_argument("--threads", default="1,2", help="torch thread counts to try")
    args = parser.parse_args()
    from robustbench_dc.devices import usable_cpus

    cpus = usable_cpus()
    threads = [int(t) for t in args.threads.split(",")]
    print(f"usable CPUs {cpus}; load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'busy':>4} {'threads':>7} {'wait':>8} {'images/s':>9} {'vs default':>10}")
    for busy in [int(b) for b in args.busy.split(",")]:
        spinners = [spin() for _ in range(busy)]
        time.sleep(1.0)
        try:
            rates = {(t, p): measure(t, p, args.steps) for t in threads for p in (None, "PASSIVE")}
        finally:
            for s in spinners:
                s.kill()
                s.wait()
        default = rates[(cpus, None)] if (cpus, None) in rates else rates[(max(threads), None)]
        for (t, p), rate in rates.items():
            print(f"{busy:>4} {t:>7} {p or 'default':>8} {rate:>9.0f} {rate / default:>10.2f}")


if __name__ == "__main__":
    main()
