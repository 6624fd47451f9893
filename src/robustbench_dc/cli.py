"""``dc-robust``: a thin command line over the library; it parses, calls, prints and draws progress bars."""

from __future__ import annotations

import argparse
import logging
import sys
from fractions import Fraction
from typing import Any, Callable

from robustbench_dc import __version__
from robustbench_dc.errors import UserError

log = logging.getLogger("robustbench_dc")


def parse_fraction(text: str) -> float:
    """``8/255``, ``0.03`` or ``1e-2`` as a float."""
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError) as exc:
        raise argparse.ArgumentTypeError(f"not a number or fraction: {text!r}") from exc


def parse_eps_list(text: str) -> list[float]:
    values = [parse_fraction(t) for t in text.split(",") if t.strip()]
    if not values:
        raise argparse.ArgumentTypeError("give at least one epsilon, e.g. 2/255,8/255")
    bad = [v for v in values if not 0 <= v <= 1]
    if bad:
        raise argparse.ArgumentTypeError(f"epsilons must be in [0, 1] (pixel units, e.g. 8/255), got {bad}")
    return values


def parse_n(text: str) -> int | None:
    if text == "all":
        return None
    try:
        n = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--n takes a positive integer or 'all', got {text!r}") from exc
    if n < 1:
        raise argparse.ArgumentTypeError(f"--n must be >= 1, got {n}")
    return n


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", help="directory for models, results and reports (default: $DC_ROBUST_WORKSPACE or ./dc-robust-workspace)")
    p.add_argument("--data-dir", help="where the dataset lives (CIFAR-10: torchvision batches or train/ and test/ image folders)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true")


def _add_train(sub) -> None:
    from robustbench_dc.data import DATASETS
    from robustbench_dc.train import REGIMES, SCHEDULES

    p = sub.add_parser("train", help="train a zoo model naturally or adversarially into the model store")
    _common(p)
    p.add_argument("--model", required=True, help="zoo model, e.g. baseline, tanhconv, ballconv-sqcos (see dc-robust models --zoo)")
    p.add_argument("--arch", default="cnn9")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--dataset", required=True, choices=[d for d in DATASETS if d != "synthetic"])
    p.add_argument("--training", default="natural", choices=REGIMES)
    p.add_argument("--eps", type=parse_fraction, default=8 / 255, help="adversarial training epsilon (default 8/255)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--schedule", default="onecycle", choices=SCHEDULES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-subset", type=int, default=None, help="train on this many images (a fixed seeded subset)")
    p.add_argument("--weight-projection", action="store_true", help="renormalise decoupled kernels after every step")
    p.add_argument("--download", action="store_true", help="allow downloading the dataset")


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the trained models in the store (or the zoo with --zoo)")
    p.add_argument("--workspace")
    p.add_argument("--zoo", action="store_true", help="list the model names and architectures one can train")


def _progress_bar(enabled: bool, **kwargs: Any):
    from tqdm import tqdm

    return tqdm(disable=not enabled, dynamic_ncols=True, file=sys.stderr, **kwargs)


def cmd_train(args: argparse.Namespace) -> int:
    from robustbench_dc.checkpoint import read_card
    from robustbench_dc.train import TrainConfig, train

    config = TrainConfig(
        model=args.model, dataset=args.dataset, arch=args.arch, width=args.width, training=args.training,
        eps=args.eps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
        seed=args.seed, train_subset=args.train_subset, weight_projection=args.weight_projection,
    )  # fmt: skip
    if args.download:
        from robustbench_dc.data import load_dataset as _load

        _load(args.dataset, "train", args.data_dir, download=True)
        _load(args.dataset, "test", args.data_dir, download=True)
    bars: list = []

    def on_batch(s) -> None:
        if not bars:
            bars.append(_progress_bar(not args.no_progress, unit="batch", leave=False))
        bar = bars[0]
        if s.batch == 0:
            bar.reset(total=s.batches)
            bar.set_description(f"epoch {s.epoch + 1}/{config.epochs}")
        bar.update(1)
        bar.set_postfix(loss=f"{s.loss:.3f}", acc=f"{s.accuracy:.3f}", img_s=f"{s.images_per_s:.0f}")

    def on_epoch(s) -> None:
        bars[0].write(f"epoch {s.epoch}/{s.epochs}: loss {s.loss:.4f}  train acc {100 * s.accuracy:.2f}%  {s.images_per_s:.0f} img/s  {s.seconds:.1f}s")

    directory = train(config, workspace=args.workspace, data_dir=args.data_dir, on_batch=on_batch, on_epoch=on_epoch)
    for bar in bars:
        bar.close()
    card = read_card(directory)
    print(f"{config.model} ({config.arch}, width {config.width:g}) on {config.dataset}, {config.training_label}, seed {config.seed}: "
          f"clean test accuracy {100 * card['clean_test_accuracy']:.2f}% on {card['test_images']} images")  # fmt: skip
    print(f"checkpoint: {directory}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    if args.zoo:
        from robustbench_dc.models import ARCHITECTURES, list_models

        print("architectures:", ", ".join(ARCHITECTURES.names()))
        print("models:", ", ".join(list_models()))
        return 0
    from robustbench_dc.checkpoint import find_checkpoints, read_card, workspace_dir

    ws = workspace_dir(args.workspace)
    rows = []
    for d in find_checkpoints(ws):
        c = read_card(d)
        rows.append([c["dataset"], c["model"]["name"], c["model"]["arch"], c["model"]["width"], c["training"]["label"], c["seed"],
                     c["epochs"], f"{100 * c['clean_test_accuracy']:.2f}", c["weights"]["sha256"][:12], str(d)])  # fmt: skip
    if not rows:
        print(f"no trained models in {ws / 'models'}; train one: dc-robust train --model baseline --dataset digits")
        return 0
    print(tabulate(rows, headers=["dataset", "model", "arch", "width", "training", "seed", "epochs", "clean %", "sha256", "path"]))
    return 0


COMMANDS: dict[str, tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]] = {
    "train": (_add_train, cmd_train),
    "models": (_add_models, cmd_models),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dc-robust", description="Adversarial robustness of Decoupled Networks.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command][1](args)
    except (UserError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is saved, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
