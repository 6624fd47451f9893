"""The names users type (and how an eps is written), in one torch-free place: the command line builds its choices from
them without
importing torch (``--help`` stays fast), and each module that implements them checks it implements exactly
these at import.
"""

from enum import StrEnum
from typing import Iterable

DATASETS = ("cifar10", "fashion-mnist", "mnist", "digits", "synthetic")
ARCHITECTURES = ("cnn9", "resnet32", "resnet110", "convnet-aig", "drconv", "ir-se")


class Regime(StrEnum):
    """How a model is trained (docs/protocol.md, section 3); the adversarial ones at their ``eps``."""

    NATURAL = "natural"
    FGSM = "fgsm"  # half clean, half FGSM examples: the paper's "adversarial" training
    KURAKIN = "kurakin"  # Kurakin et al. 2017: FGSM examples crafted with the predicted labels
    PGD = "pgd"  # Madry et al. 2018
    FGSM_RS = "fgsm-rs"  # FGSM from a random start (Wong et al. 2020)


class Threat(StrEnum):
    """Who the attacker is, as a result cell records it (its members equal their strings, so stored cells and
    tables compare with them as they are)."""

    NONE = "none"  # clean accuracy
    WHITE_BOX = "white-box"  # the model's own gradients, or queries to it (Square)
    BLACK_BOX = "black-box"  # examples transferred from a source model, or query-only attacks
    LIPSCHITZ = "lipschitz"
    HEALTH = "health"


class Norm(StrEnum):
    """The norm an attack's eps bounds (pixels in [0, 1])."""

    LINF = "linf"
    L2 = "l2"


class Role(StrEnum):
    """What a result cell was computed for; each report section reads its own role only."""

    TABLE = "table"  # Tables 7 and 8, a study's accuracy tables and its claims
    DIAGNOSTICS = "diagnostics"
    TRANSFER_MATRIX = "transfer-matrix"  # every source against every target; never in Tables 7 and 8


class Outcome(StrEnum):
    """What an iterative attack's cell records per image (docs/protocol.md, section 2)."""

    ANY_ITERATE = "any-iterate"  # wrong at any iterate: each image stops once it is misclassified (AutoAttack's count)
    LAST_ITERATE = "last-iterate"  # wrong at the last iterate: every step runs on every image (cells before 0.2)


class CellKind(StrEnum):
    """What a result cell measures."""

    ACCURACY = "accuracy"  # per-image outcomes of clean or attacked predictions
    LIPSCHITZ = "lipschitz"  # an estimate of the model's Lipschitz constant
    HEALTH = "health"  # a diagnostic's own measurement (loss curves, gradient statistics)


class Status(StrEnum):
    """A diagnostic check's outcome."""

    PASS = "pass"
    WARN = "warn"
    NA = "n/a"  # not run: the cells it needs are not in the store


class Verdict(StrEnum):
    """A claim's verdict, judged from our numbers (docs/protocol.md, section 4)."""

    REPRODUCED = "reproduced"
    NOT_REPRODUCED = "not reproduced"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not applicable"  # its premise was not reproduced
    NOT_MEASURED = "not measured"


# the paper's tables say "adversarial" for their adversarially trained models: FGSM training (docs/protocol.md)
REGIME_ALIASES = {"adversarial": "fgsm"}


def regime(name: str) -> str:
    """A training regime or store label as typed, with the tables' word ``adversarial`` meaning ``fgsm``."""
    return REGIME_ALIASES.get(name, name)


SCHEDULES = ("onecycle", "cosine", "triangle")
INITS = ("default", "dirac")
RECIPES = ("standard", "fast")  # named sets of TrainConfig settings (train.RECIPES, docs/recipes.md)
ATTACKS = (
    "fgsm",
    "fgsm-pred",
    "bim",
    "pgd",
    "bpda-pgd",
    "pgd-smoothed",
    "apgd-ce",
    "apgd-dlr",
    "autoattack",
    "autoattack-ta",
    "square",
    "fgm",
    "pgd-l2",
)
L2_ATTACKS = ("fgm", "pgd-l2")  # eps in L2 units of [0, 1] pixels; every other attack is L-inf
BACKENDS = ("torchattacks", "foolbox")
PRESETS = (
    "smoke",
    "quick",
    "paper",
    "paper-cpu",
)  # the shipped studies with report = "paper"; `reproduce --preset` runs them
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def unknown(what: str, name: object, valid: Iterable[str]) -> str:
    """The message for a name that is not one of ``valid``: the closest valid names first ("did you mean"), then all."""
    import difflib

    choices = [str(v) for v in valid]
    close = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ";"
    return f"unknown {what} {name!r}{hint} valid: {', '.join(choices)}"


def eps_label(eps: float, attack: str | None = None) -> str:
    """``8/255`` where eps is a whole number of 255ths, else the number; ``L2 0.5`` for an L2 attack's eps."""
    if attack in L2_ATTACKS:
        return f"L2 {eps:g}"
    k = eps * 255
    whole = abs(k - round(k)) < 1e-6 and (round(k) > 0 or eps == 0)  # 1e-9 is not "0/255"
    return f"{round(k)}/255" if whole else f"{eps:g}"
