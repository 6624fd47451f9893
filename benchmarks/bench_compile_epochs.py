"""Epoch times of a real training, eager against ``compile=True``, with a last batch smaller than the others.

    python benchmarks/bench_compile_epochs.py --data-dir DIR [--model tanhconv] [--epochs 3] [--workspace WS]

Trains the same network twice (cnn9 width 0.25 on 20 full batches of 128 CIFAR-10 images and one of 80), in
two fresh workspaces under ``--workspace``, and prints each epoch's seconds and images per second from the
cards. The first compiled epoch includes compiling; the later ones show whether the compiled graphs stay fast
when batch sizes differ.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from robustbench_dc.checkpoint import read_card
from robustbench_dc.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", required=True, help="CIFAR-10 (torchvision batches or train/ and test/ image folders)"
    )
    parser.add_argument("--model", default="tanhconv")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--workspace", default=None, help="parent of the two workspaces (default: a temporary directory)"
    )
    args = parser.parse_args()
    root = Path(args.workspace or tempfile.mkdtemp(prefix="bench-compile-"))
    for compile_ in (False, True):
        config = TrainConfig(
            model=args.model,
            dataset="cifar10",
            width=0.25,
            epochs=args.epochs,
            batch_size=128,
            train_subset=128 * 20 + 80,
            recalibration_batches=1,
            compile=compile_,
        )
        card = read_card(train(config, workspace=root / ("compiled" if compile_ else "eager"), data_dir=args.data_dir))
        seconds = ", ".join(f"{h['seconds']:.2f} s ({h['images_per_s']:.0f} img/s)" for h in card.history)
        print(f"{args.model} {card.compute['compile']:28s} epochs: {seconds}", flush=True)


if __name__ == "__main__":
    main()
