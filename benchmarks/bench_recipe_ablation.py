"""What each ingredient of the fast recipe buys: the recipe whole, then with one ingredient taken out at a time.

    python benchmarks/bench_recipe_ablation.py --data-dir DIR [--model baseline] [--width 0.25] [--epochs 10]
        [--only NAME,...] [--workspace WS]

The last variant takes every ingredient out at once (the standard recipe at the same number of epochs), which
tells the recipe's effect apart from that of training longer. Each variant trains one network (cnn9, CIFAR-10,
training seed 0, all 50,000 training images) in a workspace of its own under ``--workspace`` (default: a temporary
directory; an interrupted run resumes there; the decoded images are shared, so only the first variant pays for
decoding them), and prints its clean accuracy on all 10,000 test images, its training wall time and its mean
training rate, from the card, and its wall time as a ratio of the first variant's in the same run. One seed per
variant: differences under about 0.5 points are within seed noise.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from robustbench_dc.checkpoint import read_card
from robustbench_dc.train import RECIPES, TrainConfig, recipe_config, train
from robustbench_dc.workspace import cache_dir

#: each variant: the settings that replace the fast recipe's (the first is the recipe itself)
VARIANTS: dict[str, dict] = {
    "fast": {},
    "no dirac init": {"init": "default"},
    "no weight EMA": {"ema_decay": 0.0},
    "onecycle schedule": {"schedule": "onecycle", "warmup": 0.25},
    "batch 128 at lr 0.1": {"batch_size": 128, "lr": 0.1},
    "+ label smoothing 0.2": {"label_smoothing": 0.2},
}
#: every ingredient out at once: the standard recipe, for as many epochs
VARIANTS["standard recipe"] = {
    k: getattr(TrainConfig(model="baseline", dataset="cifar10"), k) for k in RECIPES["fast"] if k != "epochs"
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="CIFAR-10 (torchvision batches or train/ and test/ folders)")
    parser.add_argument("--model", default="baseline")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    parser.add_argument("--workspace", default=None, help="parent of the variants' workspaces")
    args = parser.parse_args()
    root = Path(args.workspace or tempfile.mkdtemp(prefix="bench-ablation-"))
    wanted = [v.strip() for v in args.only.split(",") if v.strip()] or list(VARIANTS)
    unknown = [v for v in wanted if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    print(f"{args.model} cnn9 width {args.width:g}, {args.epochs} epochs, seed 0; workspaces under {root}")
    print(f"{'variant':24s} {'clean %':>8s} {'wall s':>8s} {'img/s':>7s} {'time / first':>12s}")
    first: float | None = None
    for name in wanted:
        config = recipe_config(
            "fast", model=args.model, dataset="cifar10", width=args.width, epochs=args.epochs, **VARIANTS[name]
        )
        workspace = root / name.replace(" ", "-")
        workspace.mkdir(parents=True, exist_ok=True)
        (root / "cache").mkdir(exist_ok=True)
        if not cache_dir(workspace).exists():
            cache_dir(workspace).symlink_to(root / "cache", target_is_directory=True)
        card = read_card(train(config, workspace=workspace, data_dir=args.data_dir))
        rate = sum(h["images_per_s"] for h in card.history) / len(card.history)
        wall = float(card.wall_time_s or 0)
        first = first or wall
        print(
            f"{name:24s} {100 * card.clean_test_accuracy:8.2f} {wall:8.0f} {rate:7.0f} {wall / first:12.2f}", flush=True
        )


if __name__ == "__main__":
    main()
