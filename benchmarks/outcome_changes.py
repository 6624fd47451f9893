"""How many per-image outcomes the iterative attacks' ``outcome`` changes, on a committed store's own models.

    python benchmarks/outcome_changes.py WORKSPACE --data-dir DIR [--study paper-cpu] [--seeds 0] [--attack bim]

For each of the study's models (of the given training seeds) the store's ``last-iterate`` cell of ``--attack`` (every
step on every image, the outcome at the last iterate: every cell made before the choice existed) is set beside the
same attack run with ``any-iterate`` (each image stops once misclassified) on the same images, computed into the same
workspace under its own identity. Prints, per model, the images that change: right at the last iterate but wrong at
an earlier one (the only change the definition allows), and the reverse (which only floating-point ties between
differently composed batches can give), with both accuracies and both attack times.
"""

from __future__ import annotations

import argparse
import dataclasses

from robustbench_dc import evaluate
from robustbench_dc.attacks import get_attack
from robustbench_dc.names import CellKind, Outcome, Role, Threat
from robustbench_dc.results.store import ResultStore
from robustbench_dc.targets import from_checkpoint
from robustbench_dc.workspace import CARD_FILE, workspace_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--study", default="paper-cpu")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--attack", default="bim", choices=["bim", "pgd"])
    parser.add_argument("--eps", type=float, default=8 / 255)
    args = parser.parse_args()
    ws = workspace_dir(args.workspace)
    seeds = {int(s) for s in args.seeds.split(",")}
    with ResultStore(ws, readonly=True) as store:
        targets = {t: f for t, (f, _) in store.study_targets(args.study).items() if t.seed in seeds}
        stored = {
            c.key.function: c
            for c in store.cells()
            if c.key.function in set(targets.values())
            and c.key.role == Role.TABLE
            and c.key.kind == CellKind.ACCURACY
            and c.key.threat == Threat.WHITE_BOX
            and c.key.attack == args.attack
            and abs(c.key.eps - args.eps) < 1e-12
            and "outcome" not in c.key.parameters
        }
    models = {m.function_id: m for m in (from_checkpoint(p.parent) for p in sorted((ws / "models").rglob(CARD_FILE)))}
    print(f"{args.attack} at eps {args.eps * 255:g}/255, study {args.study}, seeds {sorted(seeds)}")
    print("model | images | last-iterate % | any-iterate % | right only at last iterate | reverse | s last | s any")
    total = [0, 0, 0]
    for target, function in sorted(targets.items(), key=lambda tf: (tf[0].seed, tf[0].training, tf[0].label)):
        old, model = stored.get(function), models.get(function)
        if old is None or model is None:
            continue
        attack = dataclasses.replace(get_attack(args.attack), outcome=Outcome.ANY_ITERATE)
        new = evaluate(
            model,
            dataset=old.key.dataset,
            attacks=[attack],
            eps=[args.eps],
            n=None if old.key.subset.n == old.key.subset.of else old.key.subset.n,
            subset_seed=old.key.subset.seed,
            lipschitz=False,
            workspace=ws,
            data_dir=args.data_dir,
        ).accuracy
        row = new[new.attack == args.attack].iloc[0]
        a, b = old.metrics["per_example"], row.per_example
        lost = sum(1 for x, y in zip(a, b) if x == "1" and y == "0")
        gained = sum(1 for x, y in zip(a, b) if x == "0" and y == "1")
        total = [total[0] + len(a), total[1] + lost, total[2] + gained]
        print(
            f"{target.describe()} | {len(a)} | {100 * old.metrics['accuracy']:.2f} | {100 * row.accuracy:.2f} | "
            f"{lost} | {gained} | {old.seconds:.0f} | {row.seconds:.0f}",
            flush=True,
        )
    print(f"all: {total[0]} image outcomes, {total[1]} right only at the last iterate, {total[2]} the reverse")


if __name__ == "__main__":
    main()
