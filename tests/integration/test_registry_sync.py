"""Issue 4: InferenceNodes kept in sync with the network node's admin registry (the stand-in)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import manifests
from conditions import operator_env, wait_condition
from gonka_operator.devcluster import LocalCluster
from helpers import holds_for, wait_for
from manifests import NETWORK_NODE as NN
from procs import Kubectl, Operator, StandIn

pytestmark = pytest.mark.integration



def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def in_cluster(name: str, *, extra: str = "", model: str = "Qwen/Qwen3-32B-FP8") -> str:
    return manifests.ml_node(name, 8, model=model, extra="\n  parallelism: {tensor: 4}\n  hardwareType: H100"
                             "\n  maxConcurrent: 250" + extra)


def external(name: str, admin_url: str, *, host: str = "10.0.0.21", extra: str = "") -> str:
    return f"""
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {{name: {name}}}
spec:
  adminURL: {admin_url}
  model: Qwen/Qwen3-32B-FP8
  gpus: 1
  hardwareType: H100
  external: {{host: {host}, inferencePort: 5050, pocPort: 8080}}{extra}
"""


@pytest.fixture
def private_standin(logs: Path, kubectl: Kubectl, namespace: str) -> Iterator[StandIn]:
    """A stand-in of its own, for tests that break it. Its InferenceNodes are deleted (and so
    deregistered) before it stops, so no finalizer is left waiting for an API that is gone."""
    sim = StandIn("latest", logs, args=["--block-time", "0"])  # frozen in the Inference phase, like the
    sim.start()  # session stand-in: a natural PoC window would make a delete drain (disruption.py)
    yield sim
    sim.fault("none", 0)
    kubectl.run("delete", "inferencenodes", "--all", "-n", namespace, "--timeout=90s", check=False)
    sim.stop()


def test_register_on_create_with_the_exact_body(operator: Operator, kubectl: Kubectl, standin: StandIn,
                                                namespace: str) -> None:
    name = unique("reg")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + in_cluster(name))
    entry = wait_for(lambda: standin.nodes().get(name), 30, f"{name} in the stand-in's registry")
    expected = {
        "id": name, "host": f"{name}-mlnode.{namespace}.svc.cluster.local", "inference_port": 5050,
        "poc_port": 8080, "inference_segment": "", "poc_segment": "", "max_concurrent": 250,
        "models": {"Qwen/Qwen3-32B-FP8": {"args": ["--tensor-parallel-size", "4"]}},
        "hardware": [{"type": "H100", "count": 8}],
    }
    assert {k: entry["node"].get(k) for k in expected} == expected
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True")
    obj = wait_for(lambda: (o := kubectl.get("inferencenode", name, namespace))
                   and (o["status"].get("registry") or {}).get("currentStatus") == "INFERENCE" and o, 30,
                   "status.registry.currentStatus INFERENCE")
    assert obj["status"]["registry"]["enabled"] is True and obj["status"]["registry"]["lastSeen"]
    printed = kubectl.run("get", "inferencenode", name, "-n", namespace).stdout
    assert "INFERENCE" in printed and "Qwen/Qwen3-32B-FP8" in printed
    nn = wait_for(lambda: (o := kubectl.get("networknode", "gonka", namespace)) and o["status"].get("adminReachable")
                  and o, 30, "NetworkNode adminReachable")
    assert nn["status"]["registry"]["registered"] >= 1


@pytest.mark.parametrize("generation", ["latest", "2025-08"])
def test_spec_change_updates_without_duplicates(generation: str, operator: Operator, kubectl: Kubectl,
                                                standin: StandIn, standin_legacy: StandIn, namespace: str) -> None:
    sim = standin if generation == "latest" else standin_legacy
    name = unique("upd")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=external(name, sim.url))
    wait_for(lambda: sim.nodes().get(name), 30, "registered")
    kubectl.run("patch", "inferencenode", name, "-n", namespace, "--type=merge",
                "-p", '{"spec":{"maxConcurrent":42,"external":{"host":"10.0.0.99"}}}')
    wait_for(lambda: (n := sim.nodes().get(name)) and n["node"]["max_concurrent"] == 42
             and n["node"]["host"] == "10.0.0.99", 30, "updated entry")
    saved = [n for n in sim.saved_config() if n["id"] == name]
    assert len(saved) == 1, f"saved config holds {len(saved)} entries for {name}: {saved}"
    if generation == "latest":
        assert sim.requests().get("PUT /admin/v1/nodes/{id}", 0) >= 2


def test_disable_and_enable(operator: Operator, kubectl: Kubectl, standin: StandIn, namespace: str) -> None:
    name = unique("toggle")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=external(name, standin.url))
    wait_for(lambda: standin.nodes().get(name), 30, "registered")
    kubectl.run("patch", "inferencenode", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"enabled":false}}')
    wait_for(lambda: standin.nodes()[name]["state"]["admin_state"]["enabled"] is False, 30, "disabled")
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True", "Disabled")
    kubectl.run("patch", "inferencenode", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"enabled":true}}')
    wait_for(lambda: standin.nodes()[name]["state"]["admin_state"]["enabled"] is True, 30, "enabled again")


def test_delete_deregisters(operator: Operator, kubectl: Kubectl, standin: StandIn, namespace: str) -> None:
    name = unique("del")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + in_cluster(name))
    wait_for(lambda: standin.nodes().get(name), 30, "registered")
    kubectl.run("delete", "inferencenode", name, "-n", namespace, "--timeout=60s")
    assert name not in standin.nodes()
    assert kubectl.get("inferencenode", name, namespace) is None


def test_admin_down_at_create_then_back(operator: Operator, kubectl: Kubectl, private_standin: StandIn,
                                        namespace: str) -> None:
    name = unique("down")
    private_standin.fault("refuse", 12)
    kubectl.run("apply", "-n", namespace, "-f", "-", input=external(name, private_standin.url))
    cond = wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "False", "AdminUnreachable")
    assert private_standin.url in cond["message"]
    events = kubectl.json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    assert any(e["reason"] == "AdminUnreachable" for e in events["items"])
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True", timeout=90)
    assert name in private_standin.nodes()


def test_admin_down_at_delete_holds_the_finalizer(operator: Operator, kubectl: Kubectl,
                                                   private_standin: StandIn, namespace: str) -> None:
    name = unique("hold")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=external(name, private_standin.url))
    wait_for(lambda: private_standin.nodes().get(name), 30, "registered")
    private_standin.fault("refuse", 10)
    kubectl.run("delete", "inferencenode", name, "-n", namespace, "--wait=false")
    held = wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "False", "DeregistrationPending")
    assert held  # still there, finalizer in place, and the status says why
    assert "gonka.ai/registry-cleanup" in kubectl.get("inferencenode", name, namespace)["metadata"]["finalizers"]
    wait_for(lambda: kubectl.get("inferencenode", name, namespace) is None, 90, "CR gone after the API came back")
    assert name not in private_standin.nodes()


def test_vanished_entry_is_restored(operator: Operator, kubectl: Kubectl, standin: StandIn, namespace: str) -> None:
    name = unique("van")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=external(name, standin.url))
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True")
    standin.remove(name)
    wait_for(lambda: standin.nodes().get(name), 10, "entry restored within a poll interval or two")
    wait_for(lambda: any(e["reason"] == "ReRegistered" for e in kubectl.json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]), 10,
        "ReRegistered Event")


def test_governance_rejection_is_reported_and_not_hammered(operator: Operator, kubectl: Kubectl,
                                                            private_standin: StandIn, namespace: str) -> None:
    name = unique("gov")
    manifest = external(name, private_standin.url).replace("Qwen/Qwen3-32B-FP8", "Unknown/Model-1B")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=manifest)
    cond = wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "False", "Rejected")
    assert "governance" in cond["message"]
    events = kubectl.json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    assert any(e["reason"] == "Rejected" and e["type"] == "Warning" for e in events["items"])
    writes = lambda: sum(v for k, v in private_standin.requests().items() if k.startswith(("PUT", "POST")))  # noqa: E731
    first = writes()
    holds_for(lambda: writes() <= first + 1, 10, "at most one more registration attempt in 10 s")
    assert name not in private_standin.nodes()


def test_external_node_registers_with_its_host(operator: Operator, kubectl: Kubectl, standin: StandIn,
                                               namespace: str) -> None:
    name = unique("ext")
    manifest = f"""
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {{name: {name}}}
spec:
  networkNodeRef: {{name: gonka}}
  model: Qwen/Qwen3-32B-FP8
  external: {{host: gpu7.example.internal, inferencePort: 6050, pocPort: 6080}}
