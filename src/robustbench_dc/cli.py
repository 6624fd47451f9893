"""``dc-robust``: a thin command line over the library; it parses, calls, prints and draws progress bars."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from robustbench_dc import __version__, names
from robustbench_dc.errors import UserError
from robustbench_dc.progress import Progress

log = logging.getLogger("robustbench_dc")


def parse_fraction(text: str) -> float:
    """``8/255``, ``0.03`` or ``1e-2`` as a float."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(f"not a finite number or fraction: {text!r}") from exc
    return value


def parse_eps(text: str) -> float:
    """One epsilon in [0, 1] (pixel units)."""
    value = parse_fraction(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"epsilon must be in [0, 1] (pixel units, e.g. 8/255), got {text!r}")
    return value


def parse_positive(text: str) -> float:
    """A finite number > 0 (a width, a learning rate)."""
    value = parse_fraction(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


#: the widths a zoo model can be built at: below, its narrowest layers round to one channel; above, no machine holds it
WIDTHS = (1 / 64, 16.0)


def parse_width(text: str) -> float:
    """A width multiplier within ``WIDTHS``."""
    value = parse_positive(text)
    if not WIDTHS[0] <= value <= WIDTHS[1]:
        raise argparse.ArgumentTypeError(
            f"--width must be in [{WIDTHS[0]:g}, {WIDTHS[1]:g}] (1 is the architecture's own width), got {text!r}"
        )
    return value


def parse_seed(text: str) -> int:
    """A seed in [0, 2**32), what every generator we seed takes."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"seeds are integers in [0, 2**32), got {text!r}")
    return value


def parse_eps_list(text: str) -> list[float]:
    values = [parse_fraction(t) for t in text.split(",") if t.strip()]
    if not values:
        raise argparse.ArgumentTypeError("give at least one epsilon, e.g. 2/255,8/255")
    bad = [v for v in values if not 0 <= v <= 1]
    if bad:
        raise argparse.ArgumentTypeError(f"epsilons must be in [0, 1] (pixel units, e.g. 8/255), got {bad}")
    return values


def parse_l2_eps_list(text: str) -> list[float]:
    values = [parse_fraction(t) for t in text.split(",") if t.strip()]
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"L2 epsilons are numbers >= 0, e.g. 0.25,0.5; got {text!r}")
    return values


def parse_float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated finite numbers, got {text!r}")
    return values


def parse_std(text: str) -> tuple[float, ...]:
    values = parse_float_list(text)
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"a per-channel std is a number > 0, got {text!r}")
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


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` with a TOML value (``0.5``, ``110``, ``true``, ``"linear"``); a bare word is a string."""
    import tomllib

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. target_rate=0.5, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip(), parsed


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workspace",
        help="directory for models, results and reports (default: $DC_ROBUST_WORKSPACE, else "
        "~/.local/share/robustbench-dc)",
    )
    p.add_argument(
        "--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps (default: auto)"
    )
    p.add_argument(
        "--data-dir", help="where the dataset lives (CIFAR-10: torchvision batches or train/ and test/ image folders)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--download",
        action="store_true",
        help="allow downloading the dataset where it is missing (CIFAR-10, MNIST, Fashion-MNIST)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log what is reused, trained and computed")
    p.add_argument(
        "--threads",
        type=_threads,
        default=None,
        help="intra-op CPU threads, or 'auto': the usable CPUs (affinity, cgroup quota, OMP_NUM_THREADS) that other "
        "processes leave free when the command starts (default: auto for a command that runs models; an integer pins "
        "the count, and so the bits, whatever else runs)",
    )


