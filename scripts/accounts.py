"""The committed accounts of committed reports, generated from the reports' own cells, so that they cannot drift.

    python scripts/accounts.py            # rewrite every generated section of reports/README.md
    python scripts/accounts.py --check    # exit 1, naming the section, where the committed text differs

Each section stands in reports/README.md between ``<!-- account NAME -->`` and ``<!-- /account NAME -->``. Its
numbers come from reports/NAME/results.csv (every measured cell) and from the tables REPORT.md renders from those
cells (the claims' paired tests and the diagnostics' verdicts); its words that judge (reproduced, significantly
worse, ...) follow from those numbers by the rules written here. Regenerate a report, then run this script.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from robustbench_dc.paper import PAPER_COLUMNS, display, paper_tables, paper_value

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "reports" / "README.md"
DCNETS = PAPER_COLUMNS[1:]
DATASETS = {"cifar10": "CIFAR-10", "digits": "the 8x8 digits"}


class Report:
    """A committed report's cells (results.csv) and the tables its REPORT.md rendered from them."""

    def __init__(self, name: str) -> None:
        self.dir = ROOT / "reports" / name
        self.cells = pd.read_csv(self.dir / "results.csv")
        self.text = (self.dir / "REPORT.md").read_text(encoding="utf-8")

    def accuracy(
        self,
        model: str,
        training: str,
        threat: str,
        attack: str,
        eps: float | None,
        *,
        protocol_source: bool | None = None,
    ) -> float:
        """Accuracy % of the table cell that matches (the clean cell for attack ``none``): over several training
        seeds, the mean of one cell per seed, as the report's tables give it."""
        c = self.cells
        rows = c[
            (c["role"] == "table")
            & (c["kind"] == "accuracy")
            & (c["model.name"] == model)
            & (c["model.training"] == training)
            & (c["threat"] == threat)
            & (c["attack"] == attack)
        ]
        if eps is not None:
            rows = rows[(rows["eps"] - eps).abs() < 1e-9]
        if protocol_source is not None and threat == "black-box":
            rows = rows[rows["protocol_source"] == protocol_source]
        if sorted(rows["model.seed"]) != self.seeds():
            raise SystemExit(
                f"{self.dir.name}: cells of training seeds {sorted(rows['model.seed'])} for {model} {training} "
                f"{threat} {attack} eps {eps}; expected one for each of the report's seeds {self.seeds()}"
            )
        return 100 * float(rows["accuracy"].mean())

    def seeds(self, role: str = "table") -> list[int]:
        """The training seeds of the report's cells of ``role``."""
        c = self.cells
        return sorted(int(s) for s in c[c["role"] == role]["model.seed"].dropna().unique())

    def has(self, model: str, training: str) -> bool:
        """Whether the report holds a clean table cell of this model and training."""
        c = self.cells
        return bool(((c["role"] == "table") & (c["model.name"] == model) & (c["model.training"] == training)).any())

    def table(self, heading: str) -> tuple[list[str], list[list[str]]]:
        """The header and body rows of the first Markdown table under the section whose heading starts so."""
        section = re.split(rf"^## {re.escape(heading)}.*$", self.text, maxsplit=1, flags=re.M)[1].split("\n## ", 1)[0]
        lines = [[cell.strip() for cell in ln.strip().strip("|").split("|")] for ln in section.splitlines()]
        lines = [ln for ln, raw in zip(lines, section.splitlines()) if raw.startswith("|")]
        return lines[0], lines[2:]

    def paragraphs(self, heading: str) -> list[str]:
        """The text paragraphs (neither tables nor lists) of the section whose heading starts so."""
        section = re.split(rf"^## {re.escape(heading)}.*$", self.text, maxsplit=1, flags=re.M)[1].split("\n## ", 1)[0]
        return [b.strip() for b in section.split("\n\n") if b.strip() and not b.lstrip().startswith(("|", "-"))]

    def bullets(self, heading: str) -> list[str]:
        """The list items of the section whose heading is ``heading`` (empty where there is no such section)."""
        if f"## {heading}" not in self.text:
            return []
        section = re.split(rf"^## {re.escape(heading)}.*$", self.text, maxsplit=1, flags=re.M)[1].split("\n## ", 1)[0]
        return [ln[2:].strip() for ln in section.splitlines() if ln.startswith("- ")]

    def table_rows(self, heading: str) -> list[list[str]]:
        """The body rows of the first Markdown table under ``## heading``."""
        return self.table(heading)[1]

    def one(self, column: str, role: str = "table") -> float | str:
        """The value that every accuracy cell of ``role`` has in ``column`` (test images, width, epochs...)."""
        c = self.cells
        values = c[(c["role"] == role) & (c["kind"] == "accuracy")][column].dropna().unique()
        if len(values) != 1:
            raise SystemExit(f"{self.dir.name}: {role} cells have {len(values)} values of {column}, expected one")
        return values[0]

    def epochs(self) -> str:
        """How long the tables' networks trained: one figure, or one per training regime where a study trains its
        regimes for different lengths (``[training.fgsm] epochs``)."""
        c = self.cells
        c = c[(c["role"] == "table") & (c["kind"] == "accuracy")]
        by = {t: sorted(int(e) for e in g["model.epochs"].dropna().unique()) for t, g in c.groupby("model.training")}
        if any(len(e) != 1 for e in by.values()):
            raise SystemExit(f"{self.dir.name}: a training regime's table cells have several epoch counts: {by}")
        if len({e[0] for e in by.values()}) == 1:
            return f"{next(iter(by.values()))[0]} epochs"
        order = sorted(by, key=lambda t: (t != "natural", t))
        return " and ".join(f"{by[t][0]} epochs ({t if t == 'natural' else t.upper()})" for t in order)

    @property
    def preset(self) -> str:
        """The preset a paper-tables report names in its title (the directory's name where it names none)."""
        m = re.search(r"^# Robustness report: preset (\S+)", self.text, re.M)
        return m.group(1) if m else self.dir.name

    @property
    def incomplete(self) -> str:
        """What an unfinished study's report says it lacks (its '**Incomplete.**' paragraph), or ''."""
        m = re.search(r"^\*\*Incomplete\.\*\* (.*)$", self.text, re.M)
        return m.group(1) if m else ""

    @property
    def table_eps(self) -> float:
        m = re.search(r"at eps = ([0-9.]+)/255", self.text)
        if m is None:
            raise SystemExit(f"{self.dir.name}: REPORT.md names no table eps")
        return float(m.group(1)) / 255

    def diagnostics_summary(self, first_check: int) -> str:
        """Counts of the diagnostics' verdicts and, for each warning, the model and the check that gave it."""
        header, rows = self.table("Gradient-masking diagnostics")
        checks = header[first_check:]
        verdicts = [v for row in rows for v in row[first_check:]]
        model_columns = first_check - 1 if "seed" in header else first_check
        warned: dict[str, list[str]] = {}
        for row in rows:
            for check, verdict in zip(checks, row[first_check:]):
                if verdict == "WARN":
                    warned.setdefault(check, []).append(", ".join(row[:model_columns]))
        warns = [f"{check}: {'; '.join(models)}" for check, models in warned.items()]
        return (
            f"{verdicts.count('PASS')} checks pass, {verdicts.count('WARN')} warn"
            + (f" ({'; '.join(warns)})" if warns else "")
            + f", {verdicts.count('N/A')} do not apply, over {len(rows)} models"
        )

    def claims(self, heading: str = "The paper's claims, judged from our numbers") -> dict[str, "Judged"]:
        """Each claim's verdict and paired test, by its text, from the claims table."""
        out = {}
        for claim, verdict, numbers in self.table_rows(heading):
            m = re.search(
                r": ([+-]\d+\.\d) points \[95% CI [^\]]+\]; (?:exact McNemar|paired over \d+ training seeds, "
                r"t-test) p = ([0-9.e+-]+)",
                numbers,
            )
            if m is None:  # not applicable: its premise is not shown
                continue
            holm = re.search(r"Holm-adjusted over the \d+ models: p = ([0-9.e+-]+)", numbers)
            every = re.search(r"every seed significantly (better|worse) by its own exact test", numbers)
            rules = re.search(r"the data ((?:do not )?rule out .*?)(?:; Holm|$)", numbers)
            out[claim] = Judged(
                verdict,
                float(m.group(1)),
                float(m.group(2)),
                None if holm is None else float(holm.group(1)),
                "" if every is None else every.group(1),
                "" if rules is None else rules.group(1),
            )
        return out

    def claim(self, text: str) -> "Judged":
        """The claim whose text is ``text``, from the claims table."""
        found = self.claims().get(text)
        if found is None:
            raise SystemExit(f"{self.dir.name}: no claim {text!r} with numbers in REPORT.md")
        return found

    def matched_eps(self, attack: str) -> tuple[float, bool]:
        """The eps the matched-eps section reads ``attack`` at, and whether it is a match (within its tolerance of
        the paper's baseline) or only the closest eps measured."""
        matched = re.search(
            rf"^{attack.upper()} at eps = ([0-9.]+)/255, where our naturally trained baseline", self.text, re.M
        )
        closest = re.search(
            rf"^{attack.upper()}: no evaluated eps brings .*?the closest, eps = ([0-9.]+)/255", self.text, re.M
        )
        m = matched or closest
        if m is None:
            raise SystemExit(f"{self.dir.name}: no matched-eps section for {attack}")
        c = self.cells  # the measured eps that the report printed rounded
        measured = c[
            (c["role"] == "table")
            & (c["attack"] == attack)
            & (c["model.name"] == "baseline")
            & (c["threat"] == "white-box")
        ]["eps"]
        nearest = float(measured.iloc[(measured - float(m.group(1)) / 255).abs().argmin()])
        if abs(255 * nearest - float(m.group(1))) > 0.006:
            raise SystemExit(f"{self.dir.name}: no {attack} cell at the matched eps {m.group(1)}/255")
        return nearest, matched is not None


