# gonka-operator developer entry points. Everything runs from the repo's .venv.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
CLUSTER_DIR ?= $(CURDIR)/.local/cluster
SIM_PORT ?= 19200

.PHONY: venv apt tools crds lint test test-unit test-gitops test-e2e run cluster-up cluster-down bench clean

$(BIN)/gonka-operator: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' -c constraints.txt
	@touch $@

venv: $(BIN)/gonka-operator

apt:  ## Debian packages the tests and the demo run for real (idempotent; nothing to do when installed)
	bash hack/install-apt.sh nginx gitops

tools:  ## build kube-apiserver, etcd, kwok, helm… and Argo CD (controller, repo-server, Lua runner) into the version-keyed cache (once)
	bash hack/build-tools.sh
	bash hack/build-argocd.sh all

crds: venv  ## regenerate crds/ and the chart's CRD templates from the pydantic models
	$(BIN)/python hack/write_crds.py

lint: venv
	$(BIN)/ruff check operator tests hack
	$(BIN)/mypy

test: venv apt tools  ## the whole suite: lint, unit, integration, chart, faults, gitops, and e2e on the real node (root)
	bash hack/install-apt.sh realnode
	GONKA_E2E=1 GONKA_TOOLS_BIN=$$(bash hack/build-tools.sh --real-node | tail -n1) $(BIN)/pytest -q -p no:cacheprovider -rs
	$(MAKE) lint

test-gitops: venv apt tools  ## only the real Argo CD sync (tests/gitops, part of make test)
	GONKA_TOOLS_BIN=$$(bash hack/build-tools.sh | tail -n1) $(BIN)/pytest -q -p no:cacheprovider -m gitops tests/gitops

test-unit: venv
	$(BIN)/pytest -q -m "not integration"

cluster-up: venv tools  ## start the local control plane (idempotent); prints KUBECONFIG=...; REAL_NODE=1 adds real-0 (root)
	$(if $(REAL_NODE),bash hack/install-apt.sh realnode)
	GONKA_TOOLS_BIN=$$(bash hack/build-tools.sh $(if $(REAL_NODE),--real-node) | tail -n1) $(BIN)/python -m gonka_operator.devcluster up --dir $(CLUSTER_DIR) $(if $(REAL_NODE),--real-node)

test-e2e: venv  ## only the real-pod suite (root, tests/e2e, part of make test): node tools, images, the operator from its chart
	bash hack/install-apt.sh realnode
	GONKA_E2E=1 $(BIN)/pytest -q -p no:cacheprovider -rs tests/e2e

cluster-down: venv
	$(BIN)/python -m gonka_operator.devcluster down --dir $(CLUSTER_DIR)

run: venv apt tools  ## local demo: control plane + admin-API stand-in + operator + example manifests
	bash hack/run-local.sh

bench: venv tools  ## benchmark at N=500 (BENCH_ARGS="--n 200"); SCALE=1: N = 100, 500, 1000 and one table
	GONKA_TOOLS_BIN=$$(bash hack/build-tools.sh | tail -n1) $(BIN)/python hack/bench.py $(if $(SCALE),--scale) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .local