def _add_train(sub) -> None:
    from robustbench_dc.names import ARCHITECTURES, DATASETS, INITS, PRECISIONS, RECIPES, SCHEDULES, Regime

    p = sub.add_parser("train", help="train a zoo model naturally or adversarially into the model store")
    _common(p)
    p.add_argument(
        "--model", required=True, help="zoo model, e.g. baseline, tanhconv, ballconv-sqcos (see dc-robust models --zoo)"
    )
    p.add_argument("--arch", default="cnn9", choices=ARCHITECTURES, help="architecture (default: cnn9)")
    p.add_argument(
        "--arch-option",
        type=parse_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an architecture option, repeatable, e.g. target_rate=0.5 for convnet-aig (see dc-robust models --zoo)",
    )
    p.add_argument("--width", type=parse_width, default=1.0, help="channel-width multiplier (default: 1.0)")
    p.add_argument(
        "--dataset", required=True, choices=[d for d in DATASETS if d != "synthetic"], help="the training data"
    )
    p.add_argument(
        "--training",
        default="natural",
        type=names.regime,
        choices=list(Regime),
        help="training regime, docs/protocol.md section 3 ('adversarial', the tables' word, is fgsm)",
    )
    p.add_argument("--eps", type=parse_fraction, default=8 / 255, help="adversarial training epsilon (default 8/255)")
    p.add_argument(
        "--recipe",
        default="standard",
        choices=RECIPES,
        help="a named set of the settings below (docs/recipes.md); flags given override it (default: standard)",
    )
    p.add_argument("--epochs", type=int, default=None, help="passes over the training set (standard: 10)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (standard: 128)")
    p.add_argument("--lr", type=parse_positive, default=None, help="peak learning rate (standard: 0.1)")
    p.add_argument("--schedule", default=None, choices=SCHEDULES, help="learning-rate schedule (standard: onecycle)")
    p.add_argument(
        "--warmup",
        type=parse_fraction,
        default=None,
        help="fraction of the steps the schedule rises over (standard: 0.25)",
    )
    p.add_argument(
        "--label-smoothing",
        type=parse_fraction,
        default=None,
        help="label smoothing of the training loss (standard: 0)",
    )
    p.add_argument(
        "--ema-decay",
        type=parse_fraction,
        default=None,
        help="keep an exponential moving average of the weights (standard: 0, off)",
    )
    p.add_argument("--init", default=None, choices=INITS, help="convolution initialisation (standard: default)")
    p.add_argument(
        "--no-decay-norms",
        dest="decay_norms",
        action="store_const",
        const=False,
        default=None,
        help="no weight decay on BatchNorm parameters and biases",
    )
    p.add_argument(
        "--robustness-check",
        type=int,
        default=None,
        metavar="N",
        help="after each epoch, FGSM and PGD-10 accuracy on N fixed training images, in the card (catastrophic "
        "overfitting; default 0: off)",
    )
    p.add_argument("--seed", type=parse_seed, default=0, help="training seed (weights, data order, augmentation)")
    p.add_argument("--train-subset", type=int, default=None, help="train on this many images (a fixed seeded subset)")
    p.add_argument("--weight-projection", action="store_true", help="renormalise decoupled kernels after every step")
    p.add_argument(
        "--recalibration-batches",
        type=int,
        default=None,
        help="after training, recompute BatchNorm and radius statistics over this many training batches (0: off; "
        "standard: 50)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="training autocast: auto = bf16 where the device supports it, else fp32; fp16 needs CUDA (default: auto)",
    )
    p.add_argument(
        "--channels-last",
        default="auto",
        choices=["auto", "yes", "no"],
        help="memory layout for training (default: auto)",
    )
    _compile_option(p)


def _compile_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--compile",
        action="store_true",
        help="train through torch.compile (inductor; first steps compile for a minute or so): faster steps for "
        "decoupled networks, slower for short runs (BENCHMARKS.md); falls back to eager where compiling fails; "
        "recorded in the card (default: off)",
    )


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the trained models in the store (or the zoo with --zoo)")
    p.add_argument(
        "--workspace", help="the store to list (default: $DC_ROBUST_WORKSPACE, else ~/.local/share/robustbench-dc)"
    )
    p.add_argument("--zoo", action="store_true", help="list the model names and architectures one can train")


def _model_options(p: argparse.ArgumentParser) -> None:
    """Which model: one from the store, or a file (ours or third-party)."""
    from robustbench_dc.names import ARCHITECTURES, DATASETS

    p.add_argument(
        "--model",
        help="zoo model name, looked up in the store with --dataset/--training/--seed "
        "(with --checkpoint FILE --arch: the zoo model to build for the state dict, default baseline)",
    )
    p.add_argument(
        "--checkpoint",
        help="a checkpoint of ours (directory or card.json), a state dict (.pt/.pth) or safetensors file "
        "with --arch or --factory, or a TorchScript file",
    )
    p.add_argument("--factory", help="package.module:function that builds the module for a state dict")
    p.add_argument(
        "--mean",
        type=parse_float_list,
        help="per-channel mean the model expects inputs normalised with, e.g. 0.49,0.48,0.45",
    )
    p.add_argument("--std", type=parse_std, help="per-channel std, with --mean")
    p.add_argument("--num-classes", type=int, help="checked against the dataset")
    p.add_argument("--input-size", type=int, help="checked against the dataset")
    p.add_argument(
        "--trust-checkpoint", action="store_true", help="allow a full pickled module: this runs code from the file"
    )
    p.add_argument("--label", help="name of a third-party model in tables and reports (default: file name)")
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        help="test data; default: the one dataset the store holds models of (required for --checkpoint)",
    )
    p.add_argument(
        "--training",
        default="natural",
        type=names.regime,
        help="training label in the store: natural, fgsm ('adversarial', the tables' word), kurakin, pgd, fgsm-rs "
        "(default natural)",
    )
    p.add_argument("--seed", type=parse_seed, default=0, help="seed of the model to look up")
    p.add_argument(
        "--arch",
        default=None,
        choices=ARCHITECTURES,
        help="architecture of the model to look up, or to build for a state dict",
    )
    p.add_argument(
        "--width",
        type=parse_width,
        default=None,
        help="width of the model to look up, or to build for a state dict (default: any; 1 to build)",
    )


