#!/usr/bin/env bash
# The whole check: setup, lint (ruff), types (mypy --strict), then every test.
# Needs ffmpeg and chromium (Debian: apt-get install ffmpeg chromium) for the media and
# browser tests.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/ruff check streamd tests bench
.venv/bin/ruff format --check streamd tests bench
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