"""
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + manifest)
    entry = wait_for(lambda: standin.nodes().get(name), 30, "registered")
    assert (entry["node"]["host"], entry["node"]["inference_port"], entry["node"]["poc_port"]) == (
        "gpu7.example.internal", 6050, 6080)
    assert kubectl.get("deployment", f"{name}-mlnode", namespace) is None
    wait_condition(kubectl, "inferencenode", name, namespace, "Ready", "True")


def test_admin_url_without_network_node(operator: Operator, kubectl: Kubectl, standin_legacy: StandIn,
                                        namespace: str) -> None:
    name = unique("url")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=external(name, standin_legacy.url))
    wait_condition(kubectl, "inferencenode", name, namespace, "Ready", "True")
    assert name in standin_legacy.nodes()


def test_missing_network_node_is_a_condition(operator: Operator, kubectl: Kubectl, namespace: str) -> None:
    name = unique("orphan")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=in_cluster(name))
    cond = wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "False", "NetworkNodeNotFound")
    assert "gonka" in cond["message"]


def test_unmanaged_entries_are_listed_and_left_alone(operator: Operator, kubectl: Kubectl, standin: StandIn,
                                                     namespace: str) -> None:
    import httpx

    stranger = unique("by-hand")
    httpx.post(f"{standin.url}/admin/v1/nodes", json={
        "id": stranger, "host": "10.9.9.9", "inference_port": 5050, "poc_port": 8080, "max_concurrent": 1,
        "models": {"Qwen/Qwen3-32B-FP8": {"args": []}}}, timeout=5).raise_for_status()
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN)
    wait_for(lambda: stranger in ((kubectl.get("networknode", "gonka", namespace) or {}).get("status") or {})
             .get("unmanagedNodes", []), 30, "unmanagedNodes on the NetworkNode")
    assert stranger in standin.nodes()


def test_restart_mid_way_keeps_registry_exact(cluster: LocalCluster, crds: None, kubectl: Kubectl,
                                              standin_legacy: StandIn, logs: Path, namespace: str,
                                              standin: StandIn) -> None:
    """The operator is killed while it registers and deregisters; after a restart the registry holds
    exactly the live CRs, without duplicates (2025-08 generation, where duplicates would show)."""
    op = Operator(str(cluster.kubeconfig), logs, operator_env(standin), name="operator-restart")
    op.start()
    prefix = unique("rs")
    names = [f"{prefix}-{i}" for i in range(12)]
    try:
        kubectl.run("apply", "-n", namespace, "-f", "-",
                    input="---".join(external(n, standin_legacy.url, host=f"10.1.0.{i}") for i, n in enumerate(names)))
        wait_for(lambda: sum(n in standin_legacy.nodes() for n in names) >= 3, 30, "some registered")
        op.kill()
        op.start()
        for n in names[:4]:
            kubectl.run("delete", "inferencenode", n, "-n", namespace, "--wait=false")
        op.kill()
        op.start()
        live = set(names[4:])
        wait_for(lambda: {n for n in standin_legacy.nodes() if n.startswith(prefix)} == live, 60,
                 lambda: f"registry == live CRs; registry has "
                         f"{sorted(n for n in standin_legacy.nodes() if n.startswith(prefix))}")
        saved = [c["id"] for c in standin_legacy.saved_config() if c["id"].startswith(prefix)]
        assert sorted(saved) == sorted(live), "duplicates or leftovers in the saved config"
        wait_for(lambda: all(kubectl.get("inferencenode", n, namespace) is None for n in names[:4]), 60,
                 "deleted CRs gone")
    finally:
        op.stop()


# --- issue 11: concurrency, deletion, edits ------------------------------------------------------

def events(kubectl: Kubectl, namespace: str, name: str) -> list[dict]:
    items: list[dict] = kubectl.json("get", "events", "-n", namespace, "--field-selector",
                                     f"involvedObject.name={name}")["items"]
    return items


def release_all(kubectl: Kubectl, namespace: str) -> None:
    """Let every InferenceNode of `namespace` go without deregistration (its admin API is dead)."""
    kubectl.run("annotate", "inferencenodes", "--all", "-n", namespace, "--overwrite",
                "gonka.ai/skip-deregistration=true", check=False)
    for item in kubectl.json("get", "inferencenodes", "-n", namespace)["items"]:
        kubectl.run("patch", "inferencenode", item["metadata"]["name"], "-n", namespace, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}', check=False)


def test_sick_admin_api_does_not_stall_others(operator: Operator, kubectl: Kubectl, standin: StandIn,
                                              namespace: str) -> None:
    """Critical 1: 120 InferenceNodes whose admin API is down keep retrying; a healthy node on
    another admin API is still registered within seconds (kopf's workers are not held by them)."""
    from procs import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    sick = [unique("sick") for _ in range(120)]
    try:
        kubectl.run("apply", "-n", namespace, "-f", "-",
                    input="---".join(external(n, dead, host=f"10.2.{i // 200}.{i % 200 + 1}")
                                     for i, n in enumerate(sick)))

        def unreachable() -> int:
            items = kubectl.json("get", "inferencenodes", "-n", namespace)["items"]
            return sum(any(c["type"] == "Registered" and c["reason"] == "AdminUnreachable"
                           for c in (i.get("status") or {}).get("conditions", [])) for i in items)

        wait_for(lambda: unreachable() >= 100, 120, lambda: f"100 sick nodes retrying; now {unreachable()}")
        healthy = unique("healthy")
        kubectl.run("apply", "-n", namespace, "-f", "-", input=external(healthy, standin.url))
        import time
        started = time.monotonic()
        wait_condition(kubectl, "inferencenode", healthy, namespace, "Registered", "True", timeout=30)
        delay = time.monotonic() - started
        print(f"FIGURE healthy node registered {delay:.1f} s after apply, next to 120 retrying nodes")
        assert delay < 15
    finally:
        release_all(kubectl, namespace)


def test_registration_posts_a_normal_event(operator: Operator, kubectl: Kubectl, standin: StandIn,
                                           namespace: str) -> None:
    name = unique("evt")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=external(name, standin.url, host="10.7.0.1"))
    wait_for(lambda: any(e["reason"] == "Registered" and e["type"] == "Normal"
                         for e in events(kubectl, namespace, name)), 30, "Normal Event Registered")


