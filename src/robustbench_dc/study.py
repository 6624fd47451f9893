"""Studies: any set of models (zoo models with their architecture options, or third-party checkpoints),
training regimes, seeds, attacks, eps and claims, in one TOML file; ``run_study`` trains what is missing,
evaluates, runs the diagnostics, and the study report shows exactly those models.

A study file (every key but ``name``, ``dataset`` and ``models`` has a default)::

    name = "aig"
    dataset = "cifar10"
    description = "Does ConvNet-AIG's robustness claim survive?"
    seeds = [0]
    regimes = ["natural", "fgsm"]
    attacks = ["fgsm", "bim", "pgd"]
    eps = ["2/255", "4/255", "8/255"]      # numbers or fractions, pixel units (L-inf attacks)
    eps_l2 = [0.5]                          # the L2 attacks' eps (fgm, pgd-l2), if any
    table_eps = "8/255"                     # the eps of claims and diagnostics
    n = 1000                                # test images (a fixed seeded subset), or "all"
    source = "protocol"                     # black-box source: "protocol" (docs/protocol.md, section 2) or "none"
    diagnostics = true

    [training]                              # TrainConfig settings shared by every zoo model
    recipe = "fast"                         # a named set of settings (docs/recipes.md); the keys below override it
    width = 0.25
    epochs = 5
    compile = false                         # true: training steps through torch.compile

    [[models]]
    label = "resnet32"
    arch = "resnet32"

    [[models]]
    label = "convnet-aig"
    arch = "convnet-aig"
    options = { target_rate = 0.6 }         # architecture options; ``operator = {...}`` for operator options

    [[models]]
    label = "theirs"
    checkpoint = "their_model.pt"           # third-party: evaluated, not trained
    arch = "resnet32"                       # or factory = "file.py:fn"; mean/std if it expects normalised input

    [[claims]]
    better = "convnet-aig"
    than = "resnet32"
    attack = "fgsm"
    training = "natural"
    by = 5                                  # points
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from robustbench_dc import names
from robustbench_dc.errors import UserError
from robustbench_dc.executors import EvalJob, Executor, LocalExecutor
from robustbench_dc.planning import protocol_source_training
from robustbench_dc.train import TrainConfig, recipe_config
from robustbench_dc.workspace import workspace_dir

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

#: TrainConfig fields a study sets per model or per regime and seed, not in ``[training]``
_PER_MODEL = {"model", "dataset", "arch", "training", "seed", "operator", "arch_options"}


def _number(value: Any, what: str) -> float:
    try:
        return float(Fraction(str(value).strip()))
    except (ValueError, ZeroDivisionError) as exc:
        raise UserError(f"{what}: expected a number or a fraction such as 8/255, got {value!r}") from exc


def _check_keys(table: dict[str, Any], valid: set[str], where: str) -> None:
    unknown = set(table) - valid
    if unknown:
        raise UserError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(sorted(unknown))}; valid: {', '.join(sorted(valid))}")


@dataclass(frozen=True)
class StudyModel:
    """A model of a study: a zoo model trained by the study, or a third-party ``checkpoint`` evaluated as is."""

    label: str
    model: str = "baseline"
    arch: str = "cnn9"
    width: float | None = None  # None: the study's [training] width
    options: dict[str, Any] = field(default_factory=dict)
    operator: dict[str, Any] = field(default_factory=dict)
    regimes: tuple[str, ...] | None = None  # None: the study's regimes
    checkpoint: str | None = None
    factory: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def trained(self) -> bool:
        return self.checkpoint is None


@dataclass(frozen=True)
class ClaimSpec:
    """"``better`` is more accurate than ``than`` under ``attack`` by at least ``by`` points" (paired, significant)."""

    better: str
    than: str
    attack: str
    training: str = "natural"
    threat: str = "white-box"
    eps: float | None = None  # None: the study's table_eps
    by: float = 0.0
    text: str = ""

    def describe(self, table_eps: float) -> str:
        from robustbench_dc.attacks.specs import eps_label

        return self.text or (f"{self.better} ({self.training}) resists {self.threat} {self.attack} at {eps_label(self.eps or table_eps)} "
                             f"better than {self.than} by at least {self.by:g} points")  # fmt: skip


@dataclass(frozen=True)
class Study:
    name: str
    dataset: str
    models: tuple[StudyModel, ...]
    description: str = ""
    seeds: tuple[int, ...] = (0,)
    regimes: tuple[str, ...] = ("natural",)
    attacks: tuple[str, ...] = ("fgsm", "bim")
    eps: tuple[float, ...] = (8 / 255,)
    eps_l2: tuple[float, ...] = ()  # the L2 attacks' eps (fgm, pgd-l2), L2 units of [0, 1] pixels
    table_eps: float = 8 / 255
    n: int | None = 1000
    source: str = "protocol"
    diagnostics: bool = True
    diagnostics_n: int | None = 500
    square_queries: int = 300
    lipschitz_n: int = 200
    training: dict[str, Any] = field(default_factory=dict)
    claims: tuple[ClaimSpec, ...] = ()
    report: str = "study"  # "paper": Tables 7 and 8 next to the paper's, via reproduce (the presets)
    path: str = ""  # where it was read from (for the regenerate line)
    trust_code: bool = False  # a model's ``factory`` runs code: only where the user said so (load_study's trust_code)

    def model(self, label: str) -> StudyModel:
        for m in self.models:
            if m.label == label:
                return m
        raise UserError(f"study {self.name!r} has no model {label!r}; its models: {', '.join(m.label for m in self.models)}")

    def regimes_of(self, m: StudyModel) -> tuple[str, ...]:
        return ("external",) if not m.trained else (m.regimes or self.regimes)

    def train_config(self, m: StudyModel, regime: str, seed: int) -> TrainConfig:
        settings = {**self.training, **({"width": m.width} if m.width is not None else {})}
        return recipe_config(settings.pop("recipe", "standard"), model=m.model, dataset=self.dataset, arch=m.arch, training=regime, seed=seed,
                             operator=dict(m.operator), arch_options=dict(m.options), **settings)  # fmt: skip


def shipped_studies() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files("robustbench_dc.studies").iterdir() if p.name.endswith(".toml"))


def load_study(path_or_name: str | Path, *, trust_code: bool = False) -> Study:
    """A study from a TOML file, or a shipped study by name (see ``shipped_studies()``); every key is checked.
    ``trust_code``: allow its models' ``factory`` entries, which import and run code (a study file someone sent
    you runs nothing without it)."""
    path = Path(path_or_name)
    if path.exists():
        text, where = path.read_text(encoding="utf-8"), str(path)
    elif str(path_or_name) in shipped_studies():
        text, where = resources.files("robustbench_dc.studies").joinpath(f"{path_or_name}.toml").read_text(encoding="utf-8"), str(path_or_name)
    else:
        raise UserError(f"no study file {path_or_name!r}, and no shipped study of that name; shipped: {', '.join(shipped_studies())}")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where}: not valid TOML: {exc}") from exc
    return replace(parse_study(raw, where), trust_code=trust_code)


def parse_study(raw: dict[str, Any], where: str = "study") -> Study:
    valid = {f.name for f in fields(Study)} - {"path", "trust_code"}
    _check_keys(raw, valid, where)
    for key in ("name", "dataset", "models"):
        if key not in raw:
            raise UserError(f"{where}: missing {key!r}")
    if not isinstance(raw["name"], str) or not _NAME.fullmatch(raw["name"]):
        raise UserError(f"{where}: name must be one word of letters, digits, '.', '_' or '-' (it names the report's folder), got {raw['name']!r}")
    if raw["dataset"] not in names.DATASETS:
        raise UserError(f"{where}: unknown dataset {raw['dataset']!r}; valid: {', '.join(names.DATASETS)}")
    training = dict(raw.get("training", {}))
    train_fields = ({f.name for f in fields(TrainConfig)} - _PER_MODEL) | {"recipe"}
    _check_keys(training, train_fields, f"{where} [training]")
    if "eps" in training:
        training["eps"] = _number(training["eps"], f"{where} [training] eps")
    models = []
    model_keys = {f.name for f in fields(StudyModel)}
    for i, m in enumerate(raw["models"]):
        _check_keys(m, model_keys, f"{where} models[{i}]")
        if "label" not in m:
            raise UserError(f"{where} models[{i}]: give it a label (how tables and claims name it)")
        m = dict(m)
        for key in ("regimes", "mean", "std"):
            if key in m:
                m[key] = tuple(m[key])
        models.append(StudyModel(**m))
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels) or not labels:
        raise UserError(f"{where}: models need distinct labels, got {labels}")
    claims = []
    for i, c in enumerate(raw.get("claims", [])):
        _check_keys(c, {f.name for f in fields(ClaimSpec)}, f"{where} claims[{i}]")
        c = dict(c)
        if "eps" in c:
            c["eps"] = _number(c["eps"], f"{where} claims[{i}] eps")
        claim = ClaimSpec(**c)
        for label in (claim.better, claim.than):
            if label not in labels:
                raise UserError(f"{where} claims[{i}]: no model labelled {label!r}; models: {', '.join(labels)}")
        claims.append(claim)
    study = Study(
        name=raw["name"], dataset=raw["dataset"], models=tuple(models), description=raw.get("description", ""),
        seeds=tuple(int(s) for s in raw.get("seeds", (0,))), regimes=tuple(raw.get("regimes", ("natural",))),
        attacks=tuple(raw.get("attacks", ("fgsm", "bim"))), eps=tuple(_number(e, f"{where} eps") for e in raw.get("eps", ("8/255",))),
        eps_l2=tuple(_number(e, f"{where} eps_l2") for e in raw.get("eps_l2", ())),
        table_eps=_number(raw.get("table_eps", "8/255"), f"{where} table_eps"), n=None if raw.get("n", 1000) == "all" else int(raw.get("n", 1000)),
        source=raw.get("source", "protocol"), diagnostics=bool(raw.get("diagnostics", True)),
        diagnostics_n=None if raw.get("diagnostics_n", 500) == "all" else int(raw.get("diagnostics_n", 500)),
        square_queries=int(raw.get("square_queries", 300)), lipschitz_n=int(raw.get("lipschitz_n", 200)), training=training,
        claims=tuple(claims), report=raw.get("report", "study"), path=where,
    )  # fmt: skip
    _validate(study, where)
    return study


def _validate(study: Study, where: str) -> None:
    """Everything checkable before the first training: names, numbers, and each zoo model's configuration."""
    from robustbench_dc.attacks import get_attack

    for a in study.attacks:
        get_attack(a)
    if study.report not in ("study", "paper"):
        raise UserError(f"{where}: report must be 'study' or 'paper' (Tables 7 and 8, as reproduce writes), got {study.report!r}")
    if study.source not in ("protocol", "none"):
        raise UserError(f"{where}: source must be 'protocol' or 'none', got {study.source!r}")
    bad = [e for e in study.eps + (study.table_eps,) if not 0 <= e <= 1]
    if bad:
        raise UserError(f"{where}: eps must be in [0, 1] (pixel units, e.g. 8/255), got {bad}")
    l2 = [a for a in study.attacks if a in names.L2_ATTACKS]
    if l2 and not study.eps_l2 or any(e < 0 for e in study.eps_l2):
        raise UserError(f"{where}: the L2 attacks ({', '.join(l2)}) need eps_l2 = [...], numbers >= 0 in L2 units of [0, 1] pixels, e.g. [0.25, 0.5]")
    if not study.seeds:
        raise UserError(f"{where}: seeds needs at least one training seed")
    for regime in study.regimes + tuple(r for m in study.models for r in m.regimes or ()):
        if regime not in names.REGIMES:
            raise UserError(f"{where}: unknown training regime {regime!r}; valid: {', '.join(names.REGIMES)}")
    for m in study.models:
        if m.trained:
            study.train_config(m, study.regimes_of(m)[0], study.seeds[0])  # checks model, arch, options, training settings
        elif m.options or m.operator or m.regimes:
            raise UserError(f"{where}: model {m.label!r} is a checkpoint; options, operator and regimes apply to trained models only")
    for c in study.claims:
        if c.attack not in study.attacks:
            raise UserError(f"{where}: claim about {c.attack!r}, which the study does not run; its attacks: {', '.join(study.attacks)}")
        if c.training not in study.regimes_of(study.model(c.better)) or c.training not in study.regimes_of(study.model(c.than)):
            raise UserError(f"{where}: claim about {c.training!r} training, which {c.better!r} or {c.than!r} does not have")


