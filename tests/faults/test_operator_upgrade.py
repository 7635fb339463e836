"""An operator upgrade (a new image, so a new preload image) and children deleted while the
operator was down (issue #11 review, items 2-4): the real operator, stopped and started
again with another image, against the real API server, controller-manager and kwok.

In the fault suite because nothing else may act in its namespace: the integration suite's
cluster-wide session operator would create the Jobs and restore the children itself (it runs
from the first integration test that needs it on), and this test would prove nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conditions import operator_env, wait_condition
from gonka_operator.devcluster import LocalCluster
from helpers import holds_for, wait_for
from manifests import NETWORK_NODE as NN
from manifests import ml_node
from procs import Kubectl, Operator, StandIn

pytestmark = [pytest.mark.faults, pytest.mark.integration]
REGISTERING_NN = NN + "  onboarding: {registerParticipant: true}\n"  # the register Job too


@pytest.fixture
def standin(logs: Path, request: pytest.FixtureRequest) -> Iterator[StandIn]:
    """A latest-generation stand-in of the test's own (the fault suite's default is 2025-08), its
    chain frozen in the Inference phase: the NetworkNode's onboarding Jobs and host status."""
    sim = StandIn("latest", logs, args=["--block-time", "0"])
    sim.name = f"standin-{request.node.name}"
    sim.log_path = logs / f"{sim.name}.log"
    with sim:
        yield sim


def operator(cluster: LocalCluster, logs: Path, standin: StandIn, namespace: str, image: str) -> Operator:
    """An operator of `namespace` only (another test's operator acts elsewhere), whose chart set
    the preload image to `image` (the operator's own image)."""
    op = Operator(str(cluster.kubeconfig), logs, {**operator_env(standin), "GONKA_PRELOAD_IMAGE": image},
                  name=f"upgrade-{namespace}")
    op.args += ["--namespace", namespace]
    return op


def jobs(kubectl: Kubectl, namespace: str) -> dict[str, tuple[str, str]]:
    """name → (uid, image) of the Jobs in `namespace`."""
    return {j["metadata"]["name"]: (j["metadata"]["uid"], j["spec"]["template"]["spec"]["containers"][0]["image"])
            for j in kubectl.json("get", "jobs", "-n", namespace)["items"]}


def test_an_upgrade_reruns_no_job_and_restores_what_was_deleted_meanwhile(
        cluster: LocalCluster, crds: None, kubectl: Kubectl, standin: StandIn, logs: Path, namespace: str) -> None:
    with operator(cluster, logs, standin, namespace, "gonka-operator:1.0"):
        kubectl.run("apply", "-n", namespace, "-f", "-", input=REGISTERING_NN + "---" + ml_node("up"))
        wait_condition(kubectl, "inferencenode", "up", namespace, "CacheReady", "True", timeout=90)
        wait_condition(kubectl, "inferencenode", "up", namespace, "WorkloadAvailable", "True", timeout=90)
        wait_for(lambda: (kubectl.get("networknode", "gonka", namespace)["status"].get("onboarding") or {})
                 .get("warmKeyJob") == "Complete", 60, "warm-key Job Complete")
        wait_for(lambda: "gonka-register" in jobs(kubectl, namespace), 60, "the register Job")
        before = jobs(kubectl, namespace)
    preload = next(name for name in before if "-hf-" in name)
    assert before[preload][1] == "gonka-operator:1.0"
    # while no operator runs: someone deletes the ML node's Service and the ML pods' proxy
    # ConfigMap (the PodDisruptionBudget exists only during a PoC window: none to delete here)
    kubectl.run("delete", "service", "up-mlnode", "-n", namespace)
    kubectl.run("delete", "configmap", "gonka-ml-proxy", "-n", namespace)
    with operator(cluster, logs, standin, namespace, "gonka-operator:1.1") as upgraded:
        wait_for(lambda: kubectl.get("service", "up-mlnode", namespace), 60,
                 lambda: f"the deleted Service applied again; operator log:\n{upgraded.log_tail()}")
        wait_for(lambda: kubectl.get("configmap", "gonka-ml-proxy", namespace), 30, "the proxy ConfigMap applied again")
        # created once: the preload, warm-key and register Jobs are the same objects, with the image
        # they ran (the register Job, which needs the chain Service's IP, is not pruned either)
        holds_for(lambda: jobs(kubectl, namespace) == before, 8,
                  lambda: f"Jobs as before the upgrade: {before} vs {jobs(kubectl, namespace)}")
        wait_condition(kubectl, "inferencenode", "up", namespace, "CacheReady", "True", timeout=10)
    kubectl.run("annotate", "inferencenode", "up", "-n", namespace, "gonka.ai/skip-deregistration=true")
