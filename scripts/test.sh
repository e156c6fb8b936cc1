#!/usr/bin/env bash
# The whole check, the same locally and in CI: lint, format, types, tests (SQLite and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
ruff format --check .
mypy
python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
