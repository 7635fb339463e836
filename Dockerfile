# syntax=docker/dockerfile:1
# The gonka-operator image: multi-stage, slim, non-root (uid 10001).
#   docker build -t gonka-operator:dev .
# Pin PYTHON_IMAGE to a digest (python:3.11-slim-bookworm@sha256:...) for reproducible builds.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the operator and its dependencies (wheels only, no compiler) ------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ONLY_BINARY=:all:
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (cached while only the code changes), then the package itself.
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip install --no-compile . \
    # the root filesystem is read-only at run time: compile the bytecode now
    && python -m compileall -q /opt/venv

# --- runtime: the virtualenv on a clean slim image ----------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="gonka-operator" \
      org.opencontainers.image.description="Kubernetes operator for Gonka network nodes and inference nodes" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 gonka \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin gonka
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /tmp
# 8080: kopf's liveness endpoint; 8081: /metrics when GONKA_METRICS_PORT=8081 (the chart sets it).
EXPOSE 8080 8081
ENTRYPOINT ["gonka-operator", "run", "--log-format=json", "--liveness=http://0.0.0.0:8080/healthz"]