def test_two_crs_one_registry_id_conflict(operator: Operator, kubectl: Kubectl, standin: StandIn,
                                          namespace: str) -> None:
    """Major 8: the second CR claiming an id already held by another CR does not write."""
    node_id = unique("shared")
    first, second = unique("first"), unique("second")
    kubectl.run("apply", "-n", namespace, "-f", "-",
                input=external(first, standin.url, host="10.3.0.1", extra=f"\n  nodeId: {node_id}"))
    wait_condition(kubectl, "inferencenode", first, namespace, "Registered", "True")
    kubectl.run("apply", "-n", namespace, "-f", "-",
                input=external(second, standin.url, host="10.3.0.2", extra=f"\n  nodeId: {node_id}"))
    cond = wait_condition(kubectl, "inferencenode", second, namespace, "Registered", "False", "IdConflict")
    assert first in cond["message"]
    holds_for(lambda: standin.nodes()[node_id]["node"]["host"] == "10.3.0.1", 5,
              "the first CR's host stays in the registry")
    first_cond = wait_condition(kubectl, "inferencenode", first, namespace, "Registered", "True")
    assert first_cond["reason"] == "Registered"


def test_content_drift_is_repaired(operator: Operator, kubectl: Kubectl, standin: StandIn, namespace: str) -> None:
    """Major 9: an entry edited or disabled by hand is put back as the CR says (Event Repaired)."""
    import httpx

    name = unique("edit")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=external(name, standin.url, host="10.4.0.1"))
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True")
    entry = standin.nodes()[name]["node"]
    httpx.put(f"{standin.url}/admin/v1/nodes/{name}", json={**entry, "max_concurrent": 7},
              timeout=5).raise_for_status()
    httpx.post(f"{standin.url}/admin/v1/nodes/{name}/disable", timeout=5).raise_for_status()
    wait_for(lambda: (n := standin.nodes()[name])["node"]["max_concurrent"] == 500
             and n["state"]["admin_state"]["enabled"] is True, 20,
             lambda: f"entry repaired; now {standin.nodes()[name]}")
    wait_for(lambda: any(e["reason"] == "Repaired" for e in events(kubectl, namespace, name)), 10,
             "Repaired Event")


