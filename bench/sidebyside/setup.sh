#!/usr/bin/env bash
# Recreate the three virtual environments the bench uses, with the exact versions recorded
# in env/*.txt (pip freeze of the venvs the published numbers came from).
# Usage: ./setup.sh [DIR]   (default bench/.venvs; run.py reads FLOOR_VENV/MLSERVER_VENV/BENTO_VENV)
set -euo pipefail
cd "$(dirname "$0")"
DIR="${1:-.venvs}"
for name in floor mlserver; do
  if [ ! -x "$DIR/$name/bin/python" ]; then
    python3 -m venv "$DIR/$name"
    "$DIR/$name/bin/pip" install -q -r "env/$name.txt"
  fi
done
echo "venvs ready under $DIR (wrk must be installed too: apt-get install wrk)"