def _add_eval(sub) -> None:
    from robustbench_dc.names import ATTACKS, BACKENDS

    p = sub.add_parser(
        "eval", help="attack a trained model (white-box and black-box) and estimate its Lipschitz constant"
    )
    _common(p)
    _model_options(p)
    p.add_argument("--attacks", default="fgsm,bim", help=f"comma-separated, from: {', '.join(ATTACKS)}")
    p.add_argument(
        "--eps",
        type=parse_eps_list,
        default=[8 / 255],
        help="comma-separated L-inf epsilons, e.g. 2/255,4/255,8/255 (default: 8/255)",
    )
    p.add_argument(
        "--eps-l2",
        type=parse_l2_eps_list,
        default=None,
        help="comma-separated epsilons of the L2 attacks (fgm, pgd-l2), e.g. 0.25,0.5",
    )
    p.add_argument("--n", type=parse_n, default=1000, help="number of test images (a fixed seeded subset), or 'all'")
    p.add_argument(
        "--subset-seed", type=parse_seed, default=0, help="seed of the test subset and of randomised attacks"
    )
    p.add_argument(
        "--backend", default="torchattacks", choices=list(BACKENDS), help="library that carries out the attacks"
    )
    p.add_argument(
        "--attack-outcome",
        default=str(names.Outcome.ANY_ITERATE),
        choices=[str(o) for o in names.Outcome],
        help="iterative attacks (bim, pgd and their variants): an image counts as broken if misclassified at any "
        "iterate, and stops there (default; our own loop), or at the last iterate (every step on every image, run by "
        "the backend: cells made before 0.2)",
    )
    p.add_argument(
        "--source",
        default="auto",
        help="black-box source: 'auto' (for a zoo model the protocol source: natural baseline of the same recipe, "
        "seed + 1, trained first if missing; for another model none), 'default' (the protocol source), 'none', a zoo "
        "name or a checkpoint path",
    )
    p.add_argument("--no-lipschitz", action="store_true", help="skip the Lipschitz estimates")
    p.add_argument("--recompute", action="store_true", help="recompute cells already in the result store")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument(
        "--save-adversarials",
        metavar="DIR",
        help="write each white-box attack's adversarial images (safetensors, with labels, "
        "test indices and predictions) and examples.png, clean next to adversarial; the attacks run again for this",
    )
    p.add_argument(
        "--save-model-record",
        metavar="DIR",
        help="write the model's records: DIR/<dataset>/<Linf|L2>/<label>.json in RobustBench's model_info layout "
        "(where AutoAttack ran), and every record with ours (robust accuracy over the attacks run) in DIR/dc-robust/",
    )
    p.add_argument(
        "--save-per-example",
        metavar="FILE",
        help="write one CSV row per (cell, test image): index in the test split, right or wrong",
    )
    p.add_argument(
        "--diagnostics",
        action="store_true",
        help="run the gradient-masking diagnostics (stronger attacks, BPDA, eps sweep, gradient health)",
    )
    p.add_argument("--square-queries", type=int, default=300, help="queries of the Square attack in the diagnostics")
    p.add_argument("--batch-size", type=int, default=250, help="images per attack and prediction batch (default: 250)")
    p.add_argument(
        "--straight-through",
        default="",
        help="with --diagnostics: comma-separated submodule names (e.g. an input "
        "quantiser) whose gradients the BPDA attack passes straight through",
    )


def _add_lipschitz(sub) -> None:
    p = sub.add_parser("lipschitz", help="Lipschitz estimates of a trained model (local, gradient norm, global bound)")
    _common(p)
    _model_options(p)
    p.add_argument("--eps", type=parse_fraction, default=8 / 255, help="radius of the local estimate (default: 8/255)")
    p.add_argument("--n", type=int, default=200, help="test images for the local and gradient estimates")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def _add_report(sub) -> None:
    from robustbench_dc.names import DATASETS

    p = sub.add_parser("report", help="build the report (Tables 7 and 8 next to the paper's) from the result store")
    p.add_argument(
        "--workspace", help="the store to report on (default: $DC_ROBUST_WORKSPACE, else ~/.local/share/robustbench-dc)"
    )
    p.add_argument("--dataset", choices=DATASETS, help="default: the one dataset the store holds results of")
    p.add_argument("--arch", default=None, help="only models of this architecture")
    p.add_argument("--width", type=float, default=None, help="only models of this width")
    p.add_argument("--eps", type=parse_eps, default=8 / 255, help="epsilon of the tables (default 8/255)")
    p.add_argument(
        "--n", type=int, default=None, help="the test-subset size of the table cells, when the store holds several"
    )
    p.add_argument("--seeds", default=None, help="only models of these training seeds, e.g. 0,1 (default: all)")
    p.add_argument("--out", help="output directory (default WORKSPACE/reports/DATASET)")
    p.add_argument(
        "--format", default="markdown", choices=["markdown", "html"], help="report format (default: markdown)"
    )


