"""End-to-end tests on the real node `real-0` (marker `e2e`): real pods, cluster DNS, Services and
enforced NetworkPolicies.

They run only with GONKA_E2E=1 (the real node needs root, containerd and the node binaries of
`hack/build-tools.sh --real-node`); otherwise, or on a machine without root or network namespaces,
every test here is skipped with one line saying why. The session fixture `real_cluster` starts a
private control plane plus the real node, once, and stops it (leaving the machine as it was).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from realnode_tools import real_node_bin_dir

from gonka_operator.devcluster import LocalCluster
from gonka_operator.devcluster.machine import unavailable_reason
from helpers import fresh_namespace
from procs import Kubectl

ROOT = Path(__file__).resolve().parents[2]


def _skip_reason() -> str | None:
    if os.environ.get("GONKA_E2E") != "1":
        return "e2e suite off: set GONKA_E2E=1 to run it on the real node (needs root)"
    return unavailable_reason()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    reason = _skip_reason()
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(workdir=tmp_path_factory.mktemp("real-cluster"), bin_dir=real_node_bin_dir(), timeout=240,
                     real_node=True)
    c.start()
    try:
        yield c
    finally:
        c.stop(remove=False)


@pytest.fixture(scope="session")
def e2e_api(real_cluster: LocalCluster) -> Iterator[Any]:
    with real_cluster.api_client() as c:
        yield c


@pytest.fixture(scope="session")
def e2e_kubectl(real_cluster: LocalCluster) -> Kubectl:
    return Kubectl(real_cluster.bin_dir / "kubectl", str(real_cluster.kubeconfig))


@pytest.fixture
def e2e_namespace(e2e_api: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    with fresh_namespace(e2e_api, request.node.name, prefix="e2e-", slug_length=30) as name:
        yield name


@pytest.fixture(scope="session")
def host(real_cluster: LocalCluster, e2e_api: Any) -> Any:
    """The operator installed by its chart and one host (NetworkNode + 2 InferenceNodes) on real-0,
    with both ML nodes registered."""
    from deploy import deploy, wait_registered

    core = client.CoreV1Api(e2e_api)
    ns = f"e2e-host-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": ns}})
    h = deploy(real_cluster, ns)
    wait_registered(h)
    return h
