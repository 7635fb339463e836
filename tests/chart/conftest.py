"""Fixtures of the chart tests (helpers: chartlib.py). kubectl, logs and the admin-API stand-in come
from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chartlib import (
    CHART,
    Helm,
    Recorder,
    Release,
    admin_cluster,
    adopt_crds,
    create_namespace,
    sa_token,
    unique,
    wait_crds_established,
    write_kubeconfig,
)

from gonka_operator.devcluster import LocalCluster
from procs import Kubectl


@pytest.fixture(scope="session")
def helm(cluster: LocalCluster) -> Helm:
    return Helm(cluster.bin_dir / "helm", str(cluster.kubeconfig))


@pytest.fixture(scope="module")
def operator_release(helm: Helm, kubectl: Kubectl) -> Iterator[Release]:
    """The chart installed with its defaults (all namespaces, CRDs), uninstalled afterwards."""
    release = Release(unique("gonka"), create_namespace(kubectl, unique("gonka-system")), helm, kubectl)
    adopt_crds(kubectl, release.name, release.namespace)
    helm.run("install", release.name, str(CHART), "-n", release.namespace)
    wait_crds_established(kubectl)
    try:
        yield release
    finally:
        release.uninstall()
        kubectl.run("delete", "namespace", release.namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def sa_credentials(cluster: LocalCluster, kubectl: Kubectl, logs: Path, tmp_path_factory: pytest.TempPathFactory,
                   ) -> Iterator[Callable[[Release], tuple[str, str, Recorder]]]:
    """Returns make(release) → (direct kubeconfig, kubeconfig through a started Recorder, recorder)."""
    started: list[Recorder] = []
    server, ca = admin_cluster(str(cluster.kubeconfig))

    def make(release: Release) -> tuple[str, str, Recorder]:
        token = sa_token(kubectl, release.service_account, release.namespace)
        directory = tmp_path_factory.mktemp(f"sa-{release.name}")
        direct = write_kubeconfig(directory / "direct.kubeconfig", server, token, ca)
        recorder = Recorder(logs, server, ca, f"apirecorder-{release.name}")
        recorder.start()
        started.append(recorder)
        proxied = write_kubeconfig(directory / "recorded.kubeconfig", recorder.url, token, None)
        return direct, proxied, recorder

    yield make
    for recorder in started:
        recorder.stop()
