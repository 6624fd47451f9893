"""BIM-10 through ``robustbench_dc.evaluate`` (what ``dc-robust eval`` runs) against torchattacks called directly.

    python benchmarks/bench_eval_bim.py --dataset cifar10 --data-dir DIR [--checkpoint PATH] [--n 1000]
        [--outcome any-iterate|last-iterate]

Both sides attack the same model on the same test images at the same eps. The evaluate side is the whole
call: data from the workspace cache, weights hash, input check, clean accuracy, the attack, predictions and
the SQLite writes (``recompute=True``, so nothing is reused). The direct side is ``torchattacks.BIM`` batch by
batch plus one prediction pass. Prints both times (best of ``--repeats``, alternating), the number
of images still classified correctly and the ratio. With ``--outcome any-iterate`` (eval's default: images stop once
misclassified) evaluate must never leave more images standing (goal: ratio at most 0.5 at 8/255 on a naturally
trained model); with ``last-iterate`` (every step on every image, through torchattacks) the counts must agree and the
goal is at most 1.10.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torchattacks

import robustbench_dc
from robustbench_dc.attacks import BIM
from robustbench_dc.data import dataset_info, load_dataset
from robustbench_dc.inference import predict
from robustbench_dc.models import create_model
from robustbench_dc.names import Outcome
from robustbench_dc.targets import from_checkpoint, from_module

STEPS, STEP, BATCH = 10, 1 / 255, 250  # BATCH is run_attack's default batch size


def direct_torchattacks(model, images, labels, eps):
    model.eval()
    adv = torch.cat(
        [
            torchattacks.BIM(model, eps=eps, alpha=STEP, steps=STEPS)(images[i : i + BATCH], labels[i : i + BATCH])
            for i in range(0, len(images), BATCH)
        ]
    )
    return int((predict(model, adv) == labels).sum())


def through_evaluate(target, dataset, data_dir, n, eps, workspace, outcome):
    rows = robustbench_dc.evaluate(
        target,
        dataset=dataset,
        attacks=[BIM(step=STEP, steps=STEPS, outcome=outcome)],
        eps=[eps],
        n=n,
        source=None,
        lipschitz=False,
        workspace=workspace,
        data_dir=data_dir,
        recompute=True,
    ).accuracy
    return int(rows.loc[rows["attack"] == "bim", "correct"].iloc[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a zoo checkpoint (default: a freshly initialised --model)")
    parser.add_argument("--model", default="tanhconv")
    parser.add_argument("--arch", default="cnn9")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-dir")
    parser.add_argument("--n", type=int, default=1000)  # eval's default
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--outcome", default=str(Outcome.ANY_ITERATE), choices=[str(o) for o in Outcome])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    if args.checkpoint:
        target = from_checkpoint(args.checkpoint)
        dataset = target.info.dataset
    else:
        info = dataset_info(args.dataset)
        torch.manual_seed(0)
        module = create_model(
            args.model,
            arch=args.arch,
            width=args.width,
            num_classes=info.num_classes,
            in_channels=info.in_channels,
            input_size=info.input_size,
            mean=info.mean,
            std=info.std,
        )
        target, dataset = from_module(module, label=args.model), args.dataset
    with tempfile.TemporaryDirectory() as workspace:
        test = load_dataset(dataset, "test", args.data_dir, cache_dir=f"{workspace}/cache")  # fills the cache once
        sub = test.subset(args.n, 0)  # evaluate's default subset
        images, labels = sub.float_images(), sub.labels
        t_eval, t_direct = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            correct_eval = through_evaluate(target, dataset, args.data_dir, args.n, args.eps, workspace, args.outcome)
            t_eval.append(time.perf_counter() - start)
            start = time.perf_counter()
            correct_direct = direct_torchattacks(target.module, images, labels, args.eps)
            t_direct.append(time.perf_counter() - start)
    eval_s, direct_s = min(t_eval), min(t_direct)
    print(f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, threads {torch.get_num_threads()}")
    print(
        f"model {target.label} ({args.checkpoint or 'freshly initialised'}), {dataset}, {len(images)} test images, BIM "
        f"{STEPS} steps of {STEP * 255:g}/255 at eps {args.eps * 255:g}/255"
    )
    exact = args.outcome == Outcome.LAST_ITERATE
    sound = correct_eval == correct_direct if exact else correct_eval <= correct_direct
    print(
        f"correct under attack: evaluate ({args.outcome}) {correct_eval}, torchattacks {correct_direct} of "
        f"{len(images)}" + ("" if sound else ("  MISMATCH" if exact else "  EVALUATE WEAKER"))
    )
    print(
        f"robustbench_dc.evaluate  {eval_s:8.2f} s  (best of {args.repeats}: {', '.join(f'{t:.2f}' for t in t_eval)})"
    )
    print(
        f"torchattacks.BIM direct  {direct_s:8.2f} s  (best of {args.repeats}: "
        f"{', '.join(f'{t:.2f}' for t in t_direct)})"
    )
    print(f"ratio {eval_s / direct_s:.3f} (goal <= {1.10 if exact else 0.5})")
    if not sound:
        raise SystemExit("evaluate's BIM " + ("disagrees with" if exact else "is weaker than") + " torchattacks'")


if __name__ == "__main__":
    main()
