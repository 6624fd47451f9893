"""The Markdown and HTML renderers against small golden files: every kind of block, escaping, marks and numbers.

A deliberate change of the output: ``DC_ROBUST_REGENERATE_GOLDEN=1 pytest tests/test_render.py``, then review the
diff of tests/golden/ like any other change."""

import base64
import os
from pathlib import Path

from robustbench_dc.reports.render import (
    Bullets,
    Code,
    Image,
    Paragraph,
    Section,
    Table,
    Title,
    render_html,
    render_markdown,
    status_mark,
    verdict_mark,
)

GOLDEN = Path(__file__).parent / "golden"
# a 1x1 white PNG, so that the HTML page's embedded image is the same bytes everywhere
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4//8/AAX+Av4N70a4AAAAAElFTkSuQmCC")

BLOCKS = [
    Title("Study golden: digits"),
    Paragraph("Accuracy % with its 95% interval; a <tag> & an ampersand stay text."),
    Section("Accuracy: natural training"),
    Table(
        ["attack", "baseline", "a|pipe model"],
        [
            ["clean", "97.3 [95.1, 98.5]", "96.2 ±0.4 sd over 3 seeds [95.2, 97.2]"],
            ["white-box fgsm @ 8/255", "41.0", "-"],
        ],
    ),
    Image("pixel.png", "White-box accuracy against eps"),
    Section("Gradient-masking diagnostics"),
    Table(["model", "check 1", "check 2"], [["PASS (a model's name)", status_mark("pass"), status_mark("warn")]]),
    Table(["claim", "verdict"], [["TanhConv beats the baseline", verdict_mark("inconclusive")]]),
    Bullets(["first item\nwrapped", "second | item"]),
    Section("Accuracy: natural training"),
    Paragraph("Regenerate this report with:"),
    Code("dc-robust study golden --workspace WS"),
]


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DC_ROBUST_REGENERATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, (
        f"{name} changed: review it, then regenerate (see this file's docstring)"
    )


def test_markdown_renderer_matches_its_golden_file():
    _check("blocks.md", render_markdown(BLOCKS))


def test_html_renderer_matches_its_golden_file(tmp_path):
    (tmp_path / "pixel.png").write_bytes(PIXEL)
    _check("blocks.html", render_html(BLOCKS, tmp_path))