@dataclass(frozen=True)
class Target:
    """One evaluated model of a study: its label, regime and seed (``external`` and -1 for checkpoints)."""

    label: str
    training: str
    seed: int
    config: TrainConfig | None


def targets(study: Study) -> list[Target]:
    out = []
    for m in study.models:
        for regime in study.regimes_of(m):
            for seed in study.seeds if m.trained else (-1,):
                out.append(Target(m.label, regime, seed, study.train_config(m, regime, seed) if m.trained else None))
    return out


def trainings(study: Study) -> list[TrainConfig]:
    """Every training the study needs, each once: the targets', then their protocol sources'."""
    configs = [t.config for t in targets(study) if t.config is not None]
    if study.source == "protocol":
        configs += [protocol_source_training(c.to_dict()) for c in configs]
    return list({json.dumps(c.to_dict(), sort_keys=True): c for c in configs}.values())


def external_spec(study: Study, m: StudyModel) -> tuple[str, dict[str, Any]]:
    """A third-party model's file (relative paths are relative to the study file) and ``load_external`` arguments."""
    here = Path(study.path).parent if study.path and Path(study.path).exists() else None
    path = Path(m.checkpoint)
    if not path.is_absolute() and here is not None:
        path = here / path
    factory = m.factory
    if factory is not None:
        if not study.trust_code:
            raise UserError(f"study {study.name!r}: model {m.label!r} has factory = {factory!r}, which imports and runs that code; "
                            "if you trust it, run again with --trust-code (Python: load_study(..., trust_code=True))")  # fmt: skip
        file, _, function = factory.rpartition(":")
        if file.endswith(".py") and not Path(file).is_absolute() and here is not None:
            factory = f"{here / file}:{function}"
    return str(path.resolve()), dict(arch=m.arch if m.factory is None else None, model_name=m.model, width=m.width, factory=factory,
                                      mean=m.mean, std=m.std, label=m.label)  # fmt: skip


