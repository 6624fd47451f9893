"""Where a study's evaluation time goes: the compute seconds its store records per model and per kind of cell.

    python benchmarks/study_cell_times.py reports/paper-cpu [--dataset cifar10] [--top 8]

Read from the cells' own ``seconds`` (each cell's compute time where it was computed, on whatever machine and
load its provenance names), so it needs no rerun: per evaluated function, its model, its total minutes and
the cells that cost most, grouped by role, attack and number of test images.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from robustbench_dc.results.query import Results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", help="a workspace (or a committed report folder) holding results.sqlite")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--top", type=int, default=8, help="cell groups shown per model")
    args = parser.parse_args()
    per: dict[str, dict[tuple[str, str, int], float]] = defaultdict(lambda: defaultdict(float))
    titles = {}
    for e in Results.load(args.workspace, args.dataset).entries:
        per[e.key.function][(e.key.role, e.key.attack, e.key.subset.n)] += e.cell.seconds
        titles[e.key.function] = e.model.title
    for function, groups in sorted(per.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(groups.values())
        print(f"{titles[function]} ({function[:8]}): {total / 60:.1f} min in {len(groups)} groups")
        for (role, attack, n), seconds in sorted(groups.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"    {role:16s} {attack:14s} {n:>6} images {seconds / 60:6.1f} min ({100 * seconds / total:4.1f}%)")


if __name__ == "__main__":
    main()
