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
    diagnostics_seeds = [0]                 # the training seeds whose models are diagnosed (default: every seed)
    report = "study"                        # or "paper": Tables 7 and 8 beside the paper's (zoo models, by name)
    transfer_matrix = false                 # true: every natural model of the first seed as source for every other
    eps_match = false                       # true: FGSM and BIM again at the eps matching the paper's natural baseline
    attack_outcome = "any-iterate"          # iterative attacks: wrong at any iterate (each image stops once fooled),
                                            # or "last-iterate" (every step on every image; cells made before 0.2)

    [training]                              # TrainConfig settings shared by every zoo model
    recipe = "fast"                         # a named set of settings (docs/recipes.md); the keys below override it
    width = 0.25
    epochs = 5
    compile = false                         # true: training steps through torch.compile

    [training.fgsm]                         # settings for one regime's models only, over those above
    epochs = 8

    [[models]]
    label = "resnet32"
    arch = "resnet32"

    [[models]]
    label = "convnet-aig"
    arch = "convnet-aig"
    options = { target_rate = 0.6 }         # architecture options; ``operator = {...}`` for operator options
    lr = 0.05                               # width and lr: this model's own, over [training]

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

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustbench_dc import names
from robustbench_dc.errors import UserError
from robustbench_dc.names import Outcome, Threat
from robustbench_dc.results.store import StudyTarget

if TYPE_CHECKING:
    from robustbench_dc.train import TrainConfig

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
        raise UserError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(sorted(unknown))}; valid: "
            f"{', '.join(sorted(valid))}"
        )


@dataclass(frozen=True)
class StudyModel:
    """A model of a study: a zoo model trained by the study, or a third-party ``checkpoint`` evaluated as is."""

    label: str
    model: str = "baseline"
    arch: str = "cnn9"
    width: float | None = None  # None: the study's [training] width
    lr: float | None = (
        None  # None: the study's [training] learning rate (a network without BatchNorm needs a lower one)
    )
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
    """ "``better`` is more accurate than ``than`` under ``attack`` by at least ``by`` points" (paired, significant)."""

    better: str
    than: str
    attack: str
    training: str = "natural"
    threat: Threat = Threat.WHITE_BOX
    eps: float | None = None  # None: the study's table_eps
    by: float = 0.0
    text: str = ""

    def __post_init__(self) -> None:
        if self.threat not in (Threat.WHITE_BOX, Threat.BLACK_BOX):  # a typo would judge no cells: "not measured"
            raise UserError(f"a claim's threat is {Threat.WHITE_BOX} or {Threat.BLACK_BOX}, got {self.threat!r}")
        object.__setattr__(self, "threat", Threat(self.threat))

    def describe(self, table_eps: float) -> str:
        from robustbench_dc.names import eps_label

        return self.text or (
            f"{self.better} ({self.training}) resists {self.threat} {self.attack} at "
            f"{eps_label(self.eps or table_eps)} better than {self.than} by at least {self.by:g} points"
        )


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
    diagnostics_seeds: tuple[int, ...] | None = None  # None: every seed's models; checkpoints are always diagnosed
    diagnostics_n: int | None = 500
    square_queries: int = 300
    lipschitz_n: int = 200
    training: dict[str, Any] = field(default_factory=dict)
    regime_training: dict[str, dict[str, Any]] = field(default_factory=dict)  # [training.<regime>]: over ``training``
    claims: tuple[ClaimSpec, ...] = ()
    report: str = "study"  # "paper": Tables 7 and 8 next to the paper's (the presets); "study": the study's own tables
    transfer_matrix: bool = False  # every natural model of the first seed as the black-box source of every other
    eps_match: bool = False  # FGSM and BIM re-run at the eps where the natural baseline comes closest to the paper's
    attack_outcome: Outcome = Outcome.ANY_ITERATE  # what an iterative attack's cell records (docs/protocol.md, 2)
    path: str = ""  # where it was read from (for the regenerate line)
    trust_code: bool = False  # a model's ``factory`` runs code: only where the user said so (load_study's trust_code)
    declared_seeds: tuple[int, ...] = ()  # the study file's seeds where the command line ran others (--seeds)

    def model(self, label: str) -> StudyModel:
        for m in self.models:
            if m.label == label:
                return m
        raise UserError(
            f"study {self.name!r} has no model {label!r}; its models: {', '.join(m.label for m in self.models)}"
        )

    def regimes_of(self, m: StudyModel) -> tuple[str, ...]:
        return ("external",) if not m.trained else (m.regimes or self.regimes)

    @property
    def seeds_left_out(self) -> tuple[int, ...]:
        """The study file's training seeds that this run (``--seeds``) leaves out."""
        return tuple(s for s in self.declared_seeds if s not in self.seeds)

    @property
    def all_eps(self) -> tuple[float, ...]:
        """The L-inf eps every model is evaluated at: ``eps`` and ``table_eps``."""
        return tuple(sorted(set(self.eps) | {self.table_eps}))

    def targets(self) -> list[StudyTarget]:
        """Every evaluated model, seed by seed (so that a long run finishes one seed's models first), then the
        third-party checkpoints."""
        regimes = dict.fromkeys(r for m in self.models if m.trained for r in self.regimes_of(m))
        trained = [
            StudyTarget(self.name, m.label, regime, seed)
            for seed in self.seeds
            for regime in regimes
            for m in self.models
            if m.trained and regime in self.regimes_of(m)
        ]
        return trained + [StudyTarget(self.name, m.label, "external", -1) for m in self.models if not m.trained]

    def train_config(self, m: StudyModel, regime: str, seed: int) -> TrainConfig:
        """The one place a study's model becomes a training identity (its recipe, then the study's and the model's
        settings)."""
        from robustbench_dc.train import recipe_config

        settings = {
            **self.training,
            **self.regime_training.get(regime, {}),
            **({"width": m.width} if m.width is not None else {}),
            **({"lr": m.lr} if m.lr is not None else {}),
        }
        return recipe_config(
            settings.pop("recipe", "standard"),
            model=m.model,
            dataset=self.dataset,
            arch=m.arch,
            training=regime,
            seed=seed,
            operator=dict(m.operator),
            arch_options=dict(m.options),
            **settings,
        )


