"""Fixtures of the operator's integration tests: CRDs installed on the real control plane, the
admin-API stand-in in both generations, and the operator itself, all as real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gonka_operator.devcluster import LocalCluster
from helpers import wait_for
from procs import Kubectl, Operator, StandIn

ROOT = Path(__file__).resolve().parents[2]
POLL_SECONDS = "2"


@pytest.fixture(scope="session")
def kubectl(cluster: LocalCluster) -> Kubectl:
    return Kubectl(cluster.bin_dir / "kubectl", str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> None:
    # right after start-up the API server may still be installing its own API groups: retry
    wait_for(lambda: kubectl.run("apply", "--server-side", "-f", str(ROOT / "crds"), check=False).returncode == 0,
             30, lambda: kubectl.run("apply", "--server-side", "-f", str(ROOT / "crds"), check=False).stderr)
    for name in ("networknodes.gonka.ai", "inferencenodes.gonka.ai"):
        kubectl.run("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def standin(logs: Path) -> Iterator[StandIn]:
    """The latest-generation stand-in; every NetworkNode's admin API maps to it (`*` override)."""
    sim = StandIn("latest", logs)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def standin_legacy(logs: Path) -> Iterator[StandIn]:
    """A 2025-08-generation stand-in, reached through spec.adminURL."""
    sim = StandIn("2025-08", logs)
    sim.start()
    yield sim
    sim.stop()


def operator_env(standin: StandIn) -> dict[str, str]:
    return {"GONKA_ADMIN_URL_OVERRIDES": f"*={standin.url}", "GONKA_REGISTRY_POLL_SECONDS": POLL_SECONDS,
            "GONKA_ADMIN_TIMEOUT_SECONDS": "3"}


@pytest.fixture(scope="session")
def operator(cluster: LocalCluster, crds: None, standin: StandIn, logs: Path) -> Iterator[Operator]:
    op = Operator(str(cluster.kubeconfig), logs, operator_env(standin))
    op.start()
    yield op
    op.stop()


def condition(obj: dict | None, ctype: str) -> dict | None:
    for c in ((obj or {}).get("status") or {}).get("conditions", []):
        if c["type"] == ctype:
            return c
    return None


def wait_condition(kubectl: Kubectl, kind: str, name: str, ns: str, ctype: str, status: str,
                   reason: str | None = None, timeout: float = 60) -> dict:
    def check() -> dict | None:
        c = condition(kubectl.get(kind, name, ns), ctype)
        return c if c and c["status"] == status and (reason is None or c["reason"] == reason) else None

    return wait_for(check, timeout, lambda: f"{kind} {ns}/{name} {ctype}={status} {reason or ''}; "
                    f"status now: {(kubectl.get(kind, name, ns) or {}).get('status')}")
