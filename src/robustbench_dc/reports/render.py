"""Report blocks rendered as Markdown or HTML. Cell text is escaped for each format (a label cannot break a table)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from robustbench_dc.names import Status, Verdict


@dataclass(frozen=True)
class Title:
    """The report's heading (the HTML page's table of contents follows it)."""

    text: str


@dataclass(frozen=True)
class Section:
    """A section's heading: an entry of the table of contents."""

    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[Any]


@dataclass(frozen=True)
class Table:
    """Rows of cells: text, numbers or ``Mark`` judgements (the only cells the HTML page colours)."""

    headers: Sequence[Any]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class Image:
    """A figure beside the report: ``src`` relative to its folder (the HTML page embeds it)."""

    src: str
    alt: str


@dataclass(frozen=True)
class Code:
    """A command to copy, as it is."""

    text: str


Block = Title | Section | Paragraph | Bullets | Table | Image | Code


def render_text(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table for the terminal."""
    return tabulate(rows, headers=list(headers), disable_numparse=True)


def _md_cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def render_markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        match block:
            case Title(text):
                lines += [f"# {text}", ""]
            case Section(text):
                lines += [f"## {text}", ""]
            case Paragraph(text):
                lines += [text, ""]
            case Bullets(items):
                lines += [f"- {_md_cell(item)}" for item in items] + [""]
            case Table(headers, rows):
                cells = [[_md_cell(v) for v in row] for row in rows]
                headers = [_md_cell(h) for h in headers]
                lines += [tabulate(cells, headers=headers, tablefmt="github", disable_numparse=True), ""]
            case Image(src, alt):
                lines += [f"![{alt}]({src})", ""]
            case Code(text):
                lines += ["```", text, "```", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class Mark:
    """A table cell that is a judgement (a check's status, a claim's verdict): its word, and the tone the HTML page
    colours it by (Okabe-Ito, colour-blind safe). Only cells made as marks are coloured, never a cell that merely
    reads like one (a model called "PASS")."""

    text: str
    tone: str  # "good", "bad", "mid" or "none"

    def __str__(self) -> str:
        return self.text


_STATUS_TONE = {Status.PASS: "good", Status.WARN: "bad", Status.NA: "none"}
_VERDICT_TONE = {
    Verdict.REPRODUCED: "good",
    Verdict.NOT_REPRODUCED: "bad",
    Verdict.INCONCLUSIVE: "mid",
    Verdict.NOT_APPLICABLE: "none",
    Verdict.NOT_MEASURED: "none",
}


def status_mark(status: str) -> Mark:
    """A diagnostic's status as its table shows it."""
    return Mark(status.upper(), _STATUS_TONE[Status(status)])


def verdict_mark(verdict: str) -> Mark:
    """A claim's verdict as its table shows it."""
    return Mark(str(verdict), _VERDICT_TONE[Verdict(verdict)])


_NUMBER = re.compile(r"^[-+]?\d[\d.,]*(e[-+]?\d+)?( ±[\d.]+ sd over \d+ seeds)?( \[[-+\d., ]+\])?%?$")


def _anchor(text: str, seen: dict[str, int]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    seen[base] = seen.get(base, 0) + 1
    return base if seen[base] == 1 else f"{base}-{seen[base]}"


def _td(value: Any) -> str:
    text = str(value)
    tone = value.tone if isinstance(value, Mark) else None
    classes = [c for c in (tone, "num" if _NUMBER.match(text) else None) if c]
    return f"<td class='{' '.join(classes)}'>{html.escape(text)}</td>" if classes else f"<td>{html.escape(text)}</td>"


#: sorts a table by the column whose header is clicked (numbers by value, text alphabetically; again: reversed)
_SORTABLE = (
    "document.querySelectorAll('table').forEach(t=>t.querySelectorAll('th').forEach((th,i)=>{"
    "th.style.cursor='pointer';th.title='click to sort';th.addEventListener('click',()=>{"
    "const b=t.tBodies[0],rows=[...b.rows],up=th.dataset.up!=='1';th.dataset.up=up?'1':'0';"
    "const v=r=>{const s=r.cells[i].textContent.trim(),x=parseFloat(s);return isNaN(x)?s:x};"
    "rows.sort((a,c)=>{const x=v(a),y=v(c),o=typeof x==='number'&&typeof y==='number'?x-y:String(x)"
    ".localeCompare(String(y));return up?o:-o});rows.forEach(r=>b.appendChild(r));});}));"
)


def render_html(blocks: Sequence[Block], out: Path, *, sortable: bool = False) -> str:
    """One self-contained page: a table of contents from the sections, numbers right-aligned, statuses and verdicts
    coloured; ``sortable``: every table sorts by the column whose header is clicked."""
    body: list[str] = []
    toc: list[str] = []
    seen: dict[str, int] = {}
    for block in blocks:
        match block:
            case Title(text):
                body += [f"<h1>{html.escape(text)}</h1>", "<nav id='toc'></nav>"]
            case Section(text):
                anchor = _anchor(text, seen)
                toc.append(f"<li><a href='#{anchor}'>{html.escape(text)}</a></li>")
                body.append(f"<h2 id='{anchor}'>{html.escape(text)}</h2>")
            case Paragraph(text):
                body.append(f"<p>{html.escape(text)}</p>")
            case Bullets(items):
                body.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in items) + "</ul>")
            case Table(headers, rows):
                head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
                body_rows = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows)
                body.append(
                    f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body_rows}</tbody></table></div>"
                )
            case Image(src, alt):
                data = base64.b64encode((out / src).read_bytes()).decode()
                body.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
            case Code(text):
                body.append(f"<pre>{html.escape(text)}</pre>")
    page = "".join(body).replace(
        "<nav id='toc'></nav>", f"<nav id='toc'><strong>Contents</strong><ol>{''.join(toc)}</ol></nav>", 1
    )
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}th{background:#f3f3f3;position:sticky;top:0}"
        "td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.wide{overflow-x:auto}"
        "td.good{background:#cde9df}td.bad{background:#f6dfb3}td.mid{background:#e3ddef}td.none{color:#777}"
        "img{max-width:100%}nav#toc{background:#fafafa;border:1px solid #ddd;padding:.5em 1em;margin:1em 0}"
        "pre{background:#f6f6f6;padding:.5em}"
    )
    head = f"<meta charset='utf-8'><title>robustbench-dc report</title><style>{style}</style>"
    script = f"<script>{_SORTABLE}</script>" if sortable else ""
    return f"<!doctype html><html><head>{head}</head><body>{page}{script}</body></html>\n"


def write_report(blocks: Sequence[Block], out: Path, fmt: str) -> Path:
    """``out/REPORT.md`` or ``out/report.html`` (its images embedded), written atomically; returns its path."""
    from robustbench_dc.files import atomic_write_bytes

    if fmt == "markdown":
        path = out / "REPORT.md"
        atomic_write_bytes(path, render_markdown(blocks).encode())
    else:
        path = out / "report.html"
        atomic_write_bytes(path, render_html(blocks, out).encode())
    return path
