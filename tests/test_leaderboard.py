"""The leaderboard: every shipped paper-cpu network (24) with clean and worst-case accuracy, ranked by the worst case,
seeds apart; Markdown and a sortable HTML page, sorted by a real browser."""

import html
import re
from pathlib import Path

import pytest

from robustbench_dc.reports.leaderboard import leaderboard, write_leaderboard
from tests.conftest import browser_dom

PAPER_CPU = Path(__file__).parent.parent / "reports" / "paper-cpu"


@pytest.fixture(scope="module")
def board():
    return leaderboard([("paper-cpu", PAPER_CPU)], "cifar10")


def test_every_committed_paper_cpu_model_has_a_row_with_clean_and_worst_case_accuracy(board):
    assert len(board.rows) == 24  # 4 models x 2 regimes x 3 seeds; the black-box sources have no table cells
    col = {h: i for i, h in enumerate(board.headers)}
    seeds = {(r[col["model"]], r[col["training"]], r[col["seed"]]) for r in board.rows}
    assert len(seeds) == 24 and ("SphereConv", "fgsm", "1") in seeds
    worst = [float(r[col["worst case %"]].split()[0]) for r in board.rows]
    assert worst == sorted(worst, reverse=True) and all(r[col["clean %"]].endswith("(10000)") for r in board.rows)
    for r in board.rows:  # the worst case is never above any of the attacks it is taken over
        bim = float(r[col["BIM 8/255 %"]].split()[0])
        assert float(r[col["worst case %"]].split()[0]) <= bim


def test_the_markdown_and_the_html_page_hold_the_board(board, tmp_path):
    text = write_leaderboard(board, "cifar10", tmp_path, "markdown").read_text()
    assert text.count("| paper-cpu |") == 24 and "Ranked by the per-image worst case" in text
    page = write_leaderboard(board, "cifar10", tmp_path, "html").read_text()
    assert page.count("<tr>") == 25 and "click to sort" in page


def test_the_html_page_sorts_in_a_headless_browser(board, tmp_path):
    page = write_leaderboard(board, "cifar10", tmp_path, "html")
    clean = board.headers.index("clean %")
    clicked = tmp_path / "clicked.html"  # the page as a user leaves it after one click on "clean %"
    clicked.write_text(
        page.read_text().replace("</body>", f"<script>document.querySelectorAll('th')[{clean}].click()</script></body>")
    )
    dom = browser_dom(clicked)
    rows = re.findall(r"<tr>(.*?)</tr>", dom[dom.index("<tbody>") :])
    assert len(rows) == 24
    values = [float(html.unescape(re.findall(r"<td[^>]*>(.*?)</td>", r)[clean]).split()[0]) for r in rows]
    assert values == sorted(values)  # ascending after one click