def test_failed_entry_is_not_ready(operator: Operator, kubectl: Kubectl, standin: StandIn, namespace: str) -> None:
    import httpx

    name = unique("fail")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=external(name, standin.url, host="10.8.0.1"))
    wait_condition(kubectl, "inferencenode", name, namespace, "Ready", "True")
    httpx.post(f"{standin.url}/debug/nodes/{name}/fail", timeout=5).raise_for_status()
    wait_condition(kubectl, "inferencenode", name, namespace, "Ready", "False", timeout=20)
    httpx.post(f"{standin.url}/debug/nodes/{name}/recover", timeout=5).raise_for_status()
    obj = wait_for(lambda: (o := kubectl.get("inferencenode", name, namespace))
                   and (o["status"].get("registry") or {}).get("currentStatus") not in (None, "FAILED") and o,
                   30, "recovered")
    assert "failureReason" not in obj["status"]["registry"], "a cleared field stays set"


def test_pending_deregistration_shown_after_restart(operator: Operator, kubectl: Kubectl,
                                                    private_standin: StandIn, namespace: str) -> None:
    name = unique("pend")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=external(name, private_standin.url))
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True")
    private_standin.fault("refuse", 40)
    kubectl.run("delete", "inferencenode", name, "-n", namespace, "--wait=false")
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "False", "DeregistrationPending")
    operator.kill()
    # a status written by the previous process must not count: clear it
    kubectl.run("patch", "inferencenode", name, "-n", namespace, "--subresource=status", "--type=merge",
                "-p", '{"status":{"conditions":null}}')
    operator.start()
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "False", "DeregistrationPending",
                   timeout=30)
    wait_for(lambda: kubectl.get("inferencenode", name, namespace) is None, 90, "deregistered after all")


