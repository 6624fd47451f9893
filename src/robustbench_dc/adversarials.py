"""Adversarial examples as files: what an evaluation's white-box attacks produce, for inspection or for other
tools, and a figure of clean next to adversarial images."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from safetensors.torch import save_file

from robustbench_dc import __version__
from robustbench_dc.attacks import DEFAULT_ATTACK_BATCH_SIZE, eps_label, get_attack, run_attack
from robustbench_dc.data import load_dataset
from robustbench_dc.devices import placed, resolve_device
from robustbench_dc.errors import UserError
from robustbench_dc.files import atomic_write, output_dir
from robustbench_dc.inference import predict
from robustbench_dc.names import Threat
from robustbench_dc.progress import as_progress, counter
from robustbench_dc.targets import EvalModel
from robustbench_dc.workspace import cache_dir, workspace_dir

if TYPE_CHECKING:
    from robustbench_dc.evaluation import Evaluation


def save_adversarials(
    target: EvalModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    indices: Sequence[int],
    runs: list[tuple[str, float]],
    out_dir: Path,
    *,
    backend: str = "torchattacks",
    seed: int = 0,
    device: Any = "auto",
    batch_size: int = DEFAULT_ATTACK_BATCH_SIZE,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """For each (attack, eps) in ``runs``: ``ATTACK-EPS.safetensors`` with the adversarial images (float32 in [0, 1]),
    the labels, the test-split indices and the model's predictions, its metadata naming the model and the attack;
    and ``examples.png``, the first images clean and adversarial. The attacks run again, with the seed the
    evaluation used (the same examples where the device computes deterministically)."""
    output_dir(out_dir)
    written, shown = [], []
    report = as_progress(progress)
    with placed([target.module], resolve_device(device)):
        clean_pred = predict(target.module, images, batch_size)
        for name, eps in runs:
            attack = get_attack(name)
            report(f"adversarial examples: {name} at {eps_label(eps, name)}")
            adv = run_attack(
                attack,
                target.module,
                images,
                labels,
                eps,
                backend=backend,
                seed=seed,
                batch_size=batch_size,
                on_batch=counter(report, images.shape[0], "images"),
                on_detail=report.detail,
            )
            pred = predict(target.module, adv, batch_size)
            meta = {
                "model": target.label,
                "function_id": target.function_id,
                "attack": name,
                "params": json.dumps(attack.params(eps), sort_keys=True),
                "eps": repr(eps),
                "backend": backend,
                "seed": str(seed),
                "robustbench_dc": __version__,
            }
            tensors = {
                "adversarial": adv.float().contiguous(),
                "labels": labels.long().contiguous(),
                "indices": torch.tensor(list(indices)),
                "predictions": pred.long().contiguous(),
            }
            path = out_dir / f"{name}-{eps_label(eps, name).replace('/', 'over').replace(' ', '')}.safetensors"
            atomic_write(path, partial(save_file, tensors, metadata=meta))
            written.append(path)
            shown.append((f"{name} {eps_label(eps, name)}", adv, pred))
    if shown:
        figure = out_dir / "examples.png"
        atomic_write(figure, lambda tmp: _figure(images, labels, clean_pred, shown, tmp))
        written.append(figure)
    return written


def save_evaluated_adversarials(
    target: EvalModel,
    result: Evaluation,
    out_dir: Path,
    *,
    data_dir: str | Path | None = None,
    workspace: str | Path | None = None,
    seed: int = 0,
    **options: Any,
) -> list[Path]:
    """``save_adversarials`` for what an evaluation of ``target`` ran: each white-box attack at each of its eps, on
    the evaluation's own test images (of a named dataset's test split), with its seed (``subset_seed``, which
    seeds the attacks too). ``options``: those of ``save_adversarials`` (backend, device, batch size, progress)."""
    runs = sorted(
        {
            (r.attack, float(r.eps))
            for r in result.accuracy.itertuples()
            if r.threat == Threat.WHITE_BOX and r.attack != "none" and not r.source
        }
    )
    test = load_dataset(result.dataset, "test", data_dir, cache_dir=cache_dir(workspace_dir(workspace)))
    if test.content_sha256() != result.data_sha256:
        raise UserError(
            f"the {result.dataset} test split in {data_dir or 'the default data folder'} is not the data the "
            "evaluation ran on; give the --data-dir it used"
        )
    indices = list(result.test_indices)
    sub = test.select(torch.tensor(indices))
    return save_adversarials(target, sub.float_images(), sub.labels, indices, runs, out_dir, seed=seed, **options)


def _figure(
    images: torch.Tensor,
    labels: torch.Tensor,
    clean_pred: torch.Tensor,
    rows: list[tuple[str, torch.Tensor, torch.Tensor]],
    path: Path,
    columns: int = 8,
) -> None:
    from robustbench_dc.figures import pyplot

    plt = pyplot()
    k = min(columns, images.shape[0])
    fig, axes = plt.subplots(1 + len(rows), k, figsize=(1.3 * k, 1.5 * (1 + len(rows))), squeeze=False)
    for r, (title, imgs, pred) in enumerate([("clean", images, clean_pred)] + rows):
        for c in range(k):
            ax = axes[r][c]
            img = imgs[c].permute(1, 2, 0).clamp(0, 1).numpy()
            ax.imshow(
                img.squeeze(-1) if img.shape[-1] == 1 else img,
                cmap="gray" if img.shape[-1] == 1 else None,
                vmin=0,
                vmax=1,
            )
            ok = int(pred[c]) == int(labels[c])
            ax.set_title(f"{int(pred[c])}{'' if ok else ' ✗'}", fontsize=8, color="black" if ok else "#D55E00")
            ax.set_xticks([]), ax.set_yticks([])
        axes[r][0].set_ylabel(title, fontsize=8)
    fig.suptitle(
        "predicted class per image (✗: wrong; true labels: " + " ".join(str(int(y)) for y in labels[:k]) + ")",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
