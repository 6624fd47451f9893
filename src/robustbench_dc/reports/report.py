"""The report: Tables 7 and 8 next to the paper's numbers, Lipschitz estimates, computed claims, provenance,
plots, and the same numbers as CSV and JSON. Built from the result store alone.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tabulate import tabulate

from robustbench_dc.attacks import eps_label
from robustbench_dc.checkpoint import atomic_write_bytes, environment, workspace_dir
from robustbench_dc.errors import UserError
from robustbench_dc.stats import intervals_overlap, wilson_interval
from robustbench_dc.store import ResultStore

PAPER_COLUMNS = ("baseline", "sphereconv", "ballconv", "tanhconv")
DISPLAY = {"baseline": "Baseline", "sphereconv": "SphereConv", "ballconv": "BallConv", "tanhconv": "TanhConv"}
#: Our training labels standing for the paper's "adversarial" rows (SPEC section 2: FGSM adversarial training).
PAPER_TRAINING = {"natural": "natural", "fgsm": "adversarial"}
ATTACK_ROWS = ("none", "fgsm", "bim")


def paper_tables() -> pd.DataFrame:
    """The paper's numbers, shipped inside the package."""
    with files("robustbench_dc").joinpath("paper/dcnet_tables.csv").open() as f:
        return pd.read_csv(f)


def paper_value(paper: pd.DataFrame, table: int, training: str, attack: str, method: str) -> float | None:
    rows = paper[(paper["table"].astype(str) == str(table)) & (paper["training"] == training) & (paper["attack"] == attack) & (paper["method"] == method)]
    return float(rows["value"].iloc[0]) if len(rows) else None


@dataclass(frozen=True)
class Cell:
    """One (model, training, threat, attack, eps) over seeds: mean and std of accuracy %, pooled interval."""

    mean: float
    std: float
    low: float
    high: float
    seeds: int
    n: int

    def text(self) -> str:
        spread = f" ±{self.std:.1f} sd" if self.seeds > 1 else ""
        return f"{self.mean:.2f}{spread} [{self.low:.1f}, {self.high:.1f}]"


def load_results(workspace: str | Path | None, dataset: str, *, arch: str | None = None, width: float | None = None) -> pd.DataFrame:
    """Accuracy and Lipschitz cells of zoo and third-party models evaluated on ``dataset``."""
    ws = workspace_dir(workspace)
    if not (ws / "results.sqlite").exists():
        raise UserError(f"no results in {ws}: evaluate models first (dc-robust eval ... or dc-robust reproduce)")
    with ResultStore(ws) as store:
        frame = store.frame()
    if frame.empty or "dataset" not in frame:
        raise UserError(f"the result store in {ws} is empty: evaluate models first")
    frame = frame[frame["dataset"] == dataset]
    if arch is not None and "model.arch" in frame:
        frame = frame[(frame["model.arch"] == arch) | frame["model.arch"].isna()]
    if width is not None and "model.width" in frame:
        frame = frame[(frame["model.width"] == width) | frame["model.width"].isna()]
    if frame.empty:
        raise UserError(f"no results for dataset {dataset!r}{'' if arch is None else f' arch {arch}'}{'' if width is None else f' width {width:g}'} in {ws}")
    frame = frame.copy()
    frame["model_name"] = frame["model.name"].fillna(frame["model.label"]) if "model.name" in frame else frame["model.label"]
    frame["training"] = frame["model.training"].fillna("external") if "model.training" in frame else "external"
    frame["seed"] = frame["model.seed"].fillna(-1).astype(int) if "model.seed" in frame else -1
    return frame


def _aggregate(rows: pd.DataFrame) -> Cell | None:
    if rows.empty:
        return None
    accs = 100 * rows["accuracy"].to_numpy(dtype=float)
    correct, n = int(rows["correct"].sum()), int(rows["n"].sum())
    low, high = wilson_interval(correct, n)
    return Cell(float(accs.mean()), float(accs.std(ddof=1)) if len(accs) > 1 else 0.0, 100 * low, 100 * high, len(accs), n)