def span(values: list[float], digits: int = 1) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.{digits}f}%" if f"{lo:.{digits}f}" == f"{hi:.{digits}f}" else f"{lo:.{digits}f}-{hi:.{digits}f}%"


@dataclass(frozen=True)
class Judged:
    """A claim as REPORT.md judged it: verdict, paired difference (points), the test's p, the Holm-adjusted p within
    its family (None: a report made before families), whether every seed's exact test agrees, what the data rule
    out."""

    verdict: str
    diff: float
    p: float
    holm: float | None = None
    every_seed: str = ""
    rules_out: str = ""


def judged(c: Judged) -> str:
    """The words for a paired difference, by the rule the report applies (claims.significant, Holm within a family),
    and never against what every seed's own exact test says."""
    tests = f"p {c.p:.2g}" + ("" if c.holm is None else f", Holm {c.holm:.2g}")
    if c.every_seed:
        return f"{c.every_seed} in every training seed by its own exact test ({c.diff:+.1f} points; over seeds {tests})"
    if (c.p if c.holm is None else c.holm) < 0.05:
        return f"significantly {'better' if c.diff > 0 else 'worse'} ({c.diff:+.1f} points, {tests})"
    return f"not significantly different ({c.diff:+.1f} points, {tests})"


def _ruled_out(claims: dict[str, Judged]) -> str:
    """What the paired data rule out where a claim was not reproduced, model by model (the one-sided tests)."""
    said = [f"{display(m)}: the data {c.rules_out}" for m, c in claims.items() if c.rules_out]
    return (" " + "; ".join(said) + ".") if said else ""


