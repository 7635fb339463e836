"""Shared fixtures. The local control plane is started lazily, once per session, only for tests that
ask for it (`cluster`, `kubeconfig`, `api_client`, `namespace`), so unit tests never pay for it.

GONKA_TEST_KUBECONFIG=<path> reuses a running cluster (e.g. from `python -m gonka_operator.devcluster
up`) instead of starting one, and leaves it running afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conditions import operator_env
from gonka_operator.devcluster import LocalCluster
from helpers import fresh_namespace
from procs import Kubectl, Operator, StandIn

CLUSTER_FIXTURES = {"cluster", "kubeconfig", "api_client", "namespace"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that needs the control plane is an integration test whether or not it says so, so
    # `-m "not integration"` reliably skips every cluster start.
    for item in items:
        if CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    existing = os.environ.get("GONKA_TEST_KUBECONFIG")
    if existing:
        yield LocalCluster.attach(Path(existing))
        return
    # Logs stay in pytest's temp dir (the last few runs are kept) for post-mortems.
    c = LocalCluster(workdir=tmp_path_factory.mktemp("cluster"), timeout=180)
    c.start()
    try:
        yield c
    finally:
        c.stop(remove=False)


@pytest.fixture(scope="session")
def kubeconfig(cluster: LocalCluster) -> str:
    return str(cluster.kubeconfig)


@pytest.fixture(scope="session")
def api_client(cluster: LocalCluster) -> Iterator[Any]:
    """An admin `kubernetes.client.ApiClient` for the session's cluster."""
    with cluster.api_client() as c:
        yield c


@pytest.fixture
def namespace(api_client: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (without waiting) afterwards."""
    with fresh_namespace(api_client, request.node.name) as name:
        yield name


# --- the real processes the operator tests need: kubectl, CRDs, the admin-API stand-in, the operator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kubectl(cluster: LocalCluster) -> Kubectl:
    return Kubectl(cluster.bin_dir / "kubectl", str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> None:
    kubectl.install_crds(ROOT / "crds")


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def standin(logs: Path) -> Iterator[StandIn]:
    """The latest-generation stand-in; every NetworkNode's admin API maps to it (`*` override). Its
    chain clock is frozen in the Inference phase (`--block-time 0`): a PoC window opens only when a
    test opens it (the operator holds ML-pod restarts during PoC, disruption.py)."""
    with StandIn("latest", logs, args=["--block-time", "0"]) as sim:
        yield sim


@pytest.fixture(scope="session")
def standin_legacy(logs: Path) -> Iterator[StandIn]:
    """A 2025-08-generation stand-in, reached through spec.adminURL."""
    with StandIn("2025-08", logs) as sim:
        yield sim


@pytest.fixture(scope="session")
def operator(cluster: LocalCluster, crds: None, standin: StandIn, logs: Path) -> Iterator[Operator]:
    with Operator(str(cluster.kubeconfig), logs, operator_env(standin)) as op:
        yield op
