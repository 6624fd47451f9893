"""The official AutoAttack on a study's trained models, on the diagnostics' images (role ``diagnostics``), so that
the report's worst case over every white-box attack includes it.

    python scripts/autoattack_cells.py --workspace WS --data-dir DIR [--study paper-cpu] [--training fgsm] [--seeds 0]

A long run on a CPU (about an hour a model at 1,000 images on 2 cores): each cell resumes from its finished batches
(WORKSPACE/partial), so start it again after an interrupt; finished cells are reused. Merge the workspace's cells into
a committed store with ``dc-robust merge``.
"""

from __future__ import annotations

import argparse
import time

from robustbench_dc.attacks import AutoAttack
from robustbench_dc.evaluation import evaluate
from robustbench_dc.study import load_study, parse_seeds
from robustbench_dc.targets import from_checkpoint
from robustbench_dc.train import checkpoint_dir
from robustbench_dc.workspace import workspace_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--study", default="paper-cpu")
    parser.add_argument("--training", default="fgsm")
    parser.add_argument("--seeds", default=None, help="training seeds (default: the study's)")
    args = parser.parse_args()
    study, ws = load_study(args.study), workspace_dir(args.workspace)
    seeds = parse_seeds(args.seeds) if args.seeds else study.seeds
    for seed in seeds:
        for m in (m for m in study.models if m.trained):
            path = checkpoint_dir(study.train_config(m, args.training, seed), ws)
            start = time.perf_counter()
            result = evaluate(
                from_checkpoint(path),
                dataset=study.dataset,
                attacks=[AutoAttack()],
                eps=[study.table_eps],
                n=study.diagnostics_n,
                role="diagnostics",
                lipschitz=False,
                workspace=ws,
                data_dir=args.data_dir,
                progress=lambda message: print(time.strftime("%H:%M:%S"), message, flush=True),
            )
            aa = result.accuracy[result.accuracy.attack == "autoattack"].iloc[0]
            print(
                f"{m.label} {args.training} seed {seed}: AutoAttack {100 * aa.accuracy:.2f}% of {aa.n} images "
                f"({'stored before' if aa.cached else f'{time.perf_counter() - start:.0f} s'})",
                flush=True,
            )


if __name__ == "__main__":
    main()
