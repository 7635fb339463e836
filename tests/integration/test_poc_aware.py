"""Issue 15 item 3: a change that restarts an ML pod waits for the Inference phase, and the ML nodes
of one host are restarted one after the other. The real operator on the local control plane; the
PoC window of the network-node stand-in (frozen clock in the session fixture) is opened and closed
on demand."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest

import manifests
from conditions import condition, wait_condition
from helpers import holds_for, wait_for
from manifests import NETWORK_NODE as NN
from procs import Kubectl, Operator, StandIn

pytestmark = pytest.mark.integration
OLD, NEW = "ghcr.io/product-science/mlnode:3.0.8", "ghcr.io/product-science/mlnode:3.0.9"


def node(name: str, image: str = OLD) -> str:
    return manifests.ml_node(name, product=None, cache="{size: 10Gi, preload: false}",
                             extra=f"\n  hardwareType: H100\n  image: {image}")


@pytest.fixture
def poc(standin: StandIn) -> Iterator[StandIn]:
    """The stand-in, with its PoC window closed again whatever the test did."""
    yield standin
    standin.poc("confirmation-end")
    standin.poc("close")


def image(kubectl: Kubectl, name: str, namespace: str) -> str | None:
    dep = kubectl.get("deployment", f"{name}-mlnode", namespace) or {}
    containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return next((c["image"] for c in containers if c["name"] == "mlnode"), None)


def phase_seen(kubectl: Kubectl, name: str, namespace: str, phase: str) -> bool:
    cr = kubectl.get("inferencenode", name, namespace) or {}
    return bool(((cr.get("status") or {}).get("registry") or {}).get("onboarding", {}).get("phase") == phase)


def set_image(kubectl: Kubectl, name: str, namespace: str, value: str) -> None:
    kubectl.run("patch", "inferencenode", name, "-n", namespace, "--type=merge",
                "-p", json.dumps({"spec": {"image": value}}))


def reasons(kubectl: Kubectl, name: str, namespace: str) -> list[str]:
    out = kubectl.run("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
                      "-o", "json").stdout
    return [e["reason"] for e in json.loads(out)["items"]]


def test_a_spec_edit_during_poc_is_held_and_applied_in_the_inference_phase(
        operator: Operator, kubectl: Kubectl, poc: StandIn, namespace: str) -> None:
    name = f"hold-{uuid.uuid4().hex[:6]}"
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + node(name))
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True", timeout=90)
    assert image(kubectl, name, namespace) == OLD

    poc.poc("open")
    wait_for(lambda: phase_seen(kubectl, name, namespace, "PoCGenerate"), 30, "the operator saw the PoC window")
    set_image(kubectl, name, namespace, NEW)
    pending = wait_condition(kubectl, "inferencenode", name, namespace, "UpdatePending", "True", "PoCInProgress")
    assert "PoCGenerate" in pending["message"]
    holds_for(lambda: image(kubectl, name, namespace) == OLD, 5, "the serving pod kept its template during PoC")
    assert "PoCInProgress" in reasons(kubectl, name, namespace)

    poc.poc("validate")  # still PoC: still held
    wait_for(lambda: phase_seen(kubectl, name, namespace, "PoCValidate"), 30, "the operator saw PoCValidate")
    assert image(kubectl, name, namespace) == OLD

    poc.poc("close")
    wait_for(lambda: image(kubectl, name, namespace) == NEW, 30, "the held change applied in the Inference phase")
    wait_condition(kubectl, "inferencenode", name, namespace, "UpdatePending", "False", "UpToDate")
    assert "UpdateApplied" in reasons(kubectl, name, namespace)


def test_confirmation_poc_holds_and_the_force_annotation_lets_it_through(
        operator: Operator, kubectl: Kubectl, poc: StandIn, namespace: str) -> None:
    name = f"force-{uuid.uuid4().hex[:6]}"
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + node(name))
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True", timeout=90)
    poc.poc("confirmation-start")
    # the api's should_be_online turns true with the confirmation PoC: a poll after it was seen
    wait_for(lambda: ((kubectl.get("inferencenode", name, namespace) or {}).get("status", {}).get("registry", {})
                      .get("onboarding", {}).get("shouldBeOnline")), 30, "the operator saw the confirmation PoC")
    set_image(kubectl, name, namespace, NEW)
    wait_condition(kubectl, "inferencenode", name, namespace, "UpdatePending", "True", "PoCInProgress")
    assert image(kubectl, name, namespace) == OLD
    kubectl.run("annotate", "inferencenode", name, "-n", namespace, "gonka.ai/force-update=true")
    wait_for(lambda: image(kubectl, name, namespace) == NEW, 30, "forced through during confirmation PoC")


def test_two_ml_nodes_of_one_host_are_restarted_one_after_the_other(
        operator: Operator, kubectl: Kubectl, poc: StandIn, namespace: str) -> None:
    names = [f"pair-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "".join("---" + node(n) for n in names))
    for n in names:
        wait_condition(kubectl, "inferencenode", n, namespace, "Registered", "True", timeout=90)
    poc.poc("open")
    for n in names:
        wait_for(lambda n=n: phase_seen(kubectl, n, namespace, "PoCGenerate"), 30, f"{n} saw the PoC window")
        set_image(kubectl, n, namespace, NEW)
    for n in names:
        wait_condition(kubectl, "inferencenode", n, namespace, "UpdatePending", "True", "PoCInProgress")
    poc.poc("close")
    wait_for(lambda: all(image(kubectl, n, namespace) == NEW for n in names), 60, "both updated after PoC")
    waited = [n for n in names if "WaitingForSibling" in reasons(kubectl, n, namespace)]
    assert len(waited) == 1, {n: reasons(kubectl, n, namespace) for n in names}
    for n in names:
        wait_condition(kubectl, "inferencenode", n, namespace, "UpdatePending", "False", "UpToDate")


def test_deleting_a_node_disables_it_waits_for_the_inference_phase_then_deregisters(
        operator: Operator, kubectl: Kubectl, poc: StandIn, namespace: str) -> None:
    name = f"drain-{uuid.uuid4().hex[:6]}"
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + node(name))
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True", timeout=90)
    poc.poc("open")
    wait_for(lambda: phase_seen(kubectl, name, namespace, "PoCGenerate"), 30, "the operator saw the PoC window")
    kubectl.run("delete", "inferencenode", name, "-n", namespace, "--wait=false")
    draining = wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True", "Draining")
    assert "PoC window" in draining["message"]
    assert poc.nodes()[name]["state"]["admin_state"]["enabled"] is False  # disabled first

    def still_there() -> bool:
        return (name in poc.nodes() and kubectl.get("inferencenode", name, namespace) is not None
                and kubectl.get("deployment", f"{name}-mlnode", namespace) is not None)

    holds_for(still_there, 5, "the entry, the CR and the ML Deployment stay during PoC")
    assert reasons(kubectl, name, namespace).count("Draining") >= 1
    poc.poc("close")
    wait_for(lambda: kubectl.get("inferencenode", name, namespace) is None, 30, "released after PoC")
    assert name not in poc.nodes()


def test_force_delete_cuts_the_drain_short(operator: Operator, kubectl: Kubectl, poc: StandIn,
                                           namespace: str) -> None:
    name = f"fdel-{uuid.uuid4().hex[:6]}"
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + node(name))
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True", timeout=90)
    poc.poc("open")
    wait_for(lambda: phase_seen(kubectl, name, namespace, "PoCGenerate"), 30, "the operator saw the PoC window")
    kubectl.run("delete", "inferencenode", name, "-n", namespace, "--wait=false")
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True", "Draining")
    kubectl.run("annotate", "inferencenode", name, "-n", namespace, "gonka.ai/force-delete=true")
    wait_for(lambda: kubectl.get("inferencenode", name, namespace) is None, 30, "force-deleted during PoC")
    assert name not in poc.nodes()


def evict(kubectl: Kubectl, pod: str, namespace: str) -> tuple[int, str]:
    """POST the Eviction API (what `kubectl drain` does per pod): 0 when accepted, else kubectl's rc."""
    body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction",
                       "metadata": {"name": pod, "namespace": namespace}})
    proc = kubectl.run("create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", "-f", "-",
                       input=body, check=False)
    return proc.returncode, proc.stderr