def shipped_studies() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml")
        for p in resources.files("robustbench_dc.studies").iterdir()
        if p.name.endswith(".toml")
    )


def load_study(path_or_name: str | Path, *, trust_code: bool = False) -> Study:
    """A study from a TOML file, or a shipped study by name (see ``shipped_studies()``); every key is checked.
    ``trust_code``: allow its models' ``factory`` entries, which import and run code (a study file someone sent
    you runs nothing without it)."""
    path = Path(path_or_name)
    if path.is_file():
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: cannot read this study file ({exc})") from exc
    elif str(path_or_name) in shipped_studies():  # a folder of that name here (a workspace, say) does not hide it
        text, where = (
            resources.files("robustbench_dc.studies").joinpath(f"{path_or_name}.toml").read_text(encoding="utf-8"),
            str(path_or_name),
        )
    else:
        raise UserError(
            f"no study file {path_or_name!r}, and no shipped study of that name; shipped: "
            f"{', '.join(shipped_studies())}"
        )
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where}: not valid TOML: {exc}") from exc
    except RecursionError:
        raise UserError(f"{where}: nested too deeply to be a study file (arrays or tables within thousands of others)")
    return replace(parse_study(raw, where), trust_code=trust_code)


def _expect(value: Any, kind: str, what: str) -> Any:
    """``value`` if it is of ``kind`` (TOML's types: bool, int, number, str, table, list), else a UserError naming
    it."""
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "table": isinstance(value, dict),
        "list": isinstance(value, list),
    }[kind]
    if not ok:
        raise UserError(
            f"{what}: expected {'an integer' if kind == 'int' else 'a ' + kind}, got {value!r} ({type(value).__name__})"
        )
    return value


def _count(raw: dict[str, Any], key: str, default: int, where: str, *, minimum: int = 1) -> int:
    """An image or query count: an integer >= ``minimum``."""
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{where}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _images(raw: dict[str, Any], key: str, default: int, where: str) -> int | None:
    """A number of test images >= 1, or "all" (None)."""
    value = raw.get(key, default)
    if value == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f'{where}: {key} must be an integer >= 1 or "all", got {value!r}')
    return value


def _strings(raw: dict[str, Any], key: str, default: tuple[str, ...], what: str) -> tuple[str, ...]:
    return tuple(
        _expect(v, "str", f"{what} {key}") for v in _expect(raw.get(key, list(default)), "list", f"{what} {key}")
    )


