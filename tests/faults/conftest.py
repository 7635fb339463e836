"""Fixtures of the fault suite (issue 6, section 2): the real operator and the admin-API stand-in as
processes, on the local control plane, with faults injected into each of them.

Every test gets its own stand-in and its own operator, watching only the test's namespace (`-n`),
so killing or starving them disturbs nothing else, and leftovers of other tests (InferenceNodes
whose finalizer waits for a stand-in that is gone) do not load them. Teardown deletes the test's
InferenceNodes while that operator and stand-in still run, so no namespace is left stuck on a
finalizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gonka_operator.devcluster import LocalCluster
from helpers import wait_for
from procs import Kubectl, Operator, StandIn

ROOT = Path(__file__).resolve().parents[2]
POLL_SECONDS = 5.0


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


def start_operator(kubeconfig: str, logs: Path, namespace: str, standin: StandIn, name: str) -> Operator:
    """The real operator, watching only `namespace`, with every admin API mapped to `standin` and
    the registry polled every POLL_SECONDS."""
    env = {"GONKA_ADMIN_URL_OVERRIDES": f"*={standin.url}", "GONKA_REGISTRY_POLL_SECONDS": str(POLL_SECONDS),
           "GONKA_ADMIN_TIMEOUT_SECONDS": "5"}
    op = Operator(kubeconfig, logs, env, name=name)
    op.args = [*op.args, "--namespace", namespace]
    op.start()
    return op


@pytest.fixture
def operator(cluster: LocalCluster, crds: None, logs: Path, namespace: str, standin: StandIn, kubectl: Kubectl,
             request: pytest.FixtureRequest) -> Iterator[Operator]:
    """The test's operator (start_operator) on the session's cluster. Tests may kill() and start() it.

    Teardown deletes the test's InferenceNodes through it while the stand-in still answers (the
    stand-in is set up first, so it is torn down last)."""
    op = start_operator(str(cluster.kubeconfig), logs, namespace, standin, f"operator-{request.node.name}")
    yield op
    try:
        if op.proc is None or op.proc.poll() is not None:
            op.start()
        kubectl.run("delete", "inferencenodes", "--all", "-n", namespace, "--wait=false")
        wait_for(lambda: not kubectl.json("get", "inferencenodes", "-n", namespace)["items"], 180,
                 f"InferenceNodes of {namespace} deregistered and gone at teardown")
    finally:
        op.stop()


@pytest.fixture
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A control plane of the test's own (started in ~5 s), with the CRDs, for a test that restarts
    its kube-apiserver: the controller-manager and kwok take up to a minute to act again after such
    a restart, which must not slow down the tests that share the session's cluster. It also works
    when the session reuses a cluster (GONKA_TEST_KUBECONFIG), whose processes are not ours."""
    c = LocalCluster(workdir=tmp_path_factory.mktemp("own-cluster"), timeout=180)
    c.start()
    try:
        kubectl = Kubectl(c.bin_dir / "kubectl", str(c.kubeconfig))
        kubectl.install_crds(ROOT / "crds")
        yield c
    finally:
        c.stop(remove=False)  # logs stay in pytest's temp dir


@pytest.fixture
def operator_on(logs: Path, standin: StandIn, request: pytest.FixtureRequest) -> Iterator[
        Callable[[LocalCluster, str], Operator]]:
    """`operator_on(cluster, namespace)` starts the test's operator on another cluster (own_cluster);
    it is stopped at teardown (the cluster goes too, so its objects need no cleanup)."""
    started: list[Operator] = []

    def start(cluster: LocalCluster, namespace: str) -> Operator:
        started.append(start_operator(str(cluster.kubeconfig), logs, namespace, standin,
                                      f"operator-{request.node.name}"))
        return started[-1]

    yield start
    for op in started:
        op.stop()