def _leaking_line(r: Report) -> str:
    """Label leaking as the report judged it: seed by seed where it lists the seeds, else on the paired test."""
    verdict = next((p for p in r.paragraphs("Label leaking") if p.startswith(("Label leaking", "No model"))), "")
    found = re.search(r"judged seed by seed\): (.*)\.$", verdict)
    if found:
        return f"- Label leaking (true-label against predicted-label FGSM, each seed's exact test): {found.group(1)}."
    leaking = r.table_rows("Label leaking")
    leaks = [row for row in leaking if float(row[4].split()[0]) > 0]
    return (
        f"- Label leaking: {len(leaking) - len(leaks)} of {len(leaking)} models are no more accurate under FGSM "
        "crafted with the true labels than with their own "
        + (
            "predictions, so our FGSM training shows no label leaking at this size."
            if not leaks
            else "predictions; more accurate under the true labels: "
            + "; ".join(f"{row[0]} ({row[1]}) by {row[4].split()[0]} points" for row in leaks)
            + "."
        )
    )


def paper_account(name: str) -> str:
    """The account of a report of the paper's tables (``report = "paper"``): clean accuracy, the headline claims and
    the diagnostics, each number read from the report."""
    r, paper = Report(name), paper_tables()
    eps = r.table_eps
    at = f"{255 * eps:g}/255"
    n, diagnosed = int(r.one("subset_n")), int(r.one("subset_n", role="diagnostics"))
    width, epochs, dataset = float(r.one("model.width")), r.epochs(), str(r.one("dataset"))
    clean = {t: [r.accuracy(m, t, "none", "none", None) for m in PAPER_COLUMNS] for t in ("natural", "fgsm")}
    paper_clean = {
        t: [paper_value(paper, 7, row, "none", m) for m in PAPER_COLUMNS]
        for t, row in (("natural", "natural"), ("fgsm", "adversarial"))
    }
    white = {a: [r.accuracy(m, "natural", "white-box", a, eps) for m in PAPER_COLUMNS] for a in ("fgsm", "bim")}
    gains = {
        m: r.claim(f"Naturally trained {display(m)} resists white-box FGSM far better than the baseline (>= 10 points)")
        for m in DCNETS
    }
    paper_gaps = [
        paper_value(paper, 7, "natural", "fgsm", m) - paper_value(paper, 7, "natural", "fgsm", "baseline")
        for m in DCNETS
    ]
    reproduced = [m for m, c in gains.items() if c.verdict == "reproduced"]
    headline = (
        "**not reproduced**" if not reproduced else f"reproduced for {', '.join(display(m) for m in reproduced)} only"
    )
    seeds = r.seeds()
    over = "" if len(seeds) == 1 else f"; each figure the mean over training seeds {', '.join(map(str, seeds))}"
    lines = [
        f"## Where we agree with the paper, and where not ({r.preset} preset)",
        "",
        f"- Clean accuracy ({n:,} test images of {DATASETS.get(dataset, dataset)}{over}): natural models "
        f"{span(clean['natural'])} (the paper, on CIFAR-10: {span(paper_clean['natural'], 2)}), FGSM-trained "
        f"{span(clean['fgsm'])} (the paper: "
        f"{span(paper_clean['fgsm'], 2)}); our networks are cnn9 at width {width:g}, trained for {epochs}.",
        f"- At the protocol's eps {at} every natural model falls to {span(white['fgsm'])} under white-box FGSM and to "
        f"{span(white['bim'])} under BIM. Against the naturally trained baseline under FGSM the DCNets are "
        + "; ".join(f"{display(m)} {judged(c)}" for m, c in gains.items())
        + f" (the paper: {min(paper_gaps):.0f}-{max(paper_gaps):.0f} points): the headline claim is {headline}."
        + _ruled_out(gains),
    ]
    for attack in ("fgsm", "bim"):
        e, is_match = r.matched_eps(attack)
        base = r.accuracy("baseline", "natural", "white-box", attack, e)
        dc = [r.accuracy(m, "natural", "white-box", attack, e) for m in DCNETS]
        dc_paper = [paper_value(paper, 7, "natural", attack, m) for m in DCNETS]
        lines.append(
            f"- Matched eps, {attack.upper()} (a sensitivity analysis: each attack at the eps where our natural "
            "baseline comes closest to the paper's, which no single paper setting need share): "
            + ("" if is_match else "no measured eps comes within 2 points of the paper's baseline; the closest, ")
            + f"at {255 * e:.3g}/255 the baseline keeps {base:.1f}% (the paper: "
            f"{paper_value(paper, 7, 'natural', attack, 'baseline'):.1f}%), the DCNets {span(dc)} (the paper: "
            f"{span(dc_paper)})."
        )
    helps_fgsm = (
        r.accuracy("baseline", "fgsm", "white-box", "fgsm", eps),
        r.accuracy("baseline", "natural", "white-box", "fgsm", eps),
    )
    helps_bim = (
        r.accuracy("baseline", "fgsm", "white-box", "bim", eps),
        r.accuracy("baseline", "natural", "white-box", "bim", eps),
    )
    bim_verdict = r.claim("... but not against white-box BIM (within 5 points)").verdict
    lines.append(
        f"- FGSM adversarial training helps the baseline against FGSM ({helps_fgsm[0]:.1f}% against "
        f"{helps_fgsm[1]:.1f}% at {at}) and, {'unlike' if bim_verdict == 'not reproduced' else 'as'} in the paper, "
        f"against BIM too ({helps_bim[0]:.1f}% against {helps_bim[1]:.1f}%)."
    )
    adv = {
        m: r.claim(
            f"Adversarially trained {display(m)} resists white-box BIM better than the adversarially trained baseline "
            "(>= 5 points)"
        )
        for m in DCNETS
    }
    lines.append(
        "- Adversarially trained, under white-box BIM against the adversarially trained baseline: "
        + "; ".join(f"{display(m)} {judged(c)}" for m, c in adv.items())
        + (
            ". One training seed: more seeds would give the paired interval over seeds."
            if len(seeds) == 1
            else f" (paired over {len(seeds)} training seeds)."
        )
    )
    worst = {
        m: r.claims().get(
            f"Adversarially trained {display(m)} resists the worst case over our white-box attacks better than the "
            "adversarially trained baseline (>= 5 points)"
        )
        for m in DCNETS
    }
    if all(c is not None for c in worst.values()):
        lines.append(
            "- Adversarially trained, under the per-image worst case over the table's white-box attacks (FGSM, FGSM "
            "with predicted labels, BIM) against the adversarially trained baseline: "
            + "; ".join(f"{display(m)} {judged(c)}" for m, c in worst.items() if c is not None)
            + "."
        )
    heading = "Worst case over every white-box attack (diagnostics subset)"
    if f"## {heading}" in r.text:
        rows = [row for row in r.table_rows(heading) if row[1] == "fgsm"]
        lines.append(
            f"- FGSM-trained, per-image worst case over every white-box attack run on the diagnostics' images "
            f"({rows[0][4]} images; BIM in brackets): "
            + "; ".join(
                f"{row[0]} (seed {row[2]}) {row[7].split()[0]}% ({row[5].split()[0]}%, {row[8]} points)" for row in rows
            )
            + "."
        )
    lines.append(_leaking_line(r))
    signatures = r.bullets("The paper's own cells, read by our rules")
    if signatures:
        kinds = {s.split(":")[0]: sum(1 for t in signatures if t.startswith(s.split(":")[0])) for s in signatures}
        lines.append(
            "- The paper's own Tables 7 and 8, read by the rules our diagnostics apply to ours (the report's section "
            "of that name lists each with its numbers): "
            + "; ".join(
                f"{what if what[:2].isupper() else what[0].lower() + what[1:]} ({n} cell{'s' if n > 1 else ''})"
                for what, n in kinds.items()
            )
            + ". These are the signatures of gradient masking and of catastrophic overfitting; the paper states "
            "neither its eps nor its attack steps, so they are reasons to read its numbers with care, not proofs."
        )
    if "## Catastrophic overfitting during training" in r.text:
        checked = r.table_rows("Catastrophic overfitting during training")
        collapsed = [f"{row[0]} from epoch {row[5].split()[-1]}" for row in checked if row[5] != "none seen"]
        lines.append(
            f"- Catastrophic overfitting (the per-epoch PGD-10 check during training, {len(checked)} trained "
            "networks): "
            + (
                f"{'; '.join(collapsed)}, the others none; evaluated at the last epoch all the same."
                if collapsed
                else "none seen."
            )
        )
    diagnosed_seeds = r.seeds("diagnostics")
    of_seeds = (
        ""
        if diagnosed_seeds == seeds
        else f" of training seed{'s' if len(diagnosed_seeds) > 1 else ''} {', '.join(map(str, diagnosed_seeds))}"
    )
    lines.append(
        f"- Gradient-masking diagnostics (on {diagnosed:,} images{of_seeds}): {r.diagnostics_summary(3)} (BPDA does "
        "not apply to models without decoupled layers). These checks find gross masking; they do not prove "
        "robustness."
    )
    return "\n".join(lines)