def _add_reproduce(sub) -> None:
    from robustbench_dc.names import PRESETS

    p = sub.add_parser("reproduce", help="train, attack and report everything Tables 7 and 8 need")
    _common(p)
    p.add_argument(
        "--preset",
        default="smoke",
        choices=list(PRESETS),
        help="smoke: digits, minutes; quick: CIFAR-10, about an hour per seed on 2 CPU cores; paper: full width, "
        "for one GPU; paper-cpu: paper-strength half-width networks by the fast recipe, hours per seed on 2 CPU cores "
        "(default: smoke)",
    )
    p.add_argument(
        "--seeds",
        default=None,
        help="comma-separated training seeds, e.g. 0,1,2 (default: the preset's: 0 for smoke, 0,1,2 for quick and "
        "paper)",
    )
    p.add_argument("--out", help="report directory (default WORKSPACE/reports/PRESET)")
    p.add_argument(
        "--format", default="markdown", choices=["markdown", "html"], help="report format (default: markdown)"
    )
    _compile_option(p)
    _executor_options(p)


def _executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--executor",
        default="local",
        choices=["local", "ray"],
        help="where trainings and evaluations run: this process, or Ray tasks (default: local)",
    )
    p.add_argument("--ray-address", help="a running Ray cluster's address (default: start a local Ray instance)")
    p.add_argument(
        "--ray-cpus-per-task",
        type=int,
        help="CPUs (and torch threads) each Ray task asks for (default: the CPUs a local run on an idle machine "
        "uses, so that both train the same bits; fewer run more tasks at once, with other bits)",
    )
    p.add_argument(
        "--ray-no-shared-workspace",
        action="store_true",
        help="workers do not see the workspace at the same path: checkpoints travel through Ray's object store",
    )


def _executor(args: argparse.Namespace):
    from robustbench_dc.executors import get_executor

    return get_executor(
        args.executor,
        ray_address=args.ray_address,
        shared_workspace=not args.ray_no_shared_workspace,
        cpus_per_task=args.ray_cpus_per_task,
    )


def _add_merge(sub) -> None:
    p = sub.add_parser(
        "merge",
        help="copy the result cells and checkpoints of workspaces computed apart (other seeds, other machines) into "
        "one",
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="WORKSPACE",
        help="workspaces to copy from (each the folder its runs were given as --workspace)",
    )
    p.add_argument(
        "--workspace",
        help="the destination workspace (default: $DC_ROBUST_WORKSPACE, else ~/.local/share/robustbench-dc)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log what is copied")


def cmd_merge(args: argparse.Namespace) -> int:

    from robustbench_dc.results.merge import merge_workspaces
    from robustbench_dc.workspace import workspace_dir

    destination = workspace_dir(args.workspace)
    summary = merge_workspaces(destination, [Path(s) for s in args.sources])
    for line in summary.lines():
        print(line)
    print(
        f"merged into {destination}; build the report there (dc-robust study NAME --report-only, or dc-robust report)"
    )
    return 0


def _add_study(sub) -> None:
    p = sub.add_parser(
        "study", help="run a study (a TOML file, or a shipped study by name): train what is missing, evaluate, report"
    )
    _common(p)
    p.add_argument("study", nargs="?", help="path to a study TOML file, or the name of a shipped study (see --list)")
    p.add_argument("--list", action="store_true", help="list the shipped studies and exit")
    p.add_argument("--seeds", help="comma-separated training seeds instead of the study's")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write the report from what is in the store; train and evaluate nothing",
    )
    p.add_argument(
        "--trust-code",
        action="store_true",
        help="allow the study's factory = 'file.py:fn' entries: they import and run that code",
    )
    p.add_argument("--out", help="report directory (default: WORKSPACE/reports/study-NAME)")
    p.add_argument(
        "--format", default="markdown", choices=["markdown", "html"], help="report format (default: markdown)"
    )
    _compile_option(p)
    _executor_options(p)


def cmd_study(args: argparse.Namespace) -> int:
    from robustbench_dc.study import load_study, shipped_studies

    if args.list or not args.study:
        if not args.list:
            raise UserError(f"name a study file or a shipped study: {', '.join(shipped_studies())}")
        for name in shipped_studies():
            print(f"{name}: {' '.join(load_study(name).description.split())}")
        return 0
    return _run_study(load_study(args.study, trust_code=args.trust_code), args, ["dc-robust", "study", str(args.study)])


