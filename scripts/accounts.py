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
import re
import sys
from pathlib import Path

import pandas as pd

from robustbench_dc.paper import PAPER_COLUMNS, display, paper_tables, paper_value

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "reports" / "README.md"
DCNETS = PAPER_COLUMNS[1:]


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
        """Accuracy % of the one table cell that matches (the clean cell for attack ``none``)."""
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
        if len(rows) != 1:
            raise SystemExit(
                f"{self.dir.name}: {len(rows)} cells for {model} {training} {threat} {attack} eps {eps}; expected one"
            )
        return 100 * float(rows["accuracy"].iloc[0])

    def table_rows(self, heading: str) -> list[list[str]]:
        """The body rows of the first Markdown table under ``## heading``."""
        section = self.text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
        lines = [ln for ln in section.splitlines() if ln.startswith("|")]
        return [[cell.strip() for cell in ln.strip("|").split("|")] for ln in lines[2:]]

    def claim(self, text: str) -> tuple[str, float, float]:
        """(verdict, difference in points, p) of the claim whose text is ``text``, from the claims table."""
        for claim, verdict, numbers in self.table_rows("The paper's claims, judged from our numbers"):
            if claim == text:
                m = re.search(
                    r": ([+-]\d+\.\d) points \[95% CI [^\]]+\]; (?:exact McNemar|paired over \d+ training seeds, "
                    r"t-test) p = ([0-9.e+-]+)",
                    numbers,
                )
                if m is None:
                    raise SystemExit(f"{self.dir.name}: cannot read the numbers of claim {text!r}: {numbers!r}")
                return verdict, float(m.group(1)), float(m.group(2))
        raise SystemExit(f"{self.dir.name}: no claim {text!r} in REPORT.md")

    def matched_eps(self, attack: str) -> float:
        m = re.search(
            rf"^{attack.upper()} at eps = ([0-9.]+)/255, where our naturally trained baseline", self.text, re.M
        )
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
        return nearest


def span(values: list[float], digits: int = 1) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.{digits}f}%" if f"{lo:.{digits}f}" == f"{hi:.{digits}f}" else f"{lo:.{digits}f}-{hi:.{digits}f}%"


def judged(diff: float, p: float) -> str:
    """The words for a paired difference, by the exact test's verdict (claims.significant)."""
    if p < 0.05:
        return f"significantly {'better' if diff > 0 else 'worse'} ({diff:+.1f} points, p {p:.2g})"
    return f"not significantly different ({diff:+.1f} points, p {p:.2g})"


def quick_cifar10() -> str:
    r, paper = Report("quick-cifar10"), paper_tables()
    eps = 8 / 255
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
    reproduced = [m for m, (verdict, _, _) in gains.items() if verdict == "reproduced"]
    headline = (
        "**not reproduced**" if not reproduced else f"reproduced for {', '.join(display(m) for m in reproduced)} only"
    )
    lines = [
        "## Where we agree with the paper, and where not (quick preset)",
        "",
        f"- Clean accuracy (1,000 test images): natural models {span(clean['natural'])} (the paper: "
        f"{span(paper_clean['natural'], 2)}), FGSM-trained {span(clean['fgsm'])} (the paper: "
        f"{span(paper_clean['fgsm'], 2)}): our networks are a quarter as wide and trained for 5 epochs.",
        f"- At the protocol's eps 8/255 every natural model falls to {span(white['fgsm'])} under white-box FGSM and to "
        f"{span(white['bim'])} under BIM. Against the naturally trained baseline under FGSM the DCNets are "
        + "; ".join(f"{display(m)} {judged(d, p)}" for m, (_, d, p) in gains.items())
        + f", nowhere near the paper's {min(paper_gaps):.0f}-{max(paper_gaps):.0f} points: the headline claim is "
        f"{headline}.",
    ]
    for attack in ("fgsm", "bim"):
        e = r.matched_eps(attack)
        base = r.accuracy("baseline", "natural", "white-box", attack, e)
        dc = [r.accuracy(m, "natural", "white-box", attack, e) for m in DCNETS]
        dc_paper = [paper_value(paper, 7, "natural", attack, m) for m in DCNETS]
        lines.append(
            f"- Matched eps, {attack.upper()} (a sensitivity analysis: each attack at the eps where our natural "
            f"baseline comes closest to the paper's, which no single paper setting need share): at {255 * e:.3g}/255 "
            f"the baseline keeps {base:.1f}% (the paper: {paper_value(paper, 7, 'natural', attack, 'baseline'):.1f}%), "
            f"the DCNets {span(dc)} (the paper: {span(dc_paper)})."
        )
    helps_fgsm = (
        r.accuracy("baseline", "fgsm", "white-box", "fgsm", eps),
        r.accuracy("baseline", "natural", "white-box", "fgsm", eps),
    )
    helps_bim = (
        r.accuracy("baseline", "fgsm", "white-box", "bim", eps),
        r.accuracy("baseline", "natural", "white-box", "bim", eps),
    )
    bim_verdict = r.claim("... but not against white-box BIM (within 5 points)")[0]
    lines.append(
        f"- FGSM adversarial training helps the baseline against FGSM ({helps_fgsm[0]:.1f}% against "
        f"{helps_fgsm[1]:.1f}% at 8/255) and, {'unlike' if bim_verdict == 'not reproduced' else 'as'} in the paper, "
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
        + "; ".join(f"{display(m)} {judged(d, p)}" for m, (_, d, p) in adv.items())
        + ". One training seed: the preset's three seeds would give the paired interval over seeds."
    )
    leaking = r.table_rows("Label leaking")
    leaks = [row for row in leaking if float(row[4].split()[0]) > 0]
    lines.append(
        f"- Label leaking: {len(leaking) - len(leaks)} of {len(leaking)} models are less accurate under FGSM crafted "
        "with the true labels than with their own "
        f"predictions{', so our FGSM training shows no label leaking at this size' if not leaks else ''}."
    )
    diagnostics = r.table_rows("Gradient-masking diagnostics")
    verdicts = [v for row in diagnostics for v in row[3:]]
    warns = [f"{row[0]} ({row[1]})" for row in diagnostics if "WARN" in row[3:]]
    lines.append(
        f"- Gradient-masking diagnostics (on 200 images): {verdicts.count('PASS')} checks pass, "
        f"{verdicts.count('WARN')} warn"
        + (f" ({', '.join(warns)})" if warns else "")
        + f", {verdicts.count('N/A')} do not apply (BPDA for models without decoupled layers), "
        f"over {len(diagnostics)} models. These checks find gross masking; they do not prove robustness."
    )
    return "\n".join(lines)


SECTIONS = {"quick-cifar10": quick_cifar10}


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