#: the type of each [training] value, from TrainConfig's annotations (None-able fields take their type or nothing)
_TRAIN_KINDS = {
    "bool": "bool",
    "int": "int",
    "float": "number",
    "str": "str",
    "dict[str, Any]": "table",
    "int | None": "int",
    "bool | None": "bool",
}
_MODEL_KINDS = {
    "label": "str",
    "model": "str",
    "arch": "str",
    "width": "number",
    "lr": "number",
    "options": "table",
    "operator": "table",
    "regimes": "list",
    "checkpoint": "str",
    "factory": "str",
    "mean": "list",
    "std": "list",
}
_CLAIM_KINDS = {
    "better": "str",
    "than": "str",
    "attack": "str",
    "training": "str",
    "threat": "str",
    "by": "number",
    "text": "str",
}
_STUDY_KINDS = {
    "name": "str",
    "dataset": "str",
    "description": "str",
    "source": "str",
    "report": "str",
    "diagnostics": "bool",
    "diagnostics_seeds": "list",
    "transfer_matrix": "bool",
    "eps_match": "bool",
    "attack_outcome": "str",
    "training": "table",
    "models": "list",
    "claims": "list",
}


def _training(raw: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``[training]``'s shared settings, and its ``[training.<regime>]`` tables (one regime's settings: FGSM training
    may need more epochs than natural training to reach the same clean accuracy)."""
    from robustbench_dc.train import TrainConfig

    kinds = {f.name: _TRAIN_KINDS.get(str(f.type), "str") for f in fields(TrainConfig)} | {
        "recipe": "str",
        "eps": "eps",
    }
    regimes = {r: _expect(v, "table", f"{where} [training.{r}]") for r, v in raw.items() if r in tuple(names.Regime)}

    def settings(table: dict[str, Any], section: str) -> dict[str, Any]:
        _check_keys(table, set(kinds) - _PER_MODEL, f"{where} {section}")
        return {
            key: _number(value, f"{where} {section} {key}")
            if kinds[key] == "eps"
            else _expect(value, kinds[key], f"{where} {section} {key}")
            for key, value in table.items()
        }

    shared = settings({k: v for k, v in raw.items() if k not in regimes}, "[training]")
    return shared, {r: settings(table, f"[training.{r}]") for r, table in regimes.items()}


def _models(raw: list[Any], where: str) -> tuple[StudyModel, ...]:
    models = []
    for i, m in enumerate(raw):
        what = f"{where} models[{i}]"
        _check_keys(_expect(m, "table", what), set(_MODEL_KINDS), what)
        if "label" not in m:
            raise UserError(f"{what}: give it a label (how tables and claims name it)")
        m = {k: _expect(v, _MODEL_KINDS[k], f"{what} {k}") for k, v in m.items()}
        for key in ("regimes", "mean", "std"):
            if key in m:
                m[key] = tuple(_expect(v, "str" if key == "regimes" else "number", f"{what} {key}") for v in m[key])
        models.append(StudyModel(**m))
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels) or not labels:
        raise UserError(f"{where}: models need distinct labels, got {labels}")
    return tuple(models)


def _claims(raw: list[Any], labels: list[str], where: str) -> tuple[ClaimSpec, ...]:
    claims = []
    for i, c in enumerate(raw):
        what = f"{where} claims[{i}]"
        _check_keys(_expect(c, "table", what), set(_CLAIM_KINDS) | {"eps"}, what)
        c = {
            k: _number(v, f"{what} eps") if k == "eps" else _expect(v, _CLAIM_KINDS[k], f"{what} {k}")
            for k, v in c.items()
        }
        try:
            claim = ClaimSpec(**c)
        except UserError as exc:
            raise UserError(f"{what}: {exc}") from None
        for label in (claim.better, claim.than):
            if label not in labels:
                raise UserError(f"{what}: no model labelled {label!r}; models: {', '.join(labels)}")
        claims.append(claim)
    return tuple(claims)


def parse_study(raw: dict[str, Any], where: str = "study") -> Study:
    """A study from its TOML table: every key checked for name and type (a wrong one is a UserError naming it)."""
    valid = {f.name for f in fields(Study)} - {"path", "trust_code", "declared_seeds"}
    _check_keys(raw, valid, where)
    for key in ("name", "dataset", "models"):
        if key not in raw:
            raise UserError(f"{where}: missing {key!r}")
    for key, kind in _STUDY_KINDS.items():
        if key in raw:
            _expect(raw[key], kind, f"{where} {key}")
    if not _NAME.fullmatch(raw["name"]):
        raise UserError(
            f"{where}: name must be one word of letters, digits, '.', '_' or '-' (it names the report's folder), got "
            f"{raw['name']!r}"
        )
    if raw["dataset"] not in names.DATASETS:
        raise UserError(f"{where}: " + names.unknown("dataset", raw["dataset"], names.DATASETS))
    training, regime_training = _training(raw.get("training", {}), where)
    models = _models(raw["models"], where)
    claims = _claims(raw.get("claims", []), [m.label for m in models], where)
    seeds = _seeds(raw, "seeds", where)
    eps_list = lambda key, default: tuple(
        _number(e, f"{where} {key}") for e in _expect(raw.get(key, default), "list", f"{where} {key}")
    )  # noqa: E731
    study = Study(
        name=raw["name"],
        dataset=raw["dataset"],
        models=models,
        description=raw.get("description", ""),
        seeds=seeds,
        regimes=_strings(raw, "regimes", ("natural",), where),
        attacks=_strings(raw, "attacks", ("fgsm", "bim"), where),
        eps=eps_list("eps", ["8/255"]),
        eps_l2=eps_list("eps_l2", []),
        table_eps=_number(raw.get("table_eps", "8/255"), f"{where} table_eps"),
        n=_images(raw, "n", 1000, where),
        source=raw.get("source", "protocol"),
        diagnostics=raw.get("diagnostics", True),
        diagnostics_seeds=_seeds(raw, "diagnostics_seeds", where) if "diagnostics_seeds" in raw else None,
        diagnostics_n=_images(raw, "diagnostics_n", 500, where),
        square_queries=_count(raw, "square_queries", 300, where),
        lipschitz_n=_count(raw, "lipschitz_n", 200, where, minimum=0),
        training=training,
        regime_training=regime_training,
        claims=claims,
        report=raw.get("report", "study"),
        transfer_matrix=raw.get("transfer_matrix", False),
        eps_match=raw.get("eps_match", False),
        attack_outcome=_outcome(raw.get("attack_outcome", Outcome.ANY_ITERATE), where),
        path=where,
    )
    _validate(study, where)
    return study


def _outcome(value: str, where: str) -> Outcome:
    try:
        return Outcome(value)
    except ValueError:
        raise UserError(
            f"{where}: attack_outcome must be {' or '.join(repr(str(o)) for o in Outcome)}, got {value!r}"
        ) from None


def _seeds(raw: dict[str, Any], key: str, where: str) -> tuple[int, ...]:
    seeds = tuple(_expect(s, "int", f"{where} {key}") for s in _expect(raw.get(key, [0]), "list", f"{where} {key}"))
    if any(not 0 <= s < 2**32 for s in seeds):
        raise UserError(f"{where}: {key} must be integers in [0, 2**32), got {list(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where}: {key} names a training seed twice ({list(seeds)}); each seed is one model")
    return seeds


def _validate(study: Study, where: str) -> None:
    """Everything checkable before the first training: names, numbers, and each zoo model's configuration."""
    _validate_settings(study, where)
    _validate_models(study, where)
    _validate_stages(study, where)


