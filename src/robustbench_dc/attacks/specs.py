"""The attacks we offer, as small frozen descriptions; backends (torchattacks, foolbox) carry them out.

Parameters follow docs/protocol.md, section 2; every one is stored with each result.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, Iterable

from robustbench_dc import names
from robustbench_dc.errors import UserError
from robustbench_dc.names import (
    Norm,
    Outcome,
    Threat,
    eps_label,  # noqa: F401  (re-exported: its home is names, torch-free)
    unknown,
)


@dataclass(frozen=True)
class Attack:
    """An untargeted attack in [0, 1] pixel space, L-infinity unless ``norm`` says L2."""

    name: ClassVar[str]
    #: the threat model: "linf" (eps in [0, 1]) or "l2" (eps in L2 units of [0, 1] pixels, e.g. 0.5 on CIFAR-10)
    norm: ClassVar[Norm] = Norm.LINF
    #: white-box attacks need the target's gradients; "query" attacks only its outputs (black-box).
    access: ClassVar[str] = Threat.WHITE_BOX
    #: whether the result depends on random draws (so on how images are batched, and on the device's generator)
    randomized: ClassVar[bool] = False
    #: craft against the model's own predictions instead of the true labels
    predicted_labels: ClassVar[bool] = False
    #: the package that carries out this attack whatever the chosen backend (None: the backend does)
    library: ClassVar[str | None] = None
    #: the fewest classes the attack's loss is defined for (the DLR loss reads the third or fourth largest logit)
    min_classes: ClassVar[int] = 2
    #: each batch seeded on its own and kept on disk as it finishes, so an interrupted cell resumes (slow attacks)
    resumable: ClassVar[bool] = False

    def params(self, eps: float) -> dict[str, Any]:
        """The attack's parameters at ``eps`` (what is stored and printed)."""
        return asdict(self)

    @property
    def transferable(self) -> bool:
        """Whether examples crafted on a black-box source make sense for it (gradient attacks: yes)."""
        return self.access == Threat.WHITE_BOX

    @property
    def implementation(self) -> str | None:
        """The package whose code crafts this attack whatever the backend (None: the chosen backend's)."""
        return self.library

    def for_transfer(self) -> "Attack":
        """The attack as it is crafted on a black-box source: itself, unless it stops where the source is fooled."""
        return self


@dataclass(frozen=True)
class _StopsEarly(Attack):
    """An iterative attack whose ``outcome`` is either each image's last iterate (every step on every image, as
    torchattacks and Foolbox run it) or misclassified at any iterate (our own loop: an image stops once it is
    misclassified, and one misclassified clean is never attacked). Only the latter is stored with the attack's
    parameters, so cells computed before the choice existed keep their identity and their meaning."""

    outcome: Outcome = field(default=Outcome.ANY_ITERATE, kw_only=True)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "outcome", Outcome(self.outcome))
        except ValueError:
            raise UserError(
                f"{self.name}: outcome must be {' or '.join(map(repr, Outcome.__members__.values()))}, "
                f"got {self.outcome!r}"
            ) from None

    def params(self, eps: float) -> dict[str, Any]:
        return {"outcome": Outcome.ANY_ITERATE} if self.outcome == Outcome.ANY_ITERATE else {}

    @property
    def implementation(self) -> str | None:
        return "robustbench_dc" if self.outcome == Outcome.ANY_ITERATE else self.library

    def for_transfer(self) -> Attack:
        """Stopping where the source is fooled would leave its examples barely across the source's boundary, and
        weaker against any other model: a source crafts every step."""
        return replace(self, outcome=Outcome.LAST_ITERATE)


@dataclass(frozen=True)
class FGSM(Attack):
    """Goodfellow et al. 2015: ``x + eps * sign(grad CE)``, clipped to [0, 1]."""

    name: ClassVar[str] = "fgsm"


@dataclass(frozen=True)
class FGSMPredicted(FGSM):
    """FGSM crafted with the model's predicted labels instead of the true ones. Next to FGSM it measures label
    leaking (Kurakin et al. 2017): a model trained on true-label FGSM examples can be more accurate on them
    than on predicted-label ones, because the perturbation itself gives the label away."""

    name: ClassVar[str] = "fgsm-pred"
    predicted_labels: ClassVar[bool] = True


