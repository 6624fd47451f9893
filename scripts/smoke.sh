#!/usr/bin/env bash
# Install robustbench-dc into .venv and run the main job on the bundled digits data (no download).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q -e .
.venv/bin/dc-robust reproduce --preset smoke "$@"