class Results:
    """Selection helpers over the accuracy cells of one dataset."""

    def __init__(self, frame: pd.DataFrame, eps: float) -> None:
        self.frame = frame
        acc = frame[frame["kind"] == "accuracy"]
        # the tables use the main evaluation subset (the largest); diagnostics may run on a smaller one
        sizes = acc["subset"].map(lambda s: s.get("n", 0) if isinstance(s, dict) else 0)
        self.acc = acc[sizes == sizes.max()] if len(acc) else acc
        self.eps = eps

    def models(self) -> list[str]:
        names = list(dict.fromkeys(self.acc["model_name"]))
        ordered = [m for m in PAPER_COLUMNS if m in names]
        return ordered + sorted(m for m in names if m not in PAPER_COLUMNS)

    def cell(self, model: str, training: str, threat: str, attack: str, eps: float | None = None) -> Cell | None:
        a = self.acc
        sel = a[(a["model_name"] == model) & (a["training"] == training) & (a["attack"] == attack)]
        if attack == "none":
            sel = sel[sel["threat"] == "none"]
        else:
            sel = sel[(sel["threat"] == threat) & np.isclose(sel["eps"].astype(float), self.eps if eps is None else eps)]
            if threat == "black-box" and "source" in sel:
                # Tables 8: the default source only (a natural baseline, another seed), not the transfer matrix
                sel = sel[sel["source"].fillna("").str.startswith("baseline natural seed")]
        return _aggregate(sel)

    def eps_values(self) -> list[float]:
        return sorted(set(float(e) for e in self.acc[self.acc["attack"] != "none"]["eps"]))


# --- claims -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    text: str
    verdict: str  # "reproduced", "not reproduced", "not measured"
    evidence: str
    models: tuple[tuple[str, str], ...] = ()  # (model, training) whose robustness the claim is about


def _evidence(a: Cell, b: Cell, names: tuple[str, str], overlap: bool) -> str:
    spread = lambda c: f" ±{c.std:.1f} sd over {c.seeds} seeds" if c.seeds > 1 else ""  # noqa: E731
    return (f"{names[0]} {a.mean:.1f}%{spread(a)} vs {names[1]} {b.mean:.1f}%{spread(b)} "
            f"(gap {a.mean - b.mean:+.1f} points; intervals {'overlap' if overlap else 'do not overlap'})")  # fmt: skip


def _diff_claim(text: str, a: Cell | None, b: Cell | None, min_gap: float, names: tuple[str, str], models=()) -> Claim:
    """``a`` exceeds ``b`` by at least ``min_gap`` points with non-overlapping intervals."""
    if a is None or b is None:
        return Claim(text, "not measured", "", models)
    overlap = intervals_overlap((a.low, a.high), (b.low, b.high))
    ok = a.mean - b.mean >= min_gap and not overlap
    return Claim(text, "reproduced" if ok else "not reproduced", _evidence(a, b, names, overlap), models)


def _close_claim(text: str, a: Cell | None, b: Cell | None, tolerance: float, names: tuple[str, str], models=()) -> Claim:
    """``a`` and ``b`` within ``tolerance`` points, or their intervals overlap."""
    if a is None or b is None:
        return Claim(text, "not measured", "", models)
    overlap = intervals_overlap((a.low, a.high), (b.low, b.high))
    ok = abs(a.mean - b.mean) <= tolerance or overlap
    return Claim(text, "reproduced" if ok else "not reproduced", _evidence(a, b, names, overlap), models)