def ml_pods(kubectl: Kubectl, name: str, namespace: str) -> list[str]:
    out = kubectl.run("get", "pods", "-n", namespace, "-l", f"gonka.ai/inference-node={name}",
                      "-o", "json").stdout
    return [p["metadata"]["name"] for p in json.loads(out)["items"]
            if not p["metadata"].get("deletionTimestamp") and "preload" not in p["metadata"]["name"]]


def test_evictions_wait_for_the_inference_phase(operator: Operator, kubectl: Kubectl, poc: StandIn,
                                                namespace: str) -> None:
    """The PDB exists only during a PoC window (issue 13's write budget outside it): an eviction is
    refused while it is open and goes ahead once the PDB is gone."""
    name = f"pdb-{uuid.uuid4().hex[:6]}"
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + node(name))
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True", timeout=90)

    def pdb() -> dict | None:
        return kubectl.get("pdb", f"{name}-mlnode", namespace)

    def budget(allowed: int) -> bool:
        obj = pdb() or {}
        return (obj.get("spec", {}).get("minAvailable") == 1
                and obj.get("status", {}).get("disruptionsAllowed") == allowed)

    holds_for(lambda: pdb() is None, 3, "no PDB outside PoC")
    poc.poc("open")
    wait_for(lambda: budget(0), 30, "the PDB created in the PoC window, allowing no disruption")
    pod = wait_for(lambda: ml_pods(kubectl, name, namespace), 10, "the ML pod")[0]
    rc, err = evict(kubectl, pod, namespace)
    assert rc != 0 and "disruption budget" in err, err  # 429: Cannot evict pod as it would violate the PDB
    holds_for(lambda: pod in ml_pods(kubectl, name, namespace), 3, "the ML pod stays during PoC")
    poc.poc("close")
    wait_for(lambda: pdb() is None, 30, "the PDB deleted in the Inference phase")
    rc, err = evict(kubectl, pod, namespace)
    assert rc == 0, err
    wait_for(lambda: pod not in ml_pods(kubectl, name, namespace), 30, "evicted after PoC")


