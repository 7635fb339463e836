"""Issue 6, section 2: the operator survives faults and converges to an exact registry.

Each test injects one fault into a real component (the admin-API stand-in, the operator process,
the registry's contents, the kube-apiserver), prints one `FIGURE` line with what it measured, and
asserts the outcome. The stand-in is the 2025-08 generation, the one where a re-POSTed id shows up
as a duplicate in its saved config. InferenceNodes are external ML nodes (registered, no workload),
created in one `kubectl apply` of a multi-document YAML.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from gonka_operator.devcluster import LocalCluster
from helpers import wait_for
from procs import Kubectl, Operator, StandIn

pytestmark = [pytest.mark.faults, pytest.mark.integration]

POLL_SECONDS = 5.0  # GONKA_REGISTRY_POLL_SECONDS of the fault suite's operators (conftest.py)
OUTAGE_SECONDS = 60.0
BACKOFF_CAP = 60.0  # registry.backoff(): retries of an unreachable admin API are at most 60 s apart

NETWORK_NODE = """
apiVersion: v1
kind: Secret
metadata: {name: keyring}
stringData: {password: pw}
---
apiVersion: gonka.ai/v1alpha1
kind: NetworkNode
metadata: {name: gonka}
spec:
  keyName: k
  accountPubKey: pub
  keyringPasswordSecretRef: {name: keyring, key: password}
  publicHost: gonka.example.com