def attacks_for(study: Study, t: Target) -> tuple[str, ...]:
    """The study's attacks for one target; bpda-pgd only where it differs from PGD (a zoo model with a decoupled
    layer or a hard decision: for the others it is plain PGD with the same seed, and the report says n/a)."""
    if "bpda-pgd" not in study.attacks or t.config is None:
        return study.attacks
    from robustbench_dc.attacks.bpda import has_surrogate
    from robustbench_dc.train import build

    return study.attacks if has_surrogate(build(t.config)) else tuple(a for a in study.attacks if a != "bpda-pgd")


def jobs(study: Study) -> list[EvalJob]:
    """One evaluation job per target: its attacks at every eps, Lipschitz estimates and diagnostics."""
    out = []
    for t in targets(study):
        source = protocol_source_training(t.config.to_dict()) if study.source == "protocol" and t.config is not None else None
        out.append(EvalJob(label=f"{t.label} {t.training}" + ("" if t.seed < 0 else f" seed {t.seed}"), dataset=study.dataset,
                           attacks=attacks_for(study, t), eps=tuple(sorted(set(study.eps) | {study.table_eps})), eps_l2=study.eps_l2, n=study.n, lipschitz_n=study.lipschitz_n,
                           target=t.config, external=None if t.config is not None else external_spec(study, study.model(t.label)), source=source,
                           diagnostics=study.diagnostics, table_eps=study.table_eps, diagnostics_n=study.diagnostics_n, square_queries=study.square_queries))  # fmt: skip
    return out


def run_study(
    study: Study,
    *,
    workspace: str | Path | None = None,
    data_dir: str | Path | None = None,
    device: str | None = "auto",
    executor: Executor | None = None,
    on_stage: Callable[[int, int, str], None] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Train what is missing, then evaluate every target (and its diagnostics), on ``executor`` (default: this
    process); resumable like ``reproduce``. Returns wall times of this run (seconds)."""
    return (executor or LocalExecutor()).run(trainings(study), jobs(study), workspace=workspace_dir(workspace), data_dir=data_dir, device=device,
                                             on_stage=on_stage, on_progress=on_progress)  # fmt: skip


def with_overrides(study: Study, *, seeds: tuple[int, ...] | None = None) -> Study:
    return study if seeds is None else replace(study, seeds=seeds)