# -- the network node's own pod ----------------------------------------------------------------------

NODE_OLD, NODE_NEW = "ghcr.io/product-science/inferenced:0.2.14", "ghcr.io/product-science/inferenced:0.2.15"


def node_image(kubectl: Kubectl, namespace: str) -> str | None:
    sts = kubectl.get("statefulset", "gonka-node", namespace) or {}
    containers = (((sts.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return next((c["image"] for c in containers if c["name"] == "node"), None)


def epoch_phase(kubectl: Kubectl, namespace: str) -> str | None:
    status = (kubectl.get("networknode", "gonka", namespace) or {}).get("status") or {}
    return (status.get("epoch") or {}).get("phase")


def set_node_image(kubectl: Kubectl, namespace: str, value: str) -> None:
    kubectl.run("patch", "networknode", "gonka", "-n", namespace, "--type=merge",
                "-p", json.dumps({"spec": {"images": {"node": value}}}))


def test_a_network_node_pod_change_during_poc_is_held_until_the_window_ends(
        operator: Operator, kubectl: Kubectl, poc: StandIn, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN)
    wait_condition(kubectl, "networknode", "gonka", namespace, "Ready", "True", timeout=90)
    assert node_image(kubectl, namespace) == NODE_OLD
    uid = kubectl.get("statefulset", "gonka-node", namespace)["metadata"]["uid"]
    poc.poc("open")
    wait_for(lambda: epoch_phase(kubectl, namespace) == "PoCGenerate", 30, "the host status saw the PoC window")
    set_node_image(kubectl, namespace, NODE_NEW)
    pending = wait_condition(kubectl, "networknode", "gonka", namespace, "UpdatePending", "True", "PoCInProgress")
    assert "PoCGenerate" in pending["message"] and re.search(r"until ~\d{4}-\d\d-\d\dT\d\d:\d\dZ",
                                                               pending["message"]), pending["message"]
    # the message names a moment, not a countdown: it is not rewritten every poll
    holds_for(lambda: node_image(kubectl, namespace) == NODE_OLD and (condition(
        kubectl.get("networknode", "gonka", namespace), "UpdatePending") or {}).get("message") == pending["message"],
        5, "the node pod kept its template during PoC, the message its moment")
    assert "PoCInProgress" in reasons(kubectl, "gonka", namespace)
    poc.poc("close")
    wait_for(lambda: node_image(kubectl, namespace) == NODE_NEW, 30, "the held change applied in the Inference phase")
    wait_condition(kubectl, "networknode", "gonka", namespace, "UpdatePending", "False", "UpToDate")
    assert "UpdateApplied" in reasons(kubectl, "gonka", namespace)
    # held means kept: the StatefulSet was patched in place, never pruned and re-created
    assert kubectl.get("statefulset", "gonka-node", namespace)["metadata"]["uid"] == uid


def test_the_force_annotation_lets_a_network_node_change_through_during_poc(
        operator: Operator, kubectl: Kubectl, poc: StandIn, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN)
    wait_condition(kubectl, "networknode", "gonka", namespace, "Ready", "True", timeout=90)
    poc.poc("open")
    wait_for(lambda: epoch_phase(kubectl, namespace) == "PoCGenerate", 30, "the host status saw the PoC window")
    set_node_image(kubectl, namespace, NODE_NEW)
    wait_condition(kubectl, "networknode", "gonka", namespace, "UpdatePending", "True", "PoCInProgress")
    kubectl.run("annotate", "networknode", "gonka", "-n", namespace, "gonka.ai/force-update=true")
    wait_for(lambda: node_image(kubectl, namespace) == NODE_NEW, 30, "forced through during PoC")


# -- the drain ends when the epoch turns -------------------------------------------------------------

def test_a_drain_ends_when_the_epoch_has_turned(operator: Operator, kubectl: Kubectl, poc: StandIn,
                                               namespace: str) -> None:
    """Deleted during a confirmation PoC (should_be_online): it stays; the next epoch's PoC opens
    (still should_be_online, still a window), but the node was disabled in the previous epoch, so it
    is no longer scheduled: released."""
    name = f"turn-{uuid.uuid4().hex[:6]}"
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + node(name))
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True", timeout=90)
    epoch = wait_for(lambda: (kubectl.get("networknode", "gonka", namespace) or {}).get("status", {})
                     .get("epoch", {}).get("id"), 30, "the host status read the epoch")
    poc.poc("confirmation-start")
    wait_for(lambda: ((kubectl.get("inferencenode", name, namespace) or {}).get("status", {}).get("registry", {})
                      .get("onboarding", {}).get("shouldBeOnline")), 30, "the operator saw the confirmation PoC")
    kubectl.run("delete", "inferencenode", name, "-n", namespace, "--wait=false")
    draining = wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True", "Draining")
    assert f"until epoch {epoch} has ended" in draining["message"], draining["message"]
    holds_for(lambda: name in poc.nodes() and kubectl.get("inferencenode", name, namespace) is not None, 4,
              "the entry and the CR stay during the confirmation PoC")
    poc.poc("open")  # the epoch turns
    wait_for(lambda: kubectl.get("inferencenode", name, namespace) is None, 30, "released once the epoch turned")
    assert name not in poc.nodes()
    deregistered = [e for e in events(kubectl, name, namespace) if e["reason"] == "Deregistered"]
    assert deregistered and "epoch has turned" in deregistered[-1]["message"], deregistered


def events(kubectl: Kubectl, name: str, namespace: str) -> list[dict]:
    out = kubectl.run("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
                      "-o", "json").stdout
    return list(json.loads(out)["items"])