"""


def external_node(name: str, index: int, admin: str) -> str:
    """An external ML node; `admin` is `adminURL: <url>` or `networkNodeRef: {name: gonka}`."""
    return f"""
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {{name: {name}}}
spec:
  {admin}
  model: Qwen/Qwen3-32B-FP8
  gpus: 1
  hardwareType: H100
  external: {{host: 10.{index // 250}.{index % 250}.7, inferencePort: 5050, pocPort: 8080}}
"""


def burst(names: list[str], admin: str, prefix_docs: str = "") -> str:
    docs = [prefix_docs] if prefix_docs else []
    return "---".join(docs + [external_node(n, i, admin) for i, n in enumerate(names)])


def registry_ids(standin: StandIn) -> set[str]:
    return set(standin.nodes())


def under_way(standin: StandIn, entries: int = 10) -> int:
    """Wait until the registry holds `entries` entries (a burst is being worked on); how many it has."""
    def enough() -> int:
        return n if (n := len(registry_ids(standin))) >= entries else 0

    return wait_for(enough, 60, f"the burst under way ({entries} entries registered)", interval=0.1)


def duplicates(standin: StandIn) -> dict[str, int]:
    """Ids the saved config holds more than once, with their count."""
    counts = Counter(entry["id"] for entry in standin.saved_config())
    return {node_id: n for node_id, n in counts.items() if n > 1}


def inference_nodes(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json("get", "inferencenodes", "-n", namespace)["items"]
    return items


def condition_reasons(obj: dict[str, Any], ctype: str) -> tuple[str | None, str | None]:
    for c in (obj.get("status") or {}).get("conditions", []):
        if c["type"] == ctype:
            return c["status"], c.get("reason")
    return None, None


def converged(kubectl: Kubectl, namespace: str, names: set[str]) -> bool:
    """Exactly `names` exist, none is being deleted, and each is Registered=True and Ready=True."""
    items = inference_nodes(kubectl, namespace)
    return {o["metadata"]["name"] for o in items} == names and all(
        not o["metadata"].get("deletionTimestamp")
        and condition_reasons(o, "Registered") == ("True", "Registered")
        and condition_reasons(o, "Ready")[0] == "True" for o in items)


def not_converged(kubectl: Kubectl, namespace: str, names: set[str]) -> str:
    try:
        items = inference_nodes(kubectl, namespace)
    except AssertionError as e:
        return f"no list of InferenceNodes: {e}"
    seen = {o["metadata"]["name"] for o in items}
    reasons = Counter(f"Registered={condition_reasons(o, 'Registered')}, Ready={condition_reasons(o, 'Ready')[0]}"
                      for o in items)
    return (f"{len(names)} InferenceNodes Registered and Ready; missing {sorted(names - seen)[:5]}, "
            f"extra {sorted(seen - names)[:5]}, conditions {dict(reasons)}")


def writes(standin: StandIn) -> int:
    """Registry changes the stand-in has answered so far (POSTs and DELETEs of nodes)."""
    counts = standin.requests()
    return counts.get("POST /admin/v1/nodes", 0) + counts.get("DELETE /admin/v1/nodes/{id}", 0)


def test_admin_api_down_60s_during_a_200_node_burst(operator: Operator, standin: StandIn, kubectl: Kubectl,
                                                    namespace: str) -> None:
    names = [f"burst-{i:03d}" for i in range(200)]
    kubectl.run("apply", "-n", namespace, "-f", "-", input=burst(names, f"adminURL: {standin.url}"))
    at_fault = under_way(standin)
    standin.fault("refuse", OUTAGE_SECONDS)
    back_at = time.monotonic() + OUTAGE_SECONDS
    assert at_fault < len(names), "the burst was over before the admin API went down: nothing was tested"

    def unreachable() -> int:
        return sum(condition_reasons(o, "Registered") == ("False", "AdminUnreachable")
                   for o in inference_nodes(kubectl, namespace))

    reported = wait_for(unreachable, OUTAGE_SECONDS / 2, "InferenceNodes reporting AdminUnreachable", interval=1)
    wait_for(lambda: len(registry_ids(standin)) == len(names), OUTAGE_SECONDS + BACKOFF_CAP + 60,
             lambda: f"{len(names)} entries in the registry; operator log:\n{operator.log_tail(15)}", interval=1)
    registered_after = time.monotonic() - back_at
    wait_for(lambda: converged(kubectl, namespace, set(names)), 60,
             lambda: not_converged(kubectl, namespace, set(names)), interval=1)
    ready_after = time.monotonic() - back_at
    dups = duplicates(standin)
    saved = {entry["id"] for entry in standin.saved_config()}
    print(f"FIGURE stand-in down {OUTAGE_SECONDS:.0f} s during a {len(names)}-node burst ({at_fault} registered "
          f"before, {reported} CRs showed AdminUnreachable): {len(registry_ids(standin))}/{len(names)} registered "
          f"{registered_after:.1f} s after it was back, all Ready after {ready_after:.1f} s, duplicates {len(dups)}")
    assert registry_ids(standin) == set(names)
    assert saved == set(names) and not dups, f"saved config: duplicates {dups}, extra {saved - set(names)}"


def test_operator_sigkilled_3_times_during_200_creates_and_100_deletes(
        operator: Operator, standin: StandIn, kubectl: Kubectl, namespace: str) -> None:
    names = [f"kill-{i:03d}" for i in range(200)]
    doomed, live = names[:100], set(names[100:])
    started = time.monotonic()

    def kill_once_working(after_writes: int, what: str) -> None:
        """SIGKILL the operator once the stand-in saw `after_writes` more registry changes, restart it."""
        base = writes(standin)
        wait_for(lambda: writes(standin) >= base + after_writes, 120,
                 lambda: f"{after_writes} registry changes ({what}); operator log:\n{operator.log_tail(15)}",
                 interval=0.1)
        operator.kill()
        operator.start()

    kubectl.run("apply", "-n", namespace, "-f", "-", input=burst(names, f"adminURL: {standin.url}"))
    kill_once_working(40, "creates under way")
    kubectl.run("delete", "inferencenodes", "-n", namespace, "--wait=false", *doomed)
    kill_once_working(20, "creates and deletes under way")
    kill_once_working(20, "after the second restart")
    unfinished = len(names) + len(doomed) - writes(standin)

    def registry_matches() -> bool:
        return {i for i in registry_ids(standin) if i.startswith("kill-")} == live

    wait_for(registry_matches, 180, lambda: (
        f"registry == the {len(live)} live CRs; orphans {sorted(registry_ids(standin) - live)[:5]}, "
        f"missing {sorted(live - registry_ids(standin))[:5]}; operator log:\n{operator.log_tail(15)}"), interval=1)
    wait_for(lambda: converged(kubectl, namespace, live), 120, lambda: not_converged(kubectl, namespace, live),
             interval=1)
    elapsed = time.monotonic() - started
    ids, dups = registry_ids(standin), duplicates(standin)
    saved = Counter(entry["id"] for entry in standin.saved_config())
    orphans, lost = ids - live, ids & set(doomed)
    print(f"FIGURE operator SIGKILLed 3 times during {len(names)} creates + {len(doomed)} deletes "
          f"({unfinished} registry changes still to do at the third kill): registry == {len(live)} live CRs "
          f"{elapsed:.1f} s after the burst, orphans {len(orphans)}, duplicates {len(dups)}, "
          f"lost deregistrations {len(lost)}")
    assert ids == live and not orphans and not lost
    assert set(saved) == live and not dups, f"saved config: duplicates {dups}, extra {set(saved) - live}"


def test_entries_removed_by_hand_are_restored_within_a_poll_interval(
        operator: Operator, standin: StandIn, kubectl: Kubectl, namespace: str) -> None:
    names = [f"hand-{i:02d}" for i in range(40)]
    kubectl.run("apply", "-n", namespace, "-f", "-", input=burst(names, f"adminURL: {standin.url}"))
    wait_for(lambda: converged(kubectl, namespace, set(names)), 120,
             lambda: not_converged(kubectl, namespace, set(names)), interval=1)
    removed = names[::2]
    removed_at = time.monotonic()
    for node_id in removed:
        standin.remove(node_id)
    assert not registry_ids(standin) & set(removed)
    wait_for(lambda: registry_ids(standin) >= set(removed), 2 * POLL_SECONDS,
             lambda: f"{len(removed)} removed entries back within 2 poll intervals; missing "
                     f"{sorted(set(removed) - registry_ids(standin))}", interval=0.1)
    restored_after = time.monotonic() - removed_at
    dups = duplicates(standin)
    print(f"FIGURE {len(removed)} of {len(names)} registry entries removed by hand: "
          f"{len(registry_ids(standin) & set(removed))}/{len(removed)} restored after {restored_after:.1f} s "
          f"(poll interval {POLL_SECONDS:.0f} s), duplicates {len(dups)}")
    assert registry_ids(standin) == set(names) and not dups


def test_kube_apiserver_restarted_mid_burst(cluster: LocalCluster, operator: Operator, standin: StandIn,
                                            kubectl: Kubectl, namespace: str) -> None:
    if not cluster.procs:
        # GONKA_TEST_KUBECONFIG: the processes are known only if `devcluster up` started that cluster.
        recorded = LocalCluster.from_state(cluster.kubeconfig.parent)
        if recorded is None or not recorded.procs or recorded.kubeconfig.resolve() != cluster.kubeconfig.resolve():
            pytest.skip("the reused cluster (GONKA_TEST_KUBECONFIG) was not started by `devcluster up` in its "
                        "kubeconfig's directory: its kube-apiserver process cannot be restarted from here")
        cluster = recorded
    names = [f"api-{i:03d}" for i in range(100)]
    kubectl.run("apply", "-n", namespace, "-f", "-",
                input=burst(names, "networkNodeRef: {name: gonka}", prefix_docs=NETWORK_NODE))
    at_restart = under_way(standin)
    assert at_restart < len(names), "the burst was over before the restart: nothing was tested"
    down = 5.0
    cluster.restart_apiserver(down_seconds=down)
    back_at = time.monotonic()
    wait_for(lambda: registry_ids(standin) == set(names), 120,
             lambda: f"{len(names)} entries in the registry, has {len(registry_ids(standin))}; "
                     f"operator log:\n{operator.log_tail(15)}", interval=1)
    registered_after = time.monotonic() - back_at
    wait_for(lambda: converged(kubectl, namespace, set(names)), 120,
             lambda: not_converged(kubectl, namespace, set(names)) + f"; operator log:\n{operator.log_tail(15)}",
             interval=1)
    network_node = lambda: kubectl.get("networknode", "gonka", namespace) or {}  # noqa: E731
    wait_for(lambda: condition_reasons(network_node(), "Ready")[0] == "True", 60,
             lambda: f"NetworkNode Ready; status {network_node().get('status')}", interval=1)
    ready_after = time.monotonic() - back_at
    assert operator.proc is not None and operator.proc.poll() is None, "the operator exited"
    dups = duplicates(standin)
    print(f"FIGURE kube-apiserver down {down:.0f} s mid-burst ({at_restart}/{len(names)} registered before): "
          f"{len(registry_ids(standin))}/{len(names)} registered {registered_after:.1f} s and all Ready "
          f"(NetworkNode too) {ready_after:.1f} s after it was back, duplicates {len(dups)}")
    assert not dups

