"""Every evaluated model of a store, or of the reports this project ships, side by side: a row per model and training
seed with its clean accuracy, its per-image worst case over the white-box attacks of its tables, the official
AutoAttack where it ran, and each table attack at each eps, ranked by the worst case (RobustBench's leaderboard shows
clean and AutoAttack accuracy per model; ours says which attacks its robust figure rests on)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robustbench_dc.errors import UserError
from robustbench_dc.model_info import ModelInfo
from robustbench_dc.names import CellKind, Role, Threat, eps_label
from robustbench_dc.paper import display
from robustbench_dc.reports.render import Block, Paragraph, Table, Title, render_html, render_markdown
from robustbench_dc.results.query import AmbiguousResults, Results
from robustbench_dc.workspace import results_path

#: what a user reads off a row (its regime's tables' word for fgsm is "adversarial")
HEADERS = ["rank", "model", "training", "architecture", "width", "seed", "clean %", "worst case %", "AutoAttack %"]


@dataclass(frozen=True)
class Board:
    """The rows of one leaderboard and where each source of its cells lies."""

    headers: list[str]
    rows: list[list[str]]
    sources: list[str]
    eps: float


def _single(results: Results, what: str):
    try:
        return results.single(what)
    except AmbiguousResults:
        return None


def _row(results: Results, function: str, info: ModelInfo, eps: float, attacks: list[tuple[str, float]], where: str):
    mine = results.where(function=function, kind=CellKind.ACCURACY)
    table = mine.where(role=Role.TABLE)
    n = max(table.subsets())
    table = table.where(n=n)
    clean = _single(table.where(threat=Threat.NONE), f"{info.title} clean")
    worst = table.worst_case(None, None, eps)
    autoattack = _single(mine.where(attack="autoattack", eps=eps, threat=Threat.WHITE_BOX), f"{info.title} AA")
    cells = [_single(table.where(attack=a, eps=e, threat=Threat.WHITE_BOX), f"{info.title} {a}") for a, e in attacks]
    text = lambda a: "-" if a is None else f"{a.text()} ({a.n})"  # noqa: E731
    return worst.mean if worst is not None else -1.0, [
        display(info.model_name),
        info.training,
        info.arch or "-",
        "-" if info.width is None else f"{float(info.width):g}",
        "-" if info.seed is None else str(info.seed),
        text(clean),
        text(worst),
        text(autoattack),
        *(text(c) for c in cells),
        where,
    ]


def leaderboard(sources: list[tuple[str, Path]], dataset: str, eps: float = 8 / 255) -> Board:
    """The board of every model with table cells in the stores of ``sources`` (name shown, workspace or report
    folder holding ``results.sqlite``) at ``eps``."""
    loaded = [(name, Results.load(path, dataset)) for name, path in sources if results_path(path).is_file()]
    if not loaded:
        raise UserError(
            f"no results for {dataset} in {', '.join(str(p) for _, p in sources) or 'any store'}: evaluate models "
            "first (dc-robust eval), or read the shipped reports' (dc-robust leaderboard --zoo)"
        )
    measured: dict[str, set[tuple[str, float]]] = {}  # per evaluated function, its white-box table attacks
    for _, r in loaded:
        for e in r.where(role=Role.TABLE, kind=CellKind.ACCURACY, threat=Threat.WHITE_BOX).entries:
            measured.setdefault(e.key.function, set()).add((e.key.attack, round(e.key.eps, 12)))
    # a column for each attack and eps that every model ran: the rows compare like with like
    attacks = sorted(set.intersection(*measured.values()) if measured else set(), key=lambda ae: (ae[1], ae[0]))
    ranked = []
    for name, results in loaded:
        table = results.where(role=Role.TABLE, kind=CellKind.ACCURACY)
        functions = {e.key.function: e.model for e in table.entries}
        ranked += [_row(results, f, info, eps, attacks, name) for f, info in functions.items()]
    ranked.sort(key=lambda r: -r[0])
    rows = [[str(i), *row] for i, (_, row) in enumerate(ranked, start=1)]
    headers = HEADERS + [f"{a.upper()} {eps_label(e)} %" for a, e in attacks] + ["from"]
    return Board(headers, rows, [str(p) for _, p in sources], eps)


def blocks(board: Board, dataset: str) -> list[Block]:
    return [
        Title(f"Leaderboard: {dataset}, L-inf eps {eps_label(board.eps)}"),
        Paragraph(
            "Ranked by the per-image worst case over the white-box attacks each model's tables ran at this eps (an "
            "image counts as right only if every attack left it right). Each figure is accuracy % with its 95% "
            "Wilson interval and, in brackets, its test images; AutoAttack is the official one, where it ran (often "
            "on fewer images). One row per trained network: training seeds are shown apart, never averaged here. "
            "Read from: " + ", ".join(board.sources) + "."
        ),
        Table(board.headers, board.rows),
    ]


def write_leaderboard(board: Board, dataset: str, out: Path, fmt: str) -> Path:
    """``out/LEADERBOARD.md`` or ``out/leaderboard.html`` (its table sortable by any column), written atomically."""
    from robustbench_dc.files import atomic_write_bytes, output_dir

    out = output_dir(out)
    if fmt == "markdown":
        path, text = out / "LEADERBOARD.md", render_markdown(blocks(board, dataset))
    elif fmt == "html":
        path, text = out / "leaderboard.html", render_html(blocks(board, dataset), out, sortable=True)
    else:
        raise UserError(f"unknown format {fmt!r}; valid: markdown, html")
    atomic_write_bytes(path, text.encode())
    return path