def shipped_account(name: str) -> str:
    """The checkpoints shipped beside a report (reports/NAME/models) that its tables do not hold, each with the
    clean accuracy its card gives: a black-box source, or a later training seed not yet evaluated."""
    r = Report(name)
    clean = r.cells[(r.cells["role"] == "table") & (r.cells["attack"] == "none")]
    held = set(zip(clean["model.name"], clean["model.training"], clean["model.seed"], clean["model.epochs"]))
    lines = []
    for path in sorted((r.dir / "models").glob("*/*/*/*/card.json")):
        card = json.loads(path.read_text(encoding="utf-8"))
        model, training, seed = card["model"]["name"], card["training"]["label"], card["seed"]
        if (model, training, seed, card["epochs"]) not in held:  # a source of another length beside a table model
            lines.append(
                f"- {display(model)}, {training}, training seed {seed}, {card['epochs']} epochs: "
                f"{100 * card['clean_test_accuracy']:.2f}% clean "
                f"on {card['test_images']:,} test images by its card (`{path.parent.relative_to(r.dir)}`)"
            )
    if not lines:
        return ""
    return "\n".join(
        [f"Shipped in {name}/models/ but not in its report's tables (the report may use it as a black-box source):", ""]
        + lines
    )


def strength_account(smaller: str, stronger: str) -> str:
    """Two paper-tables reports side by side (the weaker networks first), one table per training regime: whether
    the DCNets' white-box advantage over the baseline moves with the networks' strength, each number from the two
    reports' cells and claims tables."""
    reports, paper = [Report(smaller), Report(stronger)], paper_tables()
    if len({r.table_eps for r in reports}) != 1:
        raise SystemExit(f"{smaller} and {stronger} have their tables at different eps")
    at = f"{255 * reports[0].table_eps:g}/255"
    names = [r.preset for r in reports]
    # Per regime: its name here and in the paper's tables, its word, its claim's attack, text and threshold.
    regimes = (
        (
            "natural",
            "natural",
            "Naturally trained",
            "fgsm",
            "Naturally trained {} resists white-box FGSM far better than the baseline (>= 10 points)",
            10,
        ),
        (
            "fgsm",
            "adversarial",
            "FGSM-trained",
            "bim",
            "Adversarially trained {} resists white-box BIM better than the adversarially "
            "trained baseline (>= 5 points)",
            5,
        ),
    )
    described = [
        f"{name}: cnn9 at width {float(r.one('model.width')):g}, {r.epochs()}, {int(r.one('subset_n')):,} test images"
        for name, r in zip(names, reports)
    ]
    incomplete = [(name, r.incomplete) for name, r in zip(names, reports) if r.incomplete]
    lines = [
        f"## Does the DCNets' advantage move with the networks' strength? ({names[0]} against {names[1]})",
        "",
        f"White-box at {at} ({'; '.join(described)}), one table per training regime. The last columns are the "
        "paired difference behind the paper's claim for that regime."
        + "".join(f" The {name} report is incomplete: {why[0].lower()}{why[1:]}" for name, why in incomplete),
    ]
    for training, in_paper, word, attack, claim, threshold in regimes:
        present = [r for r in reports if any(r.has(m, training) for m in PAPER_COLUMNS)]
        if len(present) < 2:
            continue
        gaps = [
            paper_value(paper, 7, in_paper, attack, m) - paper_value(paper, 7, in_paper, attack, "baseline")
            for m in DCNETS
        ]
        reproduced = [
            f"{display(m)} in {name}"
            for name, r in zip(names, reports)
            for m in DCNETS
            if r.has(m, training) and r.claim(claim.format(display(m))).verdict == "reproduced"
        ]

        def value(r: Report, m: str, attack_: str, training_: str = training) -> str:
            if not r.has(m, training_):
                return "not evaluated"
            if attack_ == "none":
                return f"{r.accuracy(m, training_, 'none', 'none', None):.2f}"
            return f"{r.accuracy(m, training_, 'white-box', attack_, r.table_eps):.2f}"

        def headline(r: Report, m: str, claim_: str = claim, training_: str = training) -> str:
            if m == "baseline" or not r.has(m, training_):
                return ""
            return judged(r.claim(claim_.format(display(m))))

        difference = f"{attack.upper()} minus baseline"
        columns = ("clean %", f"FGSM @ {at} %", f"BIM @ {at} %", difference)
        header = ["model"] + [f"{what}, {name}" for what in columns for name in names]
        rows = [
            [display(m)]
            + [value(r, m, a) for a in ("none", "fgsm", "bim") for r in reports]
            + [headline(r, m) for r in reports]
            for m in PAPER_COLUMNS
        ]
        lines += [
            "",
            f"{word} networks. '{difference}': the paper {min(gaps):.0f}-{max(gaps):.0f} points, its claim asks for "
            f"at least {threshold}; reproduced for {', '.join(reproduced) or 'no DCNet in either report'}.",
            "",
            "| " + " | ".join(header) + " |",
            "|" + " --- |" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows),
        ]
    return "\n".join(lines)


