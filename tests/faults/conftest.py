"""Fixtures of the fault suite (issue 6, section 2): the real operator and the admin-API stand-in as
processes, on the local control plane, with faults injected into each of them.

Every test gets its own stand-in and its own operator, watching only the test's namespace (`-n`),
so killing or starving them disturbs nothing else, and leftovers of other tests (InferenceNodes
whose finalizer waits for a stand-in that is gone) do not load them. Teardown deletes the test's
InferenceNodes while that operator and stand-in still run, so no namespace is left stuck on a
finalizer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gonka_operator.devcluster import LocalCluster
from helpers import wait_for
from procs import Kubectl, Operator, StandIn

ROOT = Path(__file__).resolve().parents[2]
POLL_SECONDS = 5.0


@pytest.fixture(scope="session")
def kubectl(cluster: LocalCluster) -> Kubectl:
    return Kubectl(cluster.bin_dir / "kubectl", str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> None:
    kubectl.run("apply", "--server-side", "-f", str(ROOT / "crds"))
    for name in ("networknodes.gonka.ai", "inferencenodes.gonka.ai"):
        kubectl.run("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fault-logs")


@pytest.fixture
def standin(logs: Path, request: pytest.FixtureRequest) -> Iterator[StandIn]:
    """A 2025-08-generation stand-in of the test's own. That generation appends a duplicate to its
    saved config (/debug/config) when an existing id is POSTed again, so "no duplicates" shows."""
    sim = StandIn("2025-08", logs)
    sim.name = f"standin-{request.node.name}"
    sim.log_path = logs / f"{sim.name}.log"
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def operator(cluster: LocalCluster, crds: None, logs: Path, namespace: str, standin: StandIn, kubectl: Kubectl,
             request: pytest.FixtureRequest) -> Iterator[Operator]:
    """The real operator, watching only `namespace`, with every admin API mapped to `standin` and
    the registry polled every POLL_SECONDS. Tests may kill() and start() it again.

    Teardown deletes the test's InferenceNodes through it while the stand-in still answers (the
    stand-in is set up first, so it is torn down last)."""
    env = {"GONKA_ADMIN_URL_OVERRIDES": f"*={standin.url}", "GONKA_REGISTRY_POLL_SECONDS": str(POLL_SECONDS),
           "GONKA_ADMIN_TIMEOUT_SECONDS": "5"}
    op = Operator(str(cluster.kubeconfig), logs, env, name=f"operator-{request.node.name}")
    op.args = [*op.args, "--namespace", namespace]
    op.start()
    yield op
    try:
        if op.proc is None or op.proc.poll() is not None:
            op.start()
        kubectl.run("delete", "inferencenodes", "--all", "-n", namespace, "--wait=false")
        wait_for(lambda: not kubectl.json("get", "inferencenodes", "-n", namespace)["items"], 180,
                 f"InferenceNodes of {namespace} deregistered and gone at teardown")
    finally:
        op.stop()