@dataclass(frozen=True)
class BIM(_StopsEarly):
    """Kurakin et al. 2017: steps of ``step`` (default 1/255), ``min(255 eps + 4, 1.25 * 255 eps)`` of them
    unless ``steps`` is given, projecting after every step; no random start."""

    name: ClassVar[str] = "bim"
    step: float = 1 / 255
    steps: int | None = None

    def params(self, eps: float) -> dict[str, Any]:
        return {"step": self.step, "steps": self.steps_at(eps), **super().params(eps)}

    def steps_at(self, eps: float) -> int:
        if self.steps is not None:
            return self.steps
        return int(math.floor(min(255 * eps + 4, 1.25 * 255 * eps) + 1e-9))


@dataclass(frozen=True)
class PGD(_StopsEarly):
    """Madry et al. 2018: random start, ``steps`` steps; ``restarts`` keeps, per example, the first restart that
    fools the model. The step is ``relative_step * eps`` (eps/4 by default: 2/255 at 8/255), so that PGD stays
    at least as strong as BIM at large eps; give ``step`` for a fixed step instead."""

    name: ClassVar[str] = "pgd"
    randomized: ClassVar[bool] = True
    step: float | None = None
    steps: int = 20
    restarts: int = 1
    relative_step: float = 0.25

    def step_at(self, eps: float) -> float:
        return self.step if self.step is not None else self.relative_step * eps

    def params(self, eps: float) -> dict[str, Any]:
        return {"step": self.step_at(eps), "steps": self.steps, "restarts": self.restarts, **super().params(eps)}


@dataclass(frozen=True)
class SmoothedPGD(PGD):
    """PGD whose gradients are averaged over ``samples`` copies of the input with uniform noise of half-width
    ``radius * eps`` (an expectation over transformations, Athalye et al. 2018), forward pass unchanged. A
    value-preserving transform with an oscillating derivative shatters the true gradient's sign pixel by pixel;
    the average over a neighbourhood recovers the direction, where a smooth model's gradient barely changes. It
    needs no declared part: the automatic counterpart of BPDA for gradient-shattering input transforms."""

    name: ClassVar[str] = "pgd-smoothed"
    samples: int = 8
    radius: float = 0.25  # noise half-width as a fraction of eps (eps/4: one PGD step)

    def params(self, eps: float) -> dict[str, Any]:
        return {**super().params(eps), "samples": self.samples, "noise": self.radius * eps}


@dataclass(frozen=True)
class BPDA(PGD):
    """PGD whose gradients come from a surrogate: every decoupled operator's backward pass is replaced by that
    of an ordinary convolution with the same normalised kernel (forward unchanged). If a DCNet's robustness
    comes from masked gradients, this attack breaks it (Athalye et al. 2018)."""

    name: ClassVar[str] = "bpda-pgd"
    #: names of submodules (non-differentiable or gradient-shattering parts, e.g. an input quantiser) whose
    #: backward pass becomes the identity; their outputs must have their inputs' shape
    straight_through: tuple[str, ...] = ()

    def params(self, eps: float) -> dict[str, Any]:
        return {
            **super().params(eps),
            **({"straight_through": list(self.straight_through)} if self.straight_through else {}),
        }

    @property
    def transferable(self) -> bool:
        """Not through declared parts: those are the target's own, the source has none of them."""
        return not self.straight_through


@dataclass(frozen=True)
class APGDCE(Attack):
    """APGD with the cross-entropy loss (Croce & Hein 2020): step size adapted per example, no step to tune."""

    name: ClassVar[str] = "apgd-ce"
    randomized: ClassVar[bool] = True
    loss: ClassVar[str] = "ce"
    steps: int = 20
    restarts: int = 1


@dataclass(frozen=True)
class APGDDLR(APGDCE):
    """APGD with the difference-of-logits-ratio loss, which rescaling the logits cannot flatten: where it beats
    cross-entropy PGD by much, the cross-entropy gradients were masked (saturated softmax), not the model robust."""

    name: ClassVar[str] = "apgd-dlr"
    loss: ClassVar[str] = "dlr"
    min_classes: ClassVar[int] = 3


