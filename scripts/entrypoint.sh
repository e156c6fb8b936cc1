#!/bin/sh
# The container's entrypoint (also run as a process by tests/deploy).
#   no arguments           modelserve serve --workers auto (MODELSERVE_WORKERS overrides auto)
#   options only           modelserve serve OPTIONS (KServe passes --model_name, --model_dir...)
#   anything else          that modelserve command (e.g. `db upgrade` for a migration job)
# `serve` checks the data dir is writable, applies pending migrations (one replica at a time,
# under a PostgreSQL advisory lock), then serves. `exec` makes it the process the container
# runtime signals: SIGTERM drains in-flight requests and flushes the prediction log.
set -eu
if [ "$#" -eq 0 ]; then
    set -- serve --workers "${MODELSERVE_WORKERS:-auto}"
elif [ "${1#-}" != "$1" ]; then
    set -- serve "$@"
fi
exec modelserve "$@"
