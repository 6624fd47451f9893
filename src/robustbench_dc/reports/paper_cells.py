"""The paper's own Tables 7 and 8 read by the rules our diagnostics apply to our cells (docs/protocol.md, section 8):
the signatures of gradient masking and of catastrophic overfitting that a referee looks for, found in its numbers."""

from __future__ import annotations

from typing import Callable

import pandas as pd

from robustbench_dc.paper import PAPER_COLUMNS, PAPER_TRAINING, display, paper_value

#: (model, training, table, attack) -> accuracy %, or None
Value = Callable[[str, str, int, str], "float | None"]

#: points: an FGSM advantage over the baseline this large that BIM halves is the masking signature (ours too)
FGSM_GAIN = 10.0
#: FGSM accuracy at this share of clean accuracy or more, after FGSM training, with BIM at half of FGSM or less
FGSM_OF_CLEAN = 0.9


def masking_gains(
    value: Value, models: list[str], trainings=("natural", "fgsm")
) -> list[tuple[str, str, float, float]]:
    """(model, training, FGSM gain, BIM gain) over the baseline, white-box, where the FGSM gain is at least
    ``FGSM_GAIN`` points and BIM keeps less than half of it: an advantage an iterative attack removes."""
    out = []
    for training in trainings:
        bf, bb = value("baseline", training, 7, "fgsm"), value("baseline", training, 7, "bim")
        for m in models:
            f, b = value(m, training, 7, "fgsm"), value(m, training, 7, "bim")
            if m == "baseline" or None in (bf, bb, f, b):
                continue
            gain, kept = f - bf, b - bb  # type: ignore[operator]
            if gain >= FGSM_GAIN and kept < gain / 2:
                out.append((m, training, gain, kept))
    return out


def paper_signatures(paper: pd.DataFrame) -> list[str]:
    """Every signature the paper's cells carry, one sentence each with the numbers that show it: white-box no
    stronger than black-box (gradient masking: Carlini et al. 2019, our check 2); a single-step advantage over the
    baseline that BIM removes (masking: Athalye et al. 2018); FGSM at ``FGSM_OF_CLEAN`` of clean accuracy or more
    after FGSM training with BIM at half of FGSM or less (catastrophic overfitting, Wong et al. 2020, or label
    leaking, Kurakin et al. 2017)."""

    def value(model: str, training: str, table: int, attack: str) -> float | None:
        return paper_value(paper, table, PAPER_TRAINING[training], attack, model)

    models, lines = list(PAPER_COLUMNS), []
    for training, row in PAPER_TRAINING.items():
        for m in models:
            for attack in ("fgsm", "bim"):
                white, black = value(m, training, 7, attack), value(m, training, 8, attack)
                if white is not None and black is not None and white >= black:
                    lines.append(
                        f"White-box no stronger than black-box: {display(m)} ({row}) keeps {white:.2f}% under "
                        f"white-box {attack.upper()} and {black:.2f}% under black-box {attack.upper()}."
                    )
    for m, training, gain, kept in masking_gains(value, models):
        lines.append(
            f"Single-step advantage that an iterative attack removes: {display(m)} ({PAPER_TRAINING[training]}) is "
            f"{gain:+.2f} points over the baseline under white-box FGSM and {kept:+.2f} under BIM."
        )
    for m in models:
        clean, fgsm, bim = (value(m, "fgsm", 7, a) for a in ("none", "fgsm", "bim"))
        if None in (clean, fgsm, bim):
            continue
        if fgsm >= FGSM_OF_CLEAN * clean and bim <= fgsm / 2:  # type: ignore[operator]
            lines.append(
                f"FGSM barely touches an FGSM-trained model that BIM breaks: {display(m)} (adversarial) keeps "
                f"{fgsm:.2f}% of its {clean:.2f}% clean accuracy under FGSM ({100 * fgsm / clean:.0f}%) and "  # type: ignore[operator]
                f"{bim:.2f}% under BIM."
            )
    return lines