def _validate_settings(study: Study, where: str) -> None:
    from robustbench_dc.attacks import get_attack

    for a in study.attacks:
        get_attack(a)
    extra = sorted(set(study.diagnostics_seeds or ()) - set(study.seeds))
    if study.diagnostics_seeds == () or extra:
        raise UserError(
            f"{where}: diagnostics_seeds must be some of the study's seeds {list(study.seeds)}, got "
            f"{list(study.diagnostics_seeds or ())}"
        )
    if study.report not in ("study", "paper"):
        raise UserError(
            f"{where}: report must be 'study' or 'paper' (Tables 7 and 8, as reproduce writes), got {study.report!r}"
        )
    if study.source not in ("protocol", "none"):
        raise UserError(f"{where}: source must be 'protocol' or 'none', got {study.source!r}")
    bad = [e for e in study.eps + (study.table_eps,) if not 0 <= e <= 1]
    if bad:
        raise UserError(f"{where}: eps must be in [0, 1] (pixel units, e.g. 8/255), got {bad}")
    l2 = [a for a in study.attacks if a in names.L2_ATTACKS]
    if l2 and not study.eps_l2 or any(e < 0 for e in study.eps_l2):
        raise UserError(
            f"{where}: the L2 attacks ({', '.join(l2)}) need eps_l2 = [...], numbers >= 0 in L2 units of [0, 1] "
            "pixels, e.g. [0.25, 0.5]"
        )
    if not study.seeds:
        raise UserError(f"{where}: seeds needs at least one training seed")


