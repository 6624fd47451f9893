#!/usr/bin/env bash
# Install robustbench-dc with its test dependencies into .venv and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned by constraints.txt, so that nothing later pulls a different build
.venv/bin/python -m pip install -q -c constraints.txt torch torchvision
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
.venv/bin/python -m pytest -q "$@"
