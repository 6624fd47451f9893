"""Where a study's evaluation time goes: the compute seconds its store records per model and per kind of cell.

    python benchmarks/study_cell_times.py reports/paper-cpu/results.sqlite [--top 8]

Read from the cells' own ``seconds`` (each cell's compute time where it was computed, on whatever machine and
load its provenance names), so it needs no rerun: per evaluated function, its label, its total minutes and
the cells that cost most, grouped by role, attack and number of test images.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections import defaultdict

from robustbench_dc.model_info import ModelInfo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="a results.sqlite")
    parser.add_argument("--top", type=int, default=8, help="cell groups shown per model")
    args = parser.parse_args()
    with sqlite3.connect(f"file:{args.store}?mode=ro", uri=True) as db:
        functions = db.execute("SELECT function, info FROM functions").fetchall()
        labels = {f: ModelInfo.from_dict(json.loads(info)).title for f, info in functions}
        rows = db.execute("SELECT function, role, identity, seconds FROM cells").fetchall()
    per: dict[str, dict[tuple[str, str, int], float]] = defaultdict(lambda: defaultdict(float))
    for function, role, identity, seconds in rows:
        key = json.loads(identity)
        per[function][(role, key["attack"], key["subset"]["n"])] += seconds
    for function, groups in sorted(per.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(groups.values())
        print(f"{labels.get(function, function[:12])} ({function[:8]}): {total / 60:.1f} min in {len(groups)} groups")
        for (role, attack, n), seconds in sorted(groups.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"    {role:16s} {attack:14s} {n:>6} images {seconds / 60:6.1f} min ({100 * seconds / total:4.1f}%)")


if __name__ == "__main__":
    main()
