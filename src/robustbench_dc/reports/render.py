"""Report blocks rendered as Markdown or HTML. Cell text is escaped for each format (a label cannot break a table)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

Block = tuple[str, Any]  # ("h1"|"h2"|"p"|"list"|"table"|"img"|"code", payload)


def render_text(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table for the terminal."""
    return tabulate(rows, headers=list(headers), disable_numparse=True)


def _md_cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def render_markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for kind, payload in blocks:
        if kind == "h1":
            lines += [f"# {payload}", ""]
        elif kind == "h2":
            lines += [f"## {payload}", ""]
        elif kind == "p":
            lines += [payload, ""]
        elif kind == "list":
            lines += [f"- {_md_cell(item)}" for item in payload] + [""]
        elif kind == "table":
            headers, rows = payload
            rows = [[_md_cell(v) for v in row] for row in rows]
            lines += [tabulate(rows, headers=[_md_cell(h) for h in headers], tablefmt="github", disable_numparse=True), ""]
        elif kind == "img":
            src, alt = payload
            lines += [f"![{alt}]({src})", ""]
        elif kind == "code":
            lines += ["```", payload, "```", ""]
    return "\n".join(lines)


def render_html(blocks: Sequence[Block], out: Path) -> str:
    body: list[str] = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{html.escape(payload)}</{kind}>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in payload) + "</ul>")
        elif kind == "table":
            headers, rows = payload
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
            body_rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body_rows}</tbody></table>")
        elif kind == "img":
            src, alt = payload
            data = base64.b64encode((out / src).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
        elif kind == "code":
            body.append(f"<pre>{html.escape(payload)}</pre>")
    style = "body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>robustbench-dc report</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