def claims(r: Results) -> list[Claim]:
    """The qualitative claims of the paper's Tables 7 and 8, judged from our numbers (thresholds in the text)."""
    out: list[Claim] = []
    base = lambda tr, th, at: r.cell("baseline", tr, th, at)  # noqa: E731
    for m in ("sphereconv", "ballconv", "tanhconv"):
        d = DISPLAY[m]
        out.append(_diff_claim(f"Naturally trained {d} resists white-box FGSM far better than the baseline (>= 10 points)",
                               r.cell(m, "natural", "white-box", "fgsm"), base("natural", "white-box", "fgsm"), 10, (d, "Baseline"), ((m, "natural"),)))  # fmt: skip
        out.append(_close_claim(f"Under white-box BIM the natural {d}'s advantage disappears (within 5 points)",
                                r.cell(m, "natural", "white-box", "bim"), base("natural", "white-box", "bim"), 5, (d, "Baseline")))  # fmt: skip
    out.append(_diff_claim("FGSM adversarial training helps the baseline against white-box FGSM (>= 10 points)",
                           base("fgsm", "white-box", "fgsm"), base("natural", "white-box", "fgsm"), 10, ("adversarial", "natural"), (("baseline", "fgsm"),)))  # fmt: skip
    out.append(_close_claim("... but not against white-box BIM (within 5 points)",
                            base("fgsm", "white-box", "bim"), base("natural", "white-box", "bim"), 5, ("adversarial", "natural")))  # fmt: skip
    for m in ("sphereconv", "ballconv", "tanhconv"):
        d = DISPLAY[m]
        out.append(_diff_claim(f"Adversarially trained {d} resists white-box BIM better than the adversarially trained baseline (>= 5 points)",
                               r.cell(m, "fgsm", "white-box", "bim"), base("fgsm", "white-box", "bim"), 5, (d, "Baseline"), ((m, "fgsm"),)))  # fmt: skip
    for m in PAPER_COLUMNS:
        d = DISPLAY[m]
        out.append(_diff_claim(f"For natural {d}, black-box (transfer) FGSM is weaker than white-box FGSM (>= 5 points)",
                               r.cell(m, "natural", "black-box", "fgsm"), r.cell(m, "natural", "white-box", "fgsm"), 5, ("black-box", "white-box")))  # fmt: skip
    return out


def masking_notes(r: Results) -> list[str]:
    """Where a white-box FGSM advantage over the baseline vanishes under BIM: the classic sign of gradient masking."""
    notes = []
    for training in ("natural", "fgsm"):
        bf, bb = r.cell("baseline", training, "white-box", "fgsm"), r.cell("baseline", training, "white-box", "bim")
        for m in r.models():
            if m == "baseline":
                continue
            f, b = r.cell(m, training, "white-box", "fgsm"), r.cell(m, training, "white-box", "bim")
            if None in (bf, bb, f, b):
                continue
            fgsm_gain, bim_gain = f.mean - bf.mean, b.mean - bb.mean
            if fgsm_gain >= 10 and bim_gain < fgsm_gain / 2:
                notes.append(f"{DISPLAY.get(m, m)} ({training}): +{fgsm_gain:.1f} points over the baseline under white-box FGSM "
                             f"but {bim_gain:+.1f} under BIM. An advantage that an iterative attack removes suggests gradient "
                             f"masking, not robustness.")  # fmt: skip
    return notes


# --- rendering ----------------------------------------------------------------------------------------------


Block = tuple[str, Any]  # ("h1"|"h2"|"p"|"list"|"table"|"img"|"code", payload)


def table7_8(r: Results, threat: str, paper: pd.DataFrame, table: int) -> tuple[list[str], list[list[str]]]:
    models = r.models()
    headers = ["training", "attack"]
    for m in models:
        headers += [f"{DISPLAY.get(m, m)} ours % [95% CI]", "paper", "diff"]
    rows = []
    for ours_training, paper_training in PAPER_TRAINING.items():
        for attack in ATTACK_ROWS:
            row = [paper_training, attack.upper() if attack != "none" else "none"]
            for m in models:
                c = r.cell(m, ours_training, threat, attack)
                p = paper_value(paper, table, paper_training, attack, m) if m in PAPER_COLUMNS else None
                row += [c.text() if c else "-", f"{p:.2f}" if p is not None else "-", f"{c.mean - p:+.2f}" if c and p is not None else "-"]
            rows.append(row)
    return headers, rows


