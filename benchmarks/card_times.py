"""Whole-training times from checkpoint cards, and each network's ratio to the baseline trained beside it.

    python benchmarks/card_times.py reports/paper-cpu/models [--seed 2]

Read from the cards' own ``wall_time_s`` and per-epoch history (each training's time where it ran, on whatever
machine and load its card's README names), so it needs no rerun: one row per card with its median epoch, median
robustness check and whole training time, and the ratio of that time to the baseline's of the same training
regime, epochs, width and seed (the decoupled networks' cost against plain convolution, recipe for recipe).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from robustbench_dc.workspace import CARD_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", help="a models/ folder (a workspace's, or a committed report's)")
    parser.add_argument("--seed", type=int, help="only the cards of this training seed")
    args = parser.parse_args()
    cards = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(args.models).rglob(CARD_FILE))]
    cards = [c for c in cards if args.seed is None or c["seed"] == args.seed]

    def recipe(c: dict) -> tuple:
        return c["training"]["regime"], c["epochs"], c["train_config"]["width"], c["seed"]

    baseline = {recipe(c): c["wall_time_s"] for c in cards if c["model"]["name"] == "baseline"}
    print(
        f"{'model':12s} {'training':9s} {'epochs':>6s} {'seed':>4s} {'median epoch':>12s} {'check':>6s} "
        f"{'training':>9s} {'/ baseline':>10s}"
    )
    for c in sorted(cards, key=lambda c: (recipe(c), c["model"]["name"] != "baseline", c["model"]["name"])):
        epoch = statistics.median(e["seconds"] for e in c["history"])
        check = statistics.median(e.get("robustness", {}).get("seconds", 0.0) for e in c["history"])
        ratio = c["wall_time_s"] / baseline[recipe(c)] if recipe(c) in baseline else float("nan")
        print(
            f"{c['model']['name']:12s} {c['training']['regime']:9s} {c['epochs']:>6d} {c['seed']:>4d} "
            f"{epoch:>10.1f} s {check:>4.1f} s {c['wall_time_s'] / 60:>5.1f} min {ratio:>10.2f}"
        )


if __name__ == "__main__":
    main()
