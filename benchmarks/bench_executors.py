"""A preset end to end on the local executor and on the Ray executor (a local Ray instance), in fresh workspaces.

    python benchmarks/bench_executors.py [--preset smoke] [--cpus 2] [--cpus-per-task 1]

Prints both wall times, the ratio (Ray over local: the overhead, or the speed-up where tasks run in parallel),
and whether the two runs gave the same weights and the same result cells (they must).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from robustbench_dc.executors import LocalExecutor, RayExecutor
from robustbench_dc.reproduce import reproduce
from robustbench_dc.results.store import ResultStore


def _state(ws: Path) -> tuple[dict[str, str], dict[str, dict]]:
    import json

    weights = {
        str(p.parent.relative_to(ws)): json.loads(p.read_text())["weights"]["sha256"]
        for p in (ws / "models").rglob("card.json")
    }
    with ResultStore(ws) as store:
        cells = {c.key.store_key(): c.metrics for c in store.cells()}
    return weights, cells


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="smoke")
    p.add_argument(
        "--cpus", type=int, default=2, help="CPUs of the local Ray instance (and torch threads of the local run)"
    )
    p.add_argument("--cpus-per-task", type=int, default=1)
    args = p.parse_args()

    torch.set_num_threads(args.cpus)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        reproduce(args.preset, workspace=Path(tmp) / "local", executor=LocalExecutor(), device="cpu")
        local = time.perf_counter() - t0
        t0 = time.perf_counter()
        executor = RayExecutor(cpus_per_task=args.cpus_per_task, init_options={"num_cpus": args.cpus})
        reproduce(args.preset, workspace=Path(tmp) / "ray", executor=executor, device="cpu")
        ray = time.perf_counter() - t0
        a, b = _state(Path(tmp) / "local"), _state(Path(tmp) / "ray")
    print(
        f"preset {args.preset}, {args.cpus} CPUs, Ray tasks of {args.cpus_per_task} CPU(s), torch {torch.__version__}"
    )
    print(f"local executor: {local:.0f} s")
    print(f"Ray executor:   {ray:.0f} s (ratio Ray / local: {ray / local:.2f})")
    print(f"same weights: {a[0] == b[0]} ({len(a[0])} checkpoints); same cells: {a[1] == b[1]} ({len(a[1])} cells)")


if __name__ == "__main__":
    main()
