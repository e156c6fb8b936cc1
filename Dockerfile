# syntax=docker/dockerfile:1
# modelserve: a wheel built in one stage, installed into a slim runtime with no compilers.
#   docker build -t modelserve .
#   docker build --build-arg EXTRA_PACKAGES="xgboost==3.4.1 lightgbm==4.7.0" -t modelserve:gbm .
# Run with a read-only root: docker run --read-only --tmpfs /tmp -v modelserve-data:/data ...
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN pip install --no-cache-dir build==1.3.0
COPY pyproject.toml README.md ./
COPY modelserve ./modelserve
RUN python -m build --wheel --outdir /wheels
# Build-time extras: optional dependency groups of modelserve (EXTRAS="a,b") and any other
# packages to serve models with (EXTRA_PACKAGES, pinned requirement specifiers).
ARG EXTRAS=""
ARG EXTRA_PACKAGES=""
RUN python -m venv /opt/modelserve \
    && wheel="$(ls /wheels/modelserve-*.whl)" \
    && /opt/modelserve/bin/pip install --no-cache-dir "${wheel}${EXTRAS:+[${EXTRAS}]}" ${EXTRA_PACKAGES}

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="modelserve" \
      org.opencontainers.image.description="Validated, logged predictions from registered models" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin modelserve \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=build /opt/modelserve /opt/modelserve
COPY --chmod=0755 scripts/entrypoint.sh /usr/local/bin/modelserve-entrypoint
# Nothing is written outside /data and /tmp: bytecode is not cached (the root may be
# read-only), temporary files (Gunicorn's worker heartbeats among them) go to /tmp.
ENV PATH="/opt/modelserve/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    MODELSERVE_DATA_DIR=/data \
    MODELSERVE_HOST=0.0.0.0 \
    MODELSERVE_PORT=8080
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MODELSERVE_PORT', '8080') + '/healthz', timeout=2)"]
ENTRYPOINT ["/usr/local/bin/modelserve-entrypoint"]