def lipschitz_rows(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    lip = frame[frame["kind"] == "lipschitz"]
    headers = ["model", "training", "seeds", "local L (mean)", "margin grad L1 (mean)", "global bound log10 (L-inf->L1)", "note"]
    rows = []
    for (m, tr), g in lip.groupby(["model_name", "training"], sort=False):
        local = g[g["attack"] == "local"]["mean"].astype(float)
        grad = g[g["attack"] == "gradient-norm"]["mean"].astype(float)
        glob = g[g["attack"] == "global"]
        bound = glob["log10_linf_l1"].astype(float).mean() if len(glob) else float("nan")
        note = ""
        if len(glob) and bool(glob["eps_dependent"].any()):
            note = "eps-dependent: SphereConv has no useful bound"
        if len(glob) and not bool(glob["supported"].all()):
            note = f"no bound for {glob['unsupported'].iloc[0]}"
        rows.append([DISPLAY.get(m, m), tr, str(g["seed"].nunique()), f"{local.mean():.3g}" if len(local) else "-",
                     f"{grad.mean():.3g}" if len(grad) else "-", "n/a" if math.isnan(bound) else f"{bound:.2f}", note])  # fmt: skip
    return headers, rows


def model_diagnostics(frame: pd.DataFrame, eps: float) -> dict[tuple[str, str, int], list]:
    """Diagnostics per (model, training, seed), judged from the stored cells."""
    from robustbench_dc.diagnostics import diagnose_stored

    out = {}
    for (m, tr, seed), g in frame.groupby(["model_name", "training", "seed"], sort=False):
        out[(m, tr, seed)] = diagnose_stored(g, eps=eps)
    return out


def diagnostics_blocks(diags: dict[tuple[str, str, int], list]) -> list[Block]:
    measured = {k: v for k, v in diags.items() if any(d.status != "n/a" for d in v)}
    if not measured:
        return [("p", "No diagnostics in the store for these models: run dc-robust eval --diagnostics or dc-robust reproduce.")]
    names = [d.name for d in next(iter(measured.values()))]
    rows = [[DISPLAY.get(m, m), tr, seed] + [d.status.upper() for d in v] for (m, tr, seed), v in measured.items()]
    details = [f"{DISPLAY.get(m, m)} ({tr}, seed {seed}), {d.name}: {d.status.upper()}: {d.summary}" for (m, tr, seed), v in measured.items() for d in v if d.status != "n/a"]
    return [("table", (["model", "training", "seed", *names], rows)), ("p", "The numbers behind each verdict:"), ("list", details)]


def surviving_claims(cl: list[Claim], diags: dict[tuple[str, str, int], list]) -> list[str]:
    """Each reproduced robustness claim, and whether every model it credits passes every diagnostic."""
    lines = []
    for c in cl:
        if c.verdict != "reproduced" or not c.models:
            continue
        warns = [f"{DISPLAY.get(m, m)} ({tr}): {d.name}" for (m, tr, _), v in diags.items() if (m, tr) in c.models for d in v if d.status == "warn"]
        measured = any((m, tr) in c.models and any(d.status != "n/a" for d in v) for (m, tr, _), v in diags.items())
        if not measured:
            lines.append(f"{c.text}: reproduced, but not checked (no diagnostics for the model)")
        elif warns:
            lines.append(f"{c.text}: reproduced, but does NOT survive the diagnostics ({'; '.join(warns)})")
        else:
            lines.append(f"{c.text}: reproduced and survives the diagnostics")
    return lines or ["None of the paper's robustness claims was reproduced, so none is left to check against the diagnostics."]


def transfer_blocks(frame: pd.DataFrame, eps: float) -> list[Block]:
    acc = frame[(frame["kind"] == "accuracy") & (frame["training"] == "natural")]
    acc = acc[np.isclose(acc["eps"].astype(float), eps)]
    black = acc[acc["threat"] == "black-box"]
    if "source_sha256" not in black or black.empty:
        return [("p", "No transfer matrix in the store.")]
    names = {sha: n for sha, n in zip(frame["model_sha256"], frame["model_name"])}
    natural = [sha for sha in dict.fromkeys(acc["model_sha256"]) if sha in set(black["source_sha256"])]
    if len(natural) < 2:
        return [("p", "No transfer matrix in the store (it needs two or more natural models used as sources).")]
    blocks: list[Block] = []
    for attack in ("fgsm", "bim"):
        rows = []
        for src in natural:
            row = [DISPLAY.get(names[src], names[src])]
            for tgt in natural:
                if src == tgt:
                    sel = acc[(acc["model_sha256"] == tgt) & (acc["threat"] == "white-box") & (acc["attack"] == attack)]
                else:
                    sel = black[(black["model_sha256"] == tgt) & (black["source_sha256"] == src) & (black["attack"] == attack)]
                row.append(f"{100 * sel['accuracy'].mean():.1f}" if len(sel) else "-")
            rows.append(row)
        headers = [f"{attack.upper()} source \\ target"] + [DISPLAY.get(names[t], names[t]) for t in natural]
        blocks += [("p", f"{attack.upper()} at {eps_label(eps)}: accuracy % of the target (columns) on examples crafted on the source (rows); the diagonal is white-box."),
                   ("table", (headers, rows))]  # fmt: skip
    return blocks


def plot_accuracy(r: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps_values = r.eps_values()
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), sharex=True, sharey=True)
    for i, training in enumerate(PAPER_TRAINING):
        for j, attack in enumerate(("fgsm", "bim")):
            ax = axes[i][j]
            for m in r.models():
                pts = [(0.0, r.cell(m, training, "white-box", "none"))] + [(e * 255, r.cell(m, training, "white-box", attack, e)) for e in eps_values]
                pts = [(x, c) for x, c in pts if c is not None]
                if len(pts) < 2:
                    continue
                xs = [x for x, _ in pts]
                ax.errorbar(xs, [c.mean for _, c in pts], yerr=[[max(0.0, c.mean - c.low) for _, c in pts], [max(0.0, c.high - c.mean) for _, c in pts]],
                            marker="o", capsize=3, label=DISPLAY.get(m, m))  # fmt: skip
            ax.set_title(f"{PAPER_TRAINING[training]} training, white-box {attack.upper()}")
            ax.grid(alpha=0.3)
            if i == 1:
                ax.set_xlabel("eps (x/255)")
            if j == 0:
                ax.set_ylabel("accuracy % (95% CI)")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lipschitz(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lip = frame[frame["kind"] == "lipschitz"]
    groups = list(lip.groupby(["model_name", "training"], sort=False))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{DISPLAY.get(m, m)}\n{tr}" for (m, tr), _ in groups]
    local = [g[g["attack"] == "local"]["mean"].astype(float).mean() for _, g in groups]
    bound = [g[g["attack"] == "global"]["log10_linf_l1"].astype(float).mean() if (g["attack"] == "global").any() else float("nan") for _, g in groups]
    axes[0].bar(range(len(groups)), np.log10(np.maximum(local, 1e-30)))
    axes[0].set_title("empirical local Lipschitz (log10, L-inf -> L1)")
    axes[1].bar(range(len(groups)), bound, color="tab:orange")
    axes[1].set_title("global upper bound (log10, L-inf -> L1)")
    for ax in axes:
        ax.set_xticks(range(len(groups)), labels, fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _provenance(frame: pd.DataFrame, r: Results, command: str, preset_note: str, stage_times: dict[str, float] | None) -> list[Block]:
    acc = r.acc
    sources = sorted(set(s for s in frame.get("model.data_source", pd.Series(dtype=str)).dropna() if s))
    subsets = sorted({json.dumps(s, sort_keys=True) for s in acc["subset"]})
    params = sorted({f"{a} @ {eps_label(float(e))}: {json.dumps(p, sort_keys=True)}" for a, e, p in zip(acc["attack"], acc["eps"], acc["params"]) if a != "none"})
    src = sorted(set(s for s in acc.get("source", pd.Series(dtype=str)).dropna() if s))
    backends = sorted(set(b for b in acc["backend"] if b))
    models = frame.drop_duplicates("model_sha256")
    train_rows = []
    for _, m in models.iterrows():
        train_rows.append([m.get("model_name"), m.get("training"), m.get("seed"), m.get("model.arch", "-"), m.get("model.width", "-"),
                           m.get("model.epochs", "-"), m.get("model.train_images", "-"), str(m["model_sha256"])[:12]])  # fmt: skip
    eval_time = frame.groupby("model_name")["seconds"].sum()
    env = environment()
    items = [
        f"Data: {'; '.join(sources) or 'unknown'}",
        f"Test images per cell: {', '.join(subsets)} (the same seeded subset for every model)",
        f"Attack backend: {', '.join(backends)}; threat model: untargeted L-inf, pixels in [0, 1], normalisation inside the model",
        f"Black-box source: {', '.join(src) or 'none'} (transfer: examples crafted on it once, fed to every target)",
        "Adversarial training ('adversarial' rows): FGSM at 8/255, each batch half clean and half FGSM (Kurakin et al.), SPEC section 2",
        f"Software: robustbench-dc {env['robustbench_dc']}, torch {env['torch']}, Python {env['python']}; hardware: {env['machine']}",
        "Evaluation time per model (all cells): " + ", ".join(f"{DISPLAY.get(k, k)} {v:.0f}s" for k, v in eval_time.items()),
    ]
    if stage_times:
        items.append("Wall time of this run's stages: " + ", ".join(f"{k} {v:.0f}s" for k, v in stage_times.items()))
    if preset_note:
        items.insert(0, f"Preset: {preset_note}")
    return [
        ("h2", "Provenance"),
        ("list", items),
        ("p", "Attack parameters:"),
        ("list", params),
        ("table", (["model", "training", "seed", "arch", "width", "epochs", "train images", "weights sha256"], train_rows)),
        ("p", "Regenerate this report with:"),
        ("code", command),
    ]


def build_report(
    *,
    workspace: str | Path | None,
    dataset: str,
    out_dir: str | Path,
    eps: float = 8 / 255,
    arch: str | None = None,
    width: float | None = None,
    command: str = "dc-robust report",
    title: str | None = None,
    preset_note: str = "",
    stage_times: dict[str, float] | None = None,
    fmt: str = "markdown",
) -> Path:
    """Write the report and its files into ``out_dir``; returns the main file's path."""
    if fmt not in ("markdown", "html"):
        raise UserError(f"unknown report format {fmt!r}; valid: markdown, html")
    frame = load_results(workspace, dataset, arch=arch, width=width)
    r = Results(frame, eps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paper = paper_tables()
    plot_accuracy(r, out / "accuracy_vs_eps.png")
    plot_lipschitz(frame, out / "lipschitz.png")
    export = frame.drop(columns=[c for c in ("per_example",) if c in frame]).copy()
    for col in ("params", "subset", "lip_subset"):
        if col in export:
            export[col] = export[col].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v)
    atomic_write_bytes(out / "results.csv", export.to_csv(index=False).encode())
    atomic_write_bytes(out / "results.json", export.to_json(orient="records", indent=1).encode())

    blocks: list[Block] = [("h1", title or f"Robustness report: {dataset}")]
    blocks.append(("p", "Our numbers against the paper's Tables 7 and 8 (Liu et al., CVPR 2018). The paper does not state the "
                        "network, epsilon or attack steps behind these tables; ours follow this suite's protocol "
                        f"(SPEC section 2) at eps = {eps_label(eps)}, so differences are expected and are not errors of either side. "
                        "Each of our cells is accuracy % with its 95% Wilson interval; 'diff' is ours minus the paper's."))  # fmt: skip
    for table, threat in ((7, "white-box"), (8, "black-box")):
        blocks.append(("h2", f"Table {table}: {threat} attacks"))
        blocks.append(("table", table7_8(r, threat, paper, table)))
    blocks.append(("h2", "Lipschitz estimates"))
    blocks.append(("table", lipschitz_rows(frame)))
    blocks.append(("p", "Local: empirical local Lipschitz constant (Yang et al. 2020), PGD-maximised, a lower bound. Margin "
                        "gradient: L1 norm of the input gradient of the logit margin. Global: layer-wise product upper bound, log10."))  # fmt: skip
    blocks.append(("img", ("lipschitz.png", "Lipschitz estimates per model")))
    blocks.append(("h2", "Accuracy against epsilon"))
    blocks.append(("img", ("accuracy_vs_eps.png", "White-box accuracy against epsilon, natural and adversarial training")))
    blocks.append(("h2", "The paper's claims, judged from our numbers"))
    cl = claims(r)
    blocks.append(("table", (["claim", "verdict", "our numbers"], [[c.text, c.verdict, c.evidence] for c in cl])))
    notes = masking_notes(r)
    blocks.append(("p", "Gradient masking check (FGSM gain that BIM removes):"))
    blocks.append(("list", notes or ["No model shows a white-box FGSM advantage of 10 points or more that BIM halves."]))
    diags = model_diagnostics(frame, eps)
    blocks.append(("h2", "Gradient-masking diagnostics"))
    blocks.append(("p", "Per model, at eps = " + eps_label(eps) + " (Carlini et al. 2019; Athalye et al. 2018): 1. iterative attacks at least as "
                        "strong as FGSM; 2. white-box at least as strong as black-box (transfer and Square); 3. accuracy falls with eps "
                        "and is near zero (<= 5%) at eps 0.5; 4. PGD-20 has converged (PGD-40 and 3 restarts change accuracy by at most "
                        "the tolerance: 2 points or 3 images, whichever is larger); 5. BPDA surrogate gradients do not beat the true "
                        "gradients by more than the tolerance; 6. gradient health (<= 1% zero or non-finite input gradients, <= 90% "
                        "saturated patches in any bounded layer)."))  # fmt: skip
    blocks += diagnostics_blocks(diags)
    blocks.append(("h2", "Which of the paper's robustness claims survive the diagnostics"))
    blocks.append(("list", surviving_claims(cl, diags)))
    blocks.append(("h2", "Transfer matrix (natural models)"))
    blocks += transfer_blocks(frame, eps)
    blocks += _provenance(frame, r, command, preset_note, stage_times)
    blocks.append(("p", "Machine-readable: results.csv, results.json (one row per result cell, per seed)."))

    if fmt == "markdown":
        path = out / "REPORT.md"
        atomic_write_bytes(path, render_markdown(blocks).encode())
    else:
        path = out / "report.html"
        atomic_write_bytes(path, render_html(blocks, out).encode())
    return path


def render_markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for kind, payload in blocks:
        if kind == "h1":
            lines += [f"# {payload}", ""]
        elif kind == "h2":
            lines += [f"## {payload}", ""]
        elif kind == "p":
            lines += [payload, ""]
        elif kind == "list":
            lines += [f"- {item}" for item in payload] + [""]
        elif kind == "table":
            headers, rows = payload
            lines += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
        elif kind == "img":
            src, alt = payload
            lines += [f"![{alt}]({src})", ""]
        elif kind == "code":
            lines += ["```", payload, "```", ""]
    return "\n".join(lines)


def render_html(blocks: Sequence[Block], out: Path) -> str:
    body: list[str] = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{html.escape(payload)}</{kind}>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in payload) + "</ul>")
        elif kind == "table":
            headers, rows = payload
            body.append(tabulate(rows, headers=headers, tablefmt="html", disable_numparse=True))
        elif kind == "img":
            src, alt = payload
            data = base64.b64encode((out / src).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
        elif kind == "code":
            body.append(f"<pre>{html.escape(payload)}</pre>")
    style = "body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>robustbench-dc report</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