def cmd_report(args: argparse.Namespace) -> int:

    from robustbench_dc.attacks.specs import eps_label
    from robustbench_dc.reports.paper_report import build_report
    from robustbench_dc.study import parse_seeds
    from robustbench_dc.workspace import reports_dir, workspace_dir

    _infer_dataset(args, "models")
    out = Path(args.out) if args.out else reports_dir(workspace_dir(args.workspace), args.dataset)
    command = " ".join(
        ["dc-robust", "report", "--dataset", args.dataset, "--eps", eps_label(args.eps)]
        + (["--workspace", args.workspace] if args.workspace else [])
        + (["--arch", args.arch] if args.arch else [])
        + (["--width", f"{args.width:g}"] if args.width else [])
        + (["--n", str(args.n)] if args.n else [])
        + (["--seeds", args.seeds] if args.seeds else [])
        + (["--format", args.format] if args.format != "markdown" else [])
    )
    path = build_report(
        workspace=args.workspace,
        dataset=args.dataset,
        out_dir=out,
        eps=args.eps,
        arch=args.arch,
        width=args.width,
        n=args.n,
        seeds=parse_seeds(args.seeds) if args.seeds else None,
        command=command,
        fmt=args.format,
    )
    print(f"report: {path}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """An alias of ``dc-robust study PRESET``: the presets are shipped studies (same plan, store and report)."""
    from robustbench_dc.reproduce import get_preset

    args.report_only = False
    return _run_study(get_preset(args.preset), args, ["dc-robust", "reproduce", "--preset", args.preset])


def _run_study(study, args: argparse.Namespace, command: list[str]) -> int:
    """Run a study (unless --report-only), write its report, and for a paper-tables study print Tables 7 and 8."""
    import time

    from robustbench_dc.pipeline import check_data, record_targets, run_study
    from robustbench_dc.reports.build import write_study_report
    from robustbench_dc.study import with_options

    study = with_options(study, seeds=args.seeds, compile=args.compile)
    command += (
        (["--seeds", args.seeds] if args.seeds else [])
        + (["--compile"] if args.compile else [])
        + (["--data-dir", "DIR"] if args.data_dir else [])
    )
    command += ["--format", args.format] if args.format != "markdown" else []
    times = None
    if not args.report_only:
        check_data(study, args.data_dir)
        _fetch(args, study.dataset, ("train", "test"))
        bars = _Bars(not args.no_progress, "stage")
        t0 = time.perf_counter()
        times = run_study(
            study,
            workspace=args.workspace,
            data_dir=args.data_dir,
            device=args.device,
            executor=_executor(args),
            on_stage=bars.stage,
            on_progress=bars,
        )
        bars.close()
        times["total"] = time.perf_counter() - t0
    record_targets(study, args.workspace)  # for cells evaluated before the store recorded which model is which
    path, tables = write_study_report(
        study,
        workspace=args.workspace,
        out_dir=Path(args.out) if args.out else None,
        command=" ".join(command),
        times=times,
        fmt=args.format,
    )
    if tables:
        print(tables + "\n")
    print(f"report: {path}")
    return 0


def _fetch(args: argparse.Namespace, dataset: str, splits: tuple[str, ...] = ("test",)) -> None:
    """With --download: get the dataset now, before any work, where it is missing."""
    if not getattr(args, "download", False):
        return
    from robustbench_dc.data import load_dataset
    from robustbench_dc.workspace import cache_dir, workspace_dir

    for split in splits:
        load_dataset(dataset, split, args.data_dir, download=True, cache_dir=cache_dir(workspace_dir(args.workspace)))


def _infer_dataset(args: argparse.Namespace, what: str) -> None:
    """``--dataset`` when not given: the one dataset the store holds models (or results) of."""
    if args.dataset is not None:
        return
    from robustbench_dc.workspace import models_dir, workspace_dir

    if getattr(args, "checkpoint", None):
        raise UserError("--checkpoint needs --dataset (the test data to evaluate it on)")
    from robustbench_dc.zoo import shipped_roots

    ws = workspace_dir(args.workspace)
    found = sorted(d.name for d in models_dir(ws).iterdir() if d.is_dir()) if models_dir(ws).is_dir() else []
    if not found and what == "models":  # an empty store: the datasets of the shipped networks
        found = sorted({d.name for r in shipped_roots() for d in models_dir(r).iterdir() if d.is_dir()})
    if len(found) != 1:
        raise UserError(f"give --dataset: the store {ws} holds {what} of {', '.join(found) if found else 'no dataset'}")
    args.dataset = found[0]


def _target(args: argparse.Namespace):
    from robustbench_dc.checkpoint import resolve_checkpoint
    from robustbench_dc.data import dataset_info
    from robustbench_dc.targets import from_checkpoint

    if args.checkpoint:
        from robustbench_dc.external import TRUST_WARNING, load_external

        if args.trust_checkpoint:
            print(f"warning: {TRUST_WARNING}", file=sys.stderr)
        return load_external(
            args.checkpoint,
            dataset_info(args.dataset),
            arch=args.arch,
            model_name=args.model or "baseline",
            width=args.width,
            factory=args.factory,
            mean=args.mean,
            std=args.std,
            num_classes=args.num_classes,
            input_size=args.input_size,
            trust=args.trust_checkpoint,
            label=args.label,
        )
    if not args.model:
        raise UserError("give --model NAME (a model in the store) or --checkpoint PATH")
    path = resolve_checkpoint(
        args.model,
        dataset=args.dataset,
        training=args.training,
        seed=args.seed,
        arch=args.arch,
        width=args.width,
        workspace=args.workspace,
    )
    from robustbench_dc.zoo import is_shipped

    if is_shipped(path):
        print(f"model: the shipped network {path} (read-only; results go to your store)", file=sys.stderr)
    return from_checkpoint(path)


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def cmd_eval(args: argparse.Namespace, *, lipschitz_only: bool = False) -> int:
    from robustbench_dc.evaluation import evaluate, input_mistake_hint

    _infer_dataset(args, "models")
    _fetch(args, args.dataset)
    target = _target(args)
    progress = _Bars(not args.no_progress, "cell")
    common = dict(dataset=args.dataset, n=args.n, workspace=args.workspace, data_dir=args.data_dir, device=args.device)
    diagnostics: list[Any] = []
    if lipschitz_only:
        result = evaluate(target, attacks=[], eps=[args.eps], lipschitz_n=args.n, progress=progress, **common)
    else:
        from robustbench_dc.attacks import attacks_named
        from robustbench_dc.devices import resolve_device
        from robustbench_dc.planning import resolve_source

        resolve_device(args.device)  # a missing GPU, like an unknown attack, is found before the source is trained
        straight_through = _names(args.straight_through)
        attacks = attacks_named(_names(args.attacks), straight_through=straight_through, outcome=args.attack_outcome)
        say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
        source = resolve_source(
            args.source, target, dataset=args.dataset, workspace=args.workspace, data_dir=args.data_dir, say=say
        )
        result = evaluate(
            target,
            attacks=attacks,
            eps=args.eps,
            eps_l2=args.eps_l2,
            subset_seed=args.subset_seed,
            source=source,
            backend=args.backend,
            recompute=args.recompute,
            lipschitz=not args.no_lipschitz,
            batch_size=args.batch_size,
            progress=progress,
            **common,
        )
        if args.diagnostics:
            from robustbench_dc.diagnostics.run import diagnostics_eps, run_diagnostics

            diagnostics, _ = run_diagnostics(
                target,
                eps=diagnostics_eps(args.eps),
                source=source,
                square_queries=args.square_queries,
                batch_size=args.batch_size,
                straight_through=straight_through,
                outcome=args.attack_outcome,
                progress=progress,
                **common,
            )
    progress.close()
    hint = input_mistake_hint(target, result, normalised=args.mean is not None)
    if hint:
        print(f"note: {hint}", file=sys.stderr)
    if not lipschitz_only:
        from robustbench_dc.records import record_evaluation

        records_dir = Path(args.save_model_record) if args.save_model_record else None
        for note in record_evaluation(target, result, eps=args.eps, eps_l2=args.eps_l2, records_dir=records_dir):
            print(note, file=sys.stderr)
    if getattr(args, "save_adversarials", None):
        from robustbench_dc.adversarials import save_evaluated_adversarials

        bars = _Bars(not args.no_progress, "file")
        paths = save_evaluated_adversarials(
            target,
            result,
            Path(args.save_adversarials),
            data_dir=args.data_dir,
            workspace=args.workspace,
            seed=args.subset_seed,
            backend=args.backend,
            device=args.device,
            batch_size=args.batch_size,
            progress=bars,
        )
        bars.close()
        print(f"adversarial examples: {len(paths)} files in {args.save_adversarials}", file=sys.stderr)
    if getattr(args, "save_per_example", None):
        from robustbench_dc.files import atomic_write_bytes

        atomic_write_bytes(Path(args.save_per_example), result.per_example().to_csv(index=False).encode())
        print(f"per-example outcomes: {args.save_per_example}", file=sys.stderr)
    if args.json:
        import json

        from robustbench_dc.records import eval_document

        print(json.dumps(eval_document(target, result, diagnostics), indent=2, default=str))
    else:
        from robustbench_dc.reports.tables import eval_tables

        print(eval_tables(result.accuracy, result.lipschitz_rows, target.label))
        if diagnostics:
            from tabulate import tabulate

            print()
            print(
                tabulate(
                    [[d.status.upper(), d.name, d.summary] for d in diagnostics],
                    headers=["status", "gradient-masking diagnostic", "numbers"],
                )
            )
    return 0


def _progress_bar(enabled: bool, **kwargs: Any):
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, CI), where redraws would pile up as text
    return tqdm(disable=None if enabled else True, dynamic_ncols=True, file=sys.stderr, **kwargs)


class _Bars(Progress):
    """Nested bars on stderr: outside, the steps (result cells of an ``eval``, files, or the stages of a study) with
    their count and ETA; inside, the current step's images attacked or training batches, with rate and ETA, and
    what a batch is doing (AutoAttack's components). Not a terminal: one line per step and per detail."""

    def __init__(self, enabled: bool, unit: str, total: int | None = None) -> None:
        self.enabled = enabled
        self.counts_steps = (
            unit != "stage"
        )  # the outer bar counts cells (or files); a study's stages come through stage()
        self.outer = _progress_bar(enabled, unit=unit, total=total, position=0)
        self.as_lines = enabled and self.outer.disable
        self.inner: Any = None

    def _say(self, line: str) -> None:
        if self.as_lines:
            print(line, file=sys.stderr, flush=True)

    def stage(self, i: int, total: int, label: str) -> None:
        """A stage of a study begins (its ``on_stage``)."""
        self._say(f"[{i + 1}/{total}] {label}")
        self.outer.total, self.outer.n = total, i
        self.outer.set_description_str(label)
        self.outer.set_postfix_str("")
        self._end_inner()

    def position(self, done: int, total: int) -> None:
        if self.counts_steps:
            self.outer.total, self.outer.n = total, done
            self.outer.refresh()

    def __call__(self, message: str) -> None:
        self._say(message)
        if self.counts_steps:
            self.outer.set_description_str(message)
        else:
            self.outer.set_postfix_str(message[-60:])
        self._end_inner()

    def advance(self, done: int, total: int, unit: str) -> None:
        inner = self.inner
        if inner is None:
            inner = self.inner = _progress_bar(self.enabled, unit=unit, total=total, position=1, leave=False)
        elif done < inner.n or total != inner.total:
            inner.reset(total=total)
        inner.unit = unit
        inner.update(done - inner.n)

    def detail(self, message: str) -> None:
        self._say(f"  {message}")
        (self.inner or self.outer).set_postfix_str(message)

    def _end_inner(self) -> None:
        if self.inner is not None:
            self.inner.close()
            self.inner = None

    def close(self) -> None:
        self._end_inner()
        if self.outer.total is not None:
            self.outer.n = self.outer.total
        self.outer.close()


def cmd_train(args: argparse.Namespace) -> int:
    from robustbench_dc.checkpoint import read_card
    from robustbench_dc.train import recipe_config, train

    given = {
        k: getattr(args, k)
        for k in (
            "epochs",
            "batch_size",
            "lr",
            "schedule",
            "warmup",
            "label_smoothing",
            "ema_decay",
            "init",
            "decay_norms",
            "robustness_check",
            "recalibration_batches",
        )
        if getattr(args, k) is not None
    }
    config = recipe_config(
        args.recipe,
        model=args.model,
        dataset=args.dataset,
        arch=args.arch,
        width=args.width,
        training=args.training,
        eps=args.eps,
        seed=args.seed,
        train_subset=args.train_subset,
        weight_projection=args.weight_projection,
        precision=args.precision,
        channels_last={"auto": None, "yes": True, "no": False}[args.channels_last],
        arch_options=dict(args.arch_option),
        compile=args.compile,
        **given,
    )
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
        bars[0].write(
            f"epoch {s.epoch}/{s.epochs}: loss {s.loss:.4f}  train acc {100 * s.accuracy:.2f}%  {s.images_per_s:.0f} "
            f"img/s  {s.seconds:.1f}s"
        )

    directory = train(
        config,
        workspace=args.workspace,
        data_dir=args.data_dir,
        download=args.download,
        device=args.device,
        on_batch=on_batch,
        on_epoch=on_epoch,
    )
    for bar in bars:
        bar.close()
    card = read_card(directory)
    print(
        f"{config.model} ({config.arch_label}, width {config.width:g}) on {config.dataset}, {config.training_label}, "
        f"seed {config.seed}: clean test accuracy {100 * card.clean_test_accuracy:.2f}% on {card.test_images} images"
    )
    print(f"checkpoint: {directory}")
    return 0


def _shipped_networks() -> None:
    """The trained networks the project ships, by report: what ``eval --model NAME`` finds where your store has none."""
    from robustbench_dc.reports.leaderboard import leaderboard
    from robustbench_dc.reports.render import render_text
    from robustbench_dc.workspace import models_dir, results_path
    from robustbench_dc.zoo import shipped_roots

    for root in shipped_roots():
        if not results_path(root).is_file():
            continue
        for dataset in sorted(d.name for d in models_dir(root).iterdir() if d.is_dir()):
            board = leaderboard([(root.name, root)], dataset)
            keep = [board.headers.index(h) for h in board.headers[1:9]]
            print(
                f"\nshipped networks of {root} ({dataset}; eval --model NAME --dataset {dataset} [--training T] "
                "[--seed N] finds them):"
            )
            print(render_text([board.headers[i] for i in keep], [[r[i] for i in keep] for r in board.rows]))


def cmd_models(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    if args.zoo:
        from robustbench_dc.models import ARCHITECTURES, list_models

        print("models (operators):", ", ".join(list_models()))
        print(
            tabulate(
                [
                    [a, ", ".join(f"{k}={v!r}" for k, v in ARCHITECTURES.defaults(a).items()) or "-"]
                    for a in ARCHITECTURES.names()
                ],
                headers=["architecture", "options (--arch-option KEY=VALUE), defaults"],
            )
        )
        _shipped_networks()
        return 0
    from robustbench_dc.checkpoint import find_checkpoints, read_card
    from robustbench_dc.models.registry import arch_label
    from robustbench_dc.workspace import models_dir, workspace_dir

    ws = workspace_dir(args.workspace)
    rows = []
    for d in find_checkpoints(ws):
        c = read_card(d)
        rows.append(
            [
                c.dataset,
                c.model["name"],
                arch_label(c.model["arch"], c.model.get("arch_options")),
                c.model["width"],
                c.training["label"],
                c.seed,
                c.epochs,
                f"{100 * c.clean_test_accuracy:.2f}",
                c.weights.sha256[:12] if c.weights else "-",
                str(d),
            ]
        )
    if not rows:
        print(f"no trained models in {models_dir(ws)}; train one: dc-robust train --model baseline --dataset digits")
        return 0
    print(
        tabulate(
            rows,
            headers=["dataset", "model", "arch", "width", "training", "seed", "epochs", "clean %", "sha256", "path"],
        )
    )
    return 0


def _add_leaderboard(sub) -> None:
    from robustbench_dc.names import DATASETS

    p = sub.add_parser(
        "leaderboard", help="every evaluated model side by side: clean, worst case, AutoAttack, each table attack"
    )
    p.add_argument("--workspace", help="the store to read (default: $DC_ROBUST_WORKSPACE, else the user data folder)")
    p.add_argument("--zoo", action="store_true", help="the shipped networks' reports instead of your store")
    p.add_argument("--dataset", default="cifar10", choices=DATASETS, help="whose models")
    p.add_argument("--eps", type=parse_eps, default=8 / 255, help="the worst case's and AutoAttack's eps")
    p.add_argument("--format", default="markdown", choices=["markdown", "html"], help="html: a sortable page")
    p.add_argument("--out", help="folder for LEADERBOARD.md or leaderboard.html (default: print the table only)")


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from robustbench_dc.reports.leaderboard import leaderboard, write_leaderboard
    from robustbench_dc.reports.render import render_text
    from robustbench_dc.workspace import workspace_dir
    from robustbench_dc.zoo import shipped_roots

    sources = [(r.name, r) for r in shipped_roots()] if args.zoo else [("store", workspace_dir(args.workspace))]
    board = leaderboard(sources, args.dataset, args.eps)
    print(render_text(board.headers, board.rows))
    if args.out:
        print(f"leaderboard: {write_leaderboard(board, args.dataset, Path(args.out), args.format)}")
    return 0


COMMANDS: dict[str, tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]] = {
    "train": (_add_train, cmd_train),
    "models": (_add_models, cmd_models),
    "eval": (_add_eval, cmd_eval),
    "lipschitz": (_add_lipschitz, lambda args: cmd_eval(args, lipschitz_only=True)),
    "report": (_add_report, cmd_report),
    "reproduce": (_add_reproduce, cmd_reproduce),
    "study": (_add_study, cmd_study),
    "merge": (_add_merge, cmd_merge),
    "leaderboard": (_add_leaderboard, cmd_leaderboard),
}


def _threads(text: str) -> int | str:
    """'auto' or an integer from 1 to the CPUs this process may use (more would only wait on each other)."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads takes an integer or 'auto', got {text!r}") from None
    from robustbench_dc.devices import usable_cpus

    if not 1 <= value <= usable_cpus():
        raise argparse.ArgumentTypeError(
            f"--threads must be from 1 to the {usable_cpus()} CPUs this process may use, or 'auto'; got {text!r}"
        )
    return value


def _set_threads(threads: int | str | None, *, runs_models: bool) -> None:
    """A command that runs models takes by default the CPUs other processes leave free: beside busy processes every
    thread beyond them waits for descheduled siblings (BENCHMARKS.md, "Threads on a shared CPU": beside three busy
    processes a digits training took 7.7x its idle time on both cores, 2.4x on the free one). It says so when that
    is fewer than it may use, since other threads train other bits (every card and cell records its threads)."""
    from robustbench_dc.devices import set_threads, usable_cpus

    if threads is not None or not runs_models:
        set_threads(threads)
        return
    n, usable = set_threads("auto"), usable_cpus()
    if n < usable:
        print(
            f"note: other processes keep CPUs busy, so this runs on {n} of the {usable} usable CPUs (--threads "
            f"{usable} pins them all: slower under such load; cards and cells record the threads)",
            file=sys.stderr,
        )


class _DefaultsHelp(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it already states it (or there is none to state)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default  # by identity: 0 == False, and a default of 0 is worth stating
        unstated = default is None or default is False or default is argparse.SUPPRESS or default in ("", [])
        if "default" in text or unstated or not action.option_strings:
            return text
        return f"{text} (default: {action.default})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dc-robust", description="Adversarial robustness of Decoupled Networks.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    for command in sub.choices.values():
        command.formatter_class = _DefaultsHelp
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if hasattr(args, "threads"):
            _set_threads(args.threads, runs_models=args.command in ("train", "eval", "lipschitz", "study", "reproduce"))
        return COMMANDS[args.command][1](args)
    except UserError as exc:  # anything else is a bug: its traceback is shown (exit 1)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is saved, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