def percent(cell: str) -> float:
    """The accuracy of a rendered cell ("77.10 [74.4, 79.6]", or "mean ± sd [...]")."""
    return float(cell.split()[0])


def study_account(name: str) -> str:
    """The account of a study report: clean accuracy, each claim's verdict, gates, BPDA and the diagnostics, each
    number read from the report."""
    r = Report(name)
    title = re.search(r"^# Study (\S+): ", r.text, re.M)
    lines = [f"## What the {title.group(1) if title else name} study shows, from its cells", ""]
    regimes = re.findall(r"^## Accuracy: (\S+) training$", r.text, re.M)
    clean, bpda_gaps = [], []
    for training in regimes:
        header, rows = r.table(f"Accuracy: {training} training")
        if header[0] == "model":  # long: a row per model, threat and eps; the clean accuracy on a model's first row
            col = {c: i for i, c in enumerate(header)}
            firsts = [row for row in rows if row[col["clean"]]]
            clean.append(f"{training}: " + ", ".join(f"{row[0]} {percent(row[col['clean']]):.1f}%" for row in firsts))
            if {"pgd", "bpda-pgd"} <= set(col):
                bpda_gaps += [
                    abs(percent(row[col["bpda-pgd"]]) - percent(row[col["pgd"]]))
                    for row in rows
                    if row[1] == "white-box" and "-" not in (row[col["bpda-pgd"]], row[col["pgd"]])
                ]
            continue
        by_row = {row[0]: row[1:] for row in rows}
        clean.append(f"{training}: " + ", ".join(f"{m} {percent(v):.1f}%" for m, v in zip(header[1:], by_row["clean"])))
        for what, values in by_row.items():
            if what.startswith("white-box bpda-pgd"):
                pgd = by_row[what.replace("bpda-pgd", "pgd")]
                bpda_gaps += [abs(percent(a) - percent(b)) for a, b in zip(values, pgd) if "-" not in (a, b)]
    lines.append(f"- Clean accuracy ({int(r.one('subset_n')):,} test images): " + "; ".join(clean) + ".")
    if "## Executed blocks" in r.text:
        _, rows = r.table("Executed blocks")
        lines.append(
            "- Gates: "
            + "; ".join(
                f"{row[0]} executes {float(row[1]):.0f}% of its blocks on average "
                f"({min(map(int, row[2].split()))}-{max(map(int, row[2].split()))}% per block)"
                for row in rows
            )
            + "."
        )
    for text, c in r.claims("Claims").items():
        lines.append(f'- Claim "{text}": {c.verdict} ({c.diff:+.1f} points, exact p {c.p:.2g}).')
    if bpda_gaps:
        lines.append(
            f"- BPDA-PGD (surrogate gradients: hard decisions through their soft relaxation, decoupled operators "
            f"through an ordinary convolution) is within {max(bpda_gaps):.1f} points of PGD for every model, training "
            "and eps of the tables."
        )
    if "## Gradient-masking diagnostics" in r.text and (r.cells["role"] == "diagnostics").any():
        diagnosed = int(r.one("subset_n", role="diagnostics"))
        lines.append(
            f"- Gradient-masking diagnostics (on {diagnosed:,} images): {r.diagnostics_summary(1)}. These checks find "
            "gross masking; they do not prove robustness."
        )
    return "\n".join(lines)


