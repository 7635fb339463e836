"""A child the apply cannot merge into is replaced (children.apply_child): for a Deployment that
must not restart the pod it runs (issue #11 review, item 6: a replacement mid-PoC lost the node's
weight). The ML pod restarts only for a template change, which disruption.hold decides before
the apply; the replacement itself keeps the pod (the new Deployment adopts the orphaned
ReplicaSet). Real API server, controller-manager and kwok."""

from __future__ import annotations

import pytest

from conditions import wait_condition
from helpers import holds_for, wait_for
from manifests import NETWORK_NODE as NN
from manifests import ml_node
from procs import Kubectl, Operator

pytestmark = pytest.mark.integration


def ml_pods(kubectl: Kubectl, namespace: str, name: str) -> dict[str, bool]:
    """uid → being deleted, of the ML pods of InferenceNode `name`."""
    items = kubectl.json("get", "pods", "-n", namespace, "-l", f"gonka.ai/inference-node={name},"
                         "app.kubernetes.io/component=mlnode")["items"]
    return {p["metadata"]["uid"]: bool(p["metadata"].get("deletionTimestamp")) for p in items}


def test_replacing_an_ml_deployment_keeps_its_pod(operator: Operator, kubectl: Kubectl, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + ml_node("kept"))
    wait_condition(kubectl, "inferencenode", "kept", namespace, "WorkloadAvailable", "True", "Available", 90)
    [pod] = ml_pods(kubectl, namespace, "kept")
    deployment = kubectl.get("deployment", "kept-mlnode", namespace)["metadata"]["uid"]
    # someone's edit the apply cannot merge into: RollingUpdate gains defaults Recreate forbids (422)
    kubectl.run("patch", "deployment", "kept-mlnode", "-n", namespace, "--type=merge",
                "-p", '{"spec":{"strategy":{"type":"RollingUpdate"}}}')
    wait_for(lambda: (d := kubectl.get("deployment", "kept-mlnode", namespace)) and d["metadata"]["uid"] != deployment
             and d["spec"]["strategy"]["type"] == "Recreate", 60, "the Deployment replaced")
    holds_for(lambda: ml_pods(kubectl, namespace, "kept") == {pod: False}, 8,
              lambda: f"the ML pod {pod} kept, no other: {ml_pods(kubectl, namespace, 'kept')}")
    owners = kubectl.json("get", "replicasets", "-n", namespace, "-l", "gonka.ai/inference-node=kept")["items"]
    assert [o["metadata"]["ownerReferences"][0]["uid"] for o in owners] == [
        kubectl.get("deployment", "kept-mlnode", namespace)["metadata"]["uid"]]  # adopted
