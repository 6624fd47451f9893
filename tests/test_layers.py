"""The package's layers import one way: a module never imports one of a higher layer (at module level or inside a
function), and the torch-free layers (names, results, reports) import no torch, so that reading a store and
writing a report need neither torch nor a checkpoint."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "robustbench_dc"

#: lowest first; a module's layer is that of the longest prefix listed
LAYERS = [
    (
        "core",
        [
            "robustbench_dc",
            "errors",
            "names",
            "model_info",
            "files",
            "workspace",
            "protocol",
            "stats",
            "progress",
            "figures",
            "paper",
            "zoo",
        ],
    ),
    ("results", ["results", "diagnostics.checks"]),
    ("models", ["devices", "ops", "models", "data", "inference", "perturb", "checkpoint"]),
    ("attacks", ["attacks", "lipschitz"]),
    (
        "evaluation",
        ["train", "targets", "evaluation", "diagnostics", "external", "adversarials", "records", "planning"],
    ),
    ("pipeline", ["study", "executors", "pipeline", "reproduce"]),
    ("reports", ["reports"]),
    ("cli", ["cli"]),
]
TORCH_FREE = [
    "robustbench_dc.names",
    "robustbench_dc.model_info",
    "robustbench_dc.protocol",
    "robustbench_dc.results.query",
    "robustbench_dc.results.merge",
    "robustbench_dc.diagnostics.checks",
    "robustbench_dc.study",
    "robustbench_dc.reports.paper_report",
    "robustbench_dc.reports.sections",
    "robustbench_dc.reports.study_report",
    "robustbench_dc.reports.build",
]


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    rest = module.removeprefix("robustbench_dc").removeprefix(".") or "robustbench_dc"
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (rest == p or rest.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add it where it belongs")
    return best[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("robustbench_dc"):
            out += [
                (node.lineno, f"{node.module}.{a.name}" if node.module == "robustbench_dc" else node.module)
                for a in node.names
            ]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("robustbench_dc")]
    return out


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        me = _module(path)
        for line, imported in _imports(path):
            target = (
                imported
                if (SRC.parent / imported.replace(".", "/")).with_suffix(".py").exists()
                or (SRC.parent / imported.replace(".", "/")).is_dir()
                else imported.rpartition(".")[0]
            )
            if layer(target) > layer(me):
                wrong.append(
                    f"{path.relative_to(SRC.parent)}:{line} ({LAYERS[layer(me)][0]}) imports {target} "
                    f"({LAYERS[layer(target)][0]})"
                )
    assert not wrong, "\n".join(wrong)


#: what a report module may import (at module level or inside a function): the core, the results layer and the
#: diagnostics' judgements, other report modules, and the study's types (never the code that trains or evaluates)
REPORT_MAY_IMPORT = ("core", "results", "reports")
STUDY_TYPES = {"Study", "StudyModel", "ClaimSpec"}


def _imported_names(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of every ``from robustbench_dc... import name``, nested ones included."""
    return [
        (node.lineno, node.module, a.name)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("robustbench_dc")
        for a in node.names
    ]


def test_reports_import_only_the_core_the_results_and_the_study_types():
    """A report module that imported the executors, or loaded a checkpoint, inside a function passed the one-way
    stack test (reports sit above them); reading a store and writing a report must need neither."""
    allowed = {i for i, (name, _) in enumerate(LAYERS) if name in REPORT_MAY_IMPORT}
    wrong = []
    for path in sorted((SRC / "reports").rglob("*.py")):
        for line, module, name in _imported_names(path):
            target = f"{module}.{name}" if module == "robustbench_dc" else module
            if module == "robustbench_dc.study" and name in STUDY_TYPES:
                continue
            if layer(target) not in allowed:
                wrong.append(f"{path.relative_to(SRC.parent)}:{line} imports {name} from {module}")
        plain = [
            (node.lineno, a.name)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Import)
            for a in node.names
            if a.name.startswith("robustbench_dc")
        ]
        wrong += [f"{path.relative_to(SRC.parent)}:{ln} imports {m}" for ln, m in plain if layer(m) not in allowed]
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_the_report_test_has_teeth(tmp_path, monkeypatch):
    """The allow-list above fails on a report module that imports the executors inside a function."""
    fake = tmp_path / "robustbench_dc" / "reports"
    fake.mkdir(parents=True)
    (fake / "sneaky.py").write_text("def f():\n    from robustbench_dc.executors import LocalExecutor\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "robustbench_dc")
    with pytest.raises(AssertionError, match="sneaky.py:2 imports LocalExecutor from robustbench_dc.executors"):
        test_reports_import_only_the_core_the_results_and_the_study_types()


@pytest.mark.parametrize("module", TORCH_FREE)
def test_torch_free_modules_import_no_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False", f"importing {module} loads torch"
