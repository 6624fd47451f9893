"""The command line's thread default on a shared CPU: a real training, idle and beside busy processes, in one run.

    python benchmarks/bench_threads_default.py [--busy 0,1,3] [--epochs 3] [--repeats 2]

Each measurement is a fresh ``dc-robust train --model tanhconv --dataset digits --width 0.25`` (its own empty
workspace, so nothing is reused) while ``busy`` other processes spin on the CPU, once with the default threads and
once with every usable CPU pinned (``--threads N``, the default before it followed the load). Printed: wall seconds
(the median of ``--repeats``), the threads the card records, and each run's time relative to the same setting on
an idle machine; a fair share of the cores (every runnable thread scheduled alike, ``cores`` of them the training's)
would make that (busy + cores) / cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_threads_contention import spin


def train_once(threads: int | None, epochs: int) -> tuple[float, int]:
    """Wall seconds of one training in a fresh process and workspace, and the threads its card records."""
    with tempfile.TemporaryDirectory() as ws:
        cmd = [sys.executable, "-m", "robustbench_dc.cli", "train", "--model", "tanhconv", "--dataset", "digits"]
        cmd += ["--width", "0.25", "--epochs", str(epochs), "--workspace", ws, "--no-progress"]
        cmd += [] if threads is None else ["--threads", str(threads)]
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - t0
        card = json.loads(next(Path(ws).rglob("card.json")).read_text())
    return seconds, card["compute"]["threads"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", default="0,1,3", help="numbers of spinning processes beside the training")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from robustbench_dc.devices import usable_cpus

    cpus = usable_cpus()
    settings = {"default": None, f"--threads {cpus}": cpus}
    print(f"usable CPUs {cpus}; load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'busy':>4} {'setting':>12} {'threads':>7} {'seconds':>8} {'vs idle':>8} {'fair share':>10}")
    idle: dict[str, float] = {}
    for busy in [int(b) for b in args.busy.split(",")]:
        spinners = [spin() for _ in range(busy)]
        time.sleep(1.0)
        try:
            for name, threads in settings.items():
                runs = [train_once(threads, args.epochs) for _ in range(args.repeats)]
                seconds = statistics.median(s for s, _ in runs)
                used = "/".join(sorted({str(t) for _, t in runs}))
                if busy == 0:
                    idle[name] = seconds
                ratio = f"{seconds / idle[name]:.2f}" if name in idle else "-"
                fair = (busy + cpus) / cpus
                print(f"{busy:>4} {name:>12} {used:>7} {seconds:>8.1f} {ratio:>8} {fair:>10.2f}")
        finally:
            for s in spinners:
                s.kill()
                s.wait()


if __name__ == "__main__":
    main()