SECTIONS = {
    "quick-cifar10": lambda: paper_account("quick-cifar10"),
    "smoke-digits": lambda: paper_account("smoke-digits"),
    "seeds-smoke-digits": lambda: study_account("seeds-smoke-digits"),
    "aig-cifar10": lambda: study_account("aig-cifar10"),
    "paper-gap": lambda: study_account("paper-gap"),
    "paper-cpu": lambda: "\n\n".join(
        part
        for part in (
            paper_account("paper-cpu"),
            shipped_account("paper-cpu"),
            strength_account("quick-cifar10", "paper-cpu"),
        )
        if part
    ),
}


def render(readme: str) -> str:
    for name, make in SECTIONS.items():
        start, end = (
            f"<!-- account {name}: generated by scripts/accounts.py from reports/{name}; edit the script, not this "
            "text -->",
            f"<!-- /account {name} -->",
        )
        pattern = re.compile(rf"<!-- account {re.escape(name)}\b.*?-->.*?{re.escape(end)}", re.S)
        if not pattern.search(readme):
            raise SystemExit(
                f"{README}: no generated section for {name} (mark it with <!-- account {name} --> ... {end})"
            )
        readme = pattern.sub(lambda _: f"{start}\n{make()}\n{end}", readme)
    return readme


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 where reports/README.md differs from what its reports' cells give"
    )
    args = parser.parse_args()
    current = README.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            print(
                f"{README}: a generated account differs from its report's cells; run python scripts/accounts.py",
                file=sys.stderr,
            )
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
