"""The report's figures, drawn from aggregates (never from raw rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from robustbench_dc.figures import OKABE_ITO, pyplot
from robustbench_dc.files import save_figure
from robustbench_dc.names import Threat
from robustbench_dc.paper import PAPER_TRAINING, display
from robustbench_dc.results.query import Aggregate


def plot_accuracy(
    cell: Callable[[str, str, Threat, str, float | None], Aggregate | None],
    models: list[str],
    eps_values: list[float],
    path: Path,
    trainings: dict[str, str] = PAPER_TRAINING,
    attacks: tuple[str, ...] = ("fgsm", "bim"),
    label: Callable[[str], str] = display,
) -> None:
    """White-box accuracy against eps, a panel per (training, attack); ``trainings`` maps regimes to titles."""
    plt = pyplot()
    fig, axes = plt.subplots(
        len(trainings),
        len(attacks),
        figsize=(5 * len(attacks), 4 * len(trainings)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    markers = "osD^vP*X"
    colours = OKABE_ITO
    for i, training in enumerate(trainings):
        for j, attack in enumerate(attacks):
            ax = axes[i][j]
            for mi, m in enumerate(models):
                found = [(0.0, cell(m, training, Threat.WHITE_BOX, "none", None))] + [
                    (e * 255, cell(m, training, Threat.WHITE_BOX, attack, e)) for e in eps_values
                ]
                pts = [(x, c) for x, c in found if c is not None]
                if len(pts) < 2:
                    continue
                ax.errorbar(
                    [x for x, _ in pts],
                    [c.mean for _, c in pts],
                    yerr=[[max(0.0, c.mean - c.low) for _, c in pts], [max(0.0, c.high - c.mean) for _, c in pts]],
                    marker=markers[mi % len(markers)],
                    linestyle=("-", "--", ":", "-.")[mi % 4],
                    color=colours[mi % len(colours)],
                    capsize=3,
                    label=label(m),
                )
            ax.set_title(f"{trainings[training]} training, white-box {attack.upper()}")
            ax.grid(alpha=0.3)
            if i == len(trainings) - 1:
                ax.set_xlabel("eps (x/255)")
            if j == 0:
                ax.set_ylabel("accuracy % (95% CI)")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_lipschitz(points: list[tuple[str, str, float, Aggregate]], path: Path, accuracy_label: str) -> None:
    """Empirical local Lipschitz constant against white-box accuracy, a point per (model, training) from
    ``points``: (model label, training title, mean local L, accuracy aggregate). The global upper bounds stay in
    the table: they are loose by orders of magnitude (SphereConv's depends on eps and has none worth drawing)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    models = list(dict.fromkeys(p[0] for p in points))
    trainings = list(dict.fromkeys(p[1] for p in points))
    markers = "osD^vP*X"
    for label, training, local, acc in points:
        mi, ti = models.index(label), trainings.index(training)
        colour = OKABE_ITO[mi % len(OKABE_ITO)]
        ax.errorbar(
            [local],
            [acc.mean],
            yerr=[[max(0.0, acc.mean - acc.low)], [max(0.0, acc.high - acc.mean)]],
            marker=markers[mi % len(markers)],
            markersize=8,
            color=colour,
            markerfacecolor=colour if ti == 0 else "white",
            capsize=3,
            linestyle="none",
            label=f"{label}, {training}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("empirical local Lipschitz constant (L-inf -> L1, log scale; lower is smoother)")
    ax.set_ylabel(f"accuracy % under {accuracy_label} (95% CI)")
    ax.set_title(f"Local Lipschitz constant against accuracy under {accuracy_label}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if points:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_differences(rows: list[tuple[str, float, float, float]], path: Path, title: str) -> None:
    """``rows``: (label, difference in points, low, high) of paired comparisons: a forest plot around zero."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.2))
    ys = list(range(len(rows)))[::-1]
    for y, (_, diff, low, high) in zip(ys, rows):
        colour = "#0072B2" if low > 0 else "#D55E00" if high < 0 else "#777777"
        ax.errorbar([diff], [y], xerr=[[diff - low], [high - diff]], fmt="o", color=colour, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=8)
    ax.set_xlabel("difference in accuracy, points (paired 95% interval)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
