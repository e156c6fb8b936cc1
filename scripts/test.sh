#!/usr/bin/env bash
# The whole check, the same locally and in CI: lint, format, types, tests (SQLite and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
# tests/deploy/test_load_balancer.py runs HAProxy (Debian's package): install it where we can.
if ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ] && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
    apt-get update -q >/dev/null && apt-get install -y -q haproxy >/dev/null
fi
ruff check .
ruff format --check .
mypy
python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