def test_restart_posts_no_false_network_node_not_found(operator: Operator, kubectl: Kubectl, standin: StandIn,
                                                       namespace: str) -> None:
    """Startup race: after a restart, no InferenceNode is handled before its NetworkNode is known."""
    names = [unique("race") for _ in range(20)]
    manifests = [f"""
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {{name: {n}}}
spec:
  networkNodeRef: {{name: gonka}}
  model: Qwen/Qwen3-32B-FP8
  external: {{host: 10.9.{i}.1}}
""" for i, n in enumerate(names)]
    kubectl.run("apply", "-n", namespace, "-f", "-", input="---".join([NN, *manifests]))
    for n in names:
        wait_condition(kubectl, "inferencenode", n, namespace, "Registered", "True", timeout=90)
    for _ in range(2):
        operator.stop()
        operator.start()
        polls = standin.requests().get("GET /admin/v1/nodes", 0)
        wait_for(lambda p=polls: standin.requests().get("GET /admin/v1/nodes", 0) >= p + 2, 30, "two polls")
    warnings = [e for e in kubectl.json("get", "events", "-n", namespace)["items"]
                if e["reason"] == "NetworkNodeNotFound"]
    assert not warnings, [e["involvedObject"]["name"] for e in warnings]
    kubectl.run("delete", "inferencenodes", "--all", "-n", namespace, "--timeout=60s")
