"""Fixtures of the real Argo CD sync (marker `gitops`; part of `make test`, alone: `make test-gitops`).

They need the `argocd` binary (application-controller + repo-server) and Argo CD's CRDs, which
hack/build-argocd.sh builds from argo-cd's Go modules into the version-keyed cache (`make tools`
does; the fixture builds what is missing), and redis-server (`bash hack/install-apt.sh gitops`).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from argocd import TIMINGS, ArgoCD, timing

from gonka_operator.devcluster import LocalCluster
from procs import Kubectl

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "charts" / "gonka-operator" / "argocd" / "argocd-cm-snippet.yaml"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gitops: the real Argo CD sync (tests/gitops; make test-gitops alone)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("Argo CD sync timings")
        for what, seconds in TIMINGS:
            terminalreporter.write_line(f"{seconds:8.1f} s  {what}")


@pytest.fixture(scope="session")
def argocd_bin() -> Path:
    """The bin dir of hack/build-argocd.sh (argocd + Argo CD's CRDs), built if missing."""
    if os.environ.get("GONKA_ARGOCD_BIN"):
        return Path(os.environ["GONKA_ARGOCD_BIN"])
    start = time.monotonic()
    out = subprocess.run(["bash", str(ROOT / "hack" / "build-argocd.sh"), "argocd"], check=True,
                         capture_output=True, text=True)
    timing("hack/build-argocd.sh argocd (0 when cached)", time.monotonic() - start)
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def argocd(argocd_bin: Path, cluster: LocalCluster, kubectl: Kubectl, kubeconfig: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoCD]:
    # argocd-cm holds the project's health checks exactly as the snippet ships them
    data = yaml.safe_load(SNIPPET.read_text())["data"]
    with ArgoCD(argocd_bin, cluster.bin_dir, kubectl, kubeconfig, tmp_path_factory.mktemp("argocd"), data) as cd:
        yield cd
        for what, seconds in cd.timings.items():
            timing(what, seconds)
