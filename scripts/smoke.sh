#!/usr/bin/env bash
# Install robustbench-dc into .venv and run the main job on scikit-learn's bundled digits data (no download).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt torch torchvision
.venv/bin/python -m pip install -q -c constraints.txt -e ".[digits]"
.venv/bin/dc-robust reproduce --preset smoke --workspace dc-robust-workspace "$@"