def _validate_models(study: Study, where: str) -> None:
    for regime in study.regimes + tuple(r for m in study.models for r in m.regimes or ()):
        if regime not in tuple(names.Regime):
            raise UserError(f"{where}: " + names.unknown("training regime", regime, names.Regime))
    unused = sorted(set(study.regime_training) - {r for m in study.models if m.trained for r in study.regimes_of(m)})
    if unused:
        raise UserError(f"{where}: [training.{unused[0]}] sets a regime that none of the study's models is trained in")
    for m in study.models:
        if m.trained:
            for regime in study.regimes_of(m):  # checks model, arch, options, each regime's training settings
                study.train_config(m, regime, study.seeds[0])
        elif m.options or m.operator or m.regimes:
            raise UserError(
                f"{where}: model {m.label!r} is a checkpoint; options, operator and regimes apply to trained models "
                "only"
            )


def _validate_claims(study: Study, where: str) -> None:
    """Each claim names an attack the study runs, and a regime both its models are trained in."""
    for c in study.claims:
        if c.attack not in study.attacks:
            raise UserError(
                f"{where}: claim about {c.attack!r}, which the study does not run; its attacks: "
                f"{', '.join(study.attacks)}"
            )
        if any(c.training not in study.regimes_of(study.model(label)) for label in (c.better, c.than)):
            raise UserError(
                f"{where}: claim about {c.training!r} training, which {c.better!r} or {c.than!r} does not have"
            )


def _validate_paper_tables(study: Study, where: str) -> None:
    """The paper tables name zoo models of one architecture by their names."""
    odd = [
        m.label
        for m in study.models
        if not m.trained or m.options or m.operator or m.width is not None or m.label != m.model
    ]
    if len({m.arch for m in study.models}) != 1 or odd:
        raise UserError(
            f'{where}: a paper-tables study (report = "paper") needs zoo models of one architecture, labelled by their '
            f"names, without options{'; not so: ' + ', '.join(odd) if odd else ''}"
        )


def _validate_stages(study: Study, where: str) -> None:
    """The claims, the paper tables and eps matching: each needs what the study computes."""
    _validate_claims(study, where)
    if study.report == "paper":
        _validate_paper_tables(study, where)
    baseline = any(
        m.label == "baseline" and m.model == "baseline" and m.trained and "natural" in study.regimes_of(m)
        for m in study.models
    )
    if study.eps_match and (study.source != "protocol" or not baseline):
        raise UserError(
            f'{where}: eps_match needs a trained model labelled "baseline" (model baseline, natural regime) and source '
            '= "protocol"'
        )


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2): training seeds as the command line takes them."""
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise UserError(f"--seeds takes comma-separated integers, e.g. 0,1,2; got {text!r}") from exc
    if not seeds or any(not 0 <= s < 2**32 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds needs at least one training seed, each in [0, 2**32) and each once; got {text!r}")
    return seeds


def with_options(study: Study, *, seeds: str | None = None, compile: bool = False) -> Study:
    """The study with the command line's overrides: other training seeds (``"0,1"``), training through torch.compile."""
    if seeds is not None:  # an empty --seeds is a mistake, not "every seed"
        study = replace(study, seeds=parse_seeds(seeds), declared_seeds=study.declared_seeds or study.seeds)
    if compile:
        study = replace(
            study,
            training={**study.training, "compile": True},
            regime_training={
                r: {**t, "compile": True} if "compile" in t else t for r, t in study.regime_training.items()
            },
        )
    return study


def __getattr__(name: str) -> Any:
    """``run_study``, ``plan``, ``jobs`` and ``trainings`` live in ``robustbench_dc.pipeline``; kept importable from
    here."""
    if name in ("run_study", "plan", "jobs", "trainings", "external_spec"):
        from robustbench_dc import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'robustbench_dc.study' has no attribute {name!r}")