@dataclass(frozen=True)
class AutoAttack(Attack):
    """Croce & Hein 2020, the official implementation (the package RobustBench evaluates with, pyautoattack):
    ``standard`` runs APGD-CE, APGD-T, FAB-T (100 iterations each) and Square (5,000 queries) one after another on
    the images still standing; ``plus`` and ``rand`` are its other versions. The only attack that fills a model
    record's ``autoattack_acc``."""

    name: ClassVar[str] = "autoattack"
    randomized: ClassVar[bool] = True
    library: ClassVar[str | None] = "pyautoattack"
    min_classes: ClassVar[int] = 4  # APGD-T's targeted DLR loss
    resumable: ClassVar[bool] = True
    version: str = "standard"

    def __post_init__(self) -> None:
        if self.version not in ("standard", "plus", "rand"):
            raise UserError(f"AutoAttack version must be standard, plus or rand, got {self.version!r}")

    def params(self, eps: float) -> dict[str, Any]:
        return {"version": self.version, "seeding": "per batch"}  # a resumed cell draws what a whole one does


@dataclass(frozen=True)
class AutoAttackTorchattacks(Attack):
    """torchattacks' port of AutoAttack's standard version: not the official code (its APGD, APGD-T and FAB-T take
    their own step counts), so never reported as AutoAttack."""

    name: ClassVar[str] = "autoattack-ta"
    randomized: ClassVar[bool] = True
    min_classes: ClassVar[int] = 4  # APGD-T's targeted DLR loss


@dataclass(frozen=True)
class Square(Attack):
    """Andriushchenko et al. 2020: query-only random-search attack (black-box: needs no gradients)."""

    name: ClassVar[str] = "square"
    access: ClassVar[str] = "query"
    randomized: ClassVar[bool] = True
    n_queries: int = 1000
    p_init: float = 0.8


@dataclass(frozen=True)
class FGM(Attack):
    """The fast gradient method in L2 (Goodfellow et al. 2015; Miyato et al. 2016): ``x + eps * g / ||g||_2``
    with g the cross-entropy gradient, clipped to [0, 1]."""

    name: ClassVar[str] = "fgm"
    norm: ClassVar[Norm] = Norm.L2

    def params(self, eps: float) -> dict[str, Any]:
        return {"norm": Norm.L2}


@dataclass(frozen=True)
class PGDL2(Attack):
    """PGD in L2 (Madry et al. 2018): random start in the L2 ball, ``steps`` normalised-gradient steps of
    ``relative_step * eps`` (eps/4), each followed by projection onto the ball and [0, 1]."""

    name: ClassVar[str] = "pgd-l2"
    norm: ClassVar[Norm] = Norm.L2
    randomized: ClassVar[bool] = True
    steps: int = 20
    relative_step: float = 0.25

    def params(self, eps: float) -> dict[str, Any]:
        return {"norm": Norm.L2, "step": self.relative_step * eps, "steps": self.steps}


ATTACKS: dict[str, type[Attack]] = {
    a.name: a
    for a in (
        FGSM,
        FGSMPredicted,
        BIM,
        PGD,
        BPDA,
        SmoothedPGD,
        APGDCE,
        APGDDLR,
        AutoAttack,
        AutoAttackTorchattacks,
        Square,
        FGM,
        PGDL2,
    )
}
if tuple(ATTACKS) != names.ATTACKS:
    raise ImportError(
        f"robustbench_dc.names.ATTACKS {names.ATTACKS} does not list the attacks defined here {tuple(ATTACKS)}"
    )
if tuple(a for a, cls in ATTACKS.items() if cls.norm == Norm.L2) != names.L2_ATTACKS:
    raise ImportError(f"robustbench_dc.names.L2_ATTACKS {names.L2_ATTACKS} does not list the L2 attacks defined here")


def get_attack(name: str, **params: Any) -> Attack:
    if name not in ATTACKS:
        raise UserError(unknown("attack", name, ATTACKS))
    try:
        return ATTACKS[name](**params)
    except TypeError as exc:
        raise UserError(f"bad parameters for attack {name!r}: {exc}") from exc


def attacks_named(
    names: Iterable[str], *, straight_through: tuple[str, ...] = (), outcome: Outcome = Outcome.ANY_ITERATE
) -> list[Attack]:
    """Attacks by name, as a table asks for them: the submodules named in ``straight_through`` go to every attack
    that takes them (``bpda-pgd``), as they go to the diagnostics' BPDA check; without them ``bpda-pgd`` replaces
    the decoupled operators' backward pass alone. ``outcome`` goes to every iterative attack."""
    out = []
    for name in names:
        takes = {f.name for f in fields(ATTACKS[name])} if name in ATTACKS else set()
        settings: dict[str, Any] = {"outcome": outcome} if "outcome" in takes else {}
        if "straight_through" in takes and straight_through:
            settings["straight_through"] = straight_through
        out.append(get_attack(name, **settings))
    return out
