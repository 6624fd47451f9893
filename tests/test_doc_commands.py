"""Every ``dc-robust`` command shown as a code line in README.md, docs/ and reports/ is one the CLI accepts: a user
copies them as they are."""

import re
import shlex
from pathlib import Path

import pytest

from robustbench_dc.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "reports").rglob("*.md"))]


def _code_commands(text: str) -> list[str]:
    """The indented code lines that run ``dc-robust`` (continuations joined, trailing comments cut), with usage
    notation made concrete: ``[optional]`` parts left out, the first of ``a|b`` alternatives."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        match = re.match(r"^ {4,}(dc-robust\s.*)$", line)
        if match:
            command = re.split(r"\s+#\s", match.group(1))[0]
            command = re.sub(r"\[[^\]]*\]", "", command)
            commands.append(re.sub(r"(\S+?)(\|\S+)+", r"\1", command))
    return commands


COMMANDS = [(path.relative_to(ROOT).as_posix(), c) for path in DOCS for c in _code_commands(path.read_text())]


def test_the_docs_show_commands():
    assert any(path == "README.md" and "--recipe fast" in c for path, c in COMMANDS), COMMANDS


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[f"{p}:{c[:60]}" for p, c in COMMANDS])
def test_a_documented_command_parses(path, command):
    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as exit_:
        pytest.fail(f"{path}: `{command}` is refused by the CLI (exit {exit_.code})")
