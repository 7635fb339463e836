"""The operator runs with the chart's ServiceAccount credentials (a TokenRequest token) and every
reconcile path works: the RBAC suffices. Every request goes through a recording proxy, so the test
also proves the reverse: each granted verb is one the operator used (or is listed, with its reason,
in rbac.NOT_VISIBLE_IN_REQUESTS). /metrics answers with every named series.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from chartlib import (
    CHART,
    Helm,
    Recorder,
    Release,
    operator_env,
    unique,
    values_file,
    wait_condition,
)
from lua_health import health
from rbac import NOT_VISIBLE_IN_REQUESTS, Request, describe, forbidden, granted, used

from helpers import holds_for, wait_for
from procs import Kubectl, Operator, StandIn, free_port

pytestmark = pytest.mark.integration
EXAMPLES = CHART / "examples"


@dataclass
class SaOperator:
    operator: Operator
    recorder: Recorder
    metrics_url: str
    release: Release

    def log(self) -> str:
        return self.operator.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def sa_operator(operator_release: Release, sa_credentials: Callable[[Release], tuple[str, str, Recorder]],
                standin: StandIn, logs: Path) -> Iterator[SaOperator]:
    """The real operator process, authenticated ONLY by the chart's ServiceAccount token."""
    _, recorded_kubeconfig, recorder = sa_credentials(operator_release)
    metrics_port = free_port()
    env = {**operator_env(standin), "GONKA_METRICS_PORT": str(metrics_port), "GONKA_METRICS_ADDRESS": "127.0.0.1",
           # in a pod the Lease lives in the operator's own namespace (the chart grants it there)
           "GONKA_LEASE_NAMESPACE": operator_release.namespace}
    op = Operator(recorded_kubeconfig, logs, env, name=f"operator-sa-{operator_release.name}")
    op.start()
    yield SaOperator(op, recorder, f"http://127.0.0.1:{metrics_port}/metrics", operator_release)
    op.stop()


def host_values(tmp_path: Path, ml_name: str, p2p_node_port: int | None = None, name: str = "host.yaml") -> str:
    """The whole-host example with a unique ML node name (the stand-in's registry is shared by the
    session) and ClusterIP exposure (NodePorts are cluster-global), or the P2P NodePort given."""
    values = yaml.safe_load((EXAMPLES / "whole-host.yaml").read_text())
    p2p = {"type": "NodePort", "nodePort": p2p_node_port} if p2p_node_port else {"type": "ClusterIP"}
    values["networkNodes"][0]["spec"]["exposure"] = {"p2p": p2p, "proxy": {"type": "ClusterIP"}}
    values["inferenceNodes"][0]["name"] = ml_name
    return values_file(tmp_path, values, name)


def children(kubectl: Kubectl, ns: str) -> dict[str, dict[str, Any]]:
    items = kubectl.json("get", "deployments,statefulsets,services,networkpolicies,pvc", "-n", ns)["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i for i in items}


def test_every_reconcile_path_works_with_the_chart_rbac(sa_operator: SaOperator, helm: Helm, kubectl: Kubectl,
                                                        standin: StandIn, namespace: str, tmp_path: Path) -> None:
    ml, host = unique("ml"), unique("host")
    # A whole host from one values file, as a second release next to the operator's. Its P2P
    # NodePort is taken by another Service: the NetworkNode's apply fails (status, Event, retry).
    blocker = kubectl.json("create", "service", "nodeport", "blocker", "--tcp=5000:5000", "-n", namespace)
    taken = blocker["spec"]["ports"][0]["nodePort"]
    helm.run("install", host, str(CHART), "-n", namespace, "-f", host_values(tmp_path, ml, taken))
    wait_condition(kubectl, "networknode", "host", namespace, "Degraded", "True", "ApplyFailed")
    assert health("NetworkNode", kubectl.get("networknode", "host", namespace))["status"] == "Degraded"
    events = kubectl.json("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=host")
    assert any(e["reason"] == "ApplyFailed" for e in events["items"]), events["items"]

    # the fix arrives through GitOps: the values change to ClusterIP
    values = host_values(tmp_path, ml, name="host-fixed.yaml")
    helm.run("upgrade", host, str(CHART), "-n", namespace, "-f", values)

    # NetworkNode → children and status
    expected = {"StatefulSet/host-node", "Deployment/host-proxy", "Service/host-api", "Service/host-chain",
                "Service/host-p2p", "Service/host-proxy", "NetworkPolicy/host-node", "NetworkPolicy/host-proxy",
                "PersistentVolumeClaim/host-inference", "PersistentVolumeClaim/host-dapi",
                "PersistentVolumeClaim/host-tmkms", f"Deployment/{ml}-mlnode", f"Service/{ml}-mlnode",
                f"NetworkPolicy/{ml}-mlnode", f"PersistentVolumeClaim/{ml}-hf-cache"}
    wait_for(lambda: expected <= set(children(kubectl, namespace)), 90,
             lambda: f"children; missing {sorted(expected - set(children(kubectl, namespace)))}")
    wait_condition(kubectl, "networknode", "host", namespace, "Ready", "True", timeout=90)
    assert health("NetworkNode", kubectl.get("networknode", "host", namespace))["status"] == "Healthy"

    # InferenceNode → registered in the stand-in, status Ready, finalizer in place
    entry = wait_for(lambda: standin.nodes().get(ml), 60, f"{ml} in the stand-in's registry")
    assert entry["node"]["host"] == f"{ml}-mlnode.{namespace}.svc.cluster.local"
    wait_condition(kubectl, "inferencenode", ml, namespace, "Ready", "True", timeout=90)
    assert health("InferenceNode", kubectl.get("inferencenode", ml, namespace))["status"] == "Healthy"
    assert "gonka.ai/registry-cleanup" in kubectl.get("inferencenode", ml, namespace)["metadata"]["finalizers"]

    # drift: a deleted child comes back; an edit the apply cannot merge into is replaced
    uid = kubectl.get("service", f"{ml}-mlnode", namespace)["metadata"]["uid"]
    kubectl.run("delete", "service", f"{ml}-mlnode", "-n", namespace)
    wait_for(lambda: (s := kubectl.get("service", f"{ml}-mlnode", namespace)) and s["metadata"]["uid"] != uid, 30,
             "deleted ML Service re-created")
    kubectl.run("patch", "deployment", f"{ml}-mlnode", "-n", namespace, "--type=merge",
                "-p", '{"spec":{"strategy":{"type":"RollingUpdate"}}}')
    wait_for(lambda: kubectl.get("deployment", f"{ml}-mlnode", namespace)["spec"]["strategy"]["type"] == "Recreate",
             30, "edited Deployment replaced with strategy Recreate")
    kubectl.run("delete", "networkpolicy", "host-node", "-n", namespace)
    wait_for(lambda: kubectl.get("networkpolicy", "host-node", namespace), 30, "network node's policy restored")

    # InferenceNode removed from the values → Helm deletes it → deregistered, finalizer released
    values_without_ml = yaml.safe_load(Path(values).read_text())  # the fixed values
    values_without_ml["inferenceNodes"] = []
    helm.run("upgrade", host, str(CHART), "-n", namespace, "-f", values_file(tmp_path, values_without_ml, "v2.yaml"))
    wait_for(lambda: kubectl.get("inferencenode", ml, namespace) is None, 60, "InferenceNode gone")
    assert ml not in standin.nodes()
    events = kubectl.json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={ml}")
    assert any(e["reason"] == "Deregistered" for e in events["items"]), events["items"]

    # The RBAC: nothing was refused, and every granted verb was used (or is explained)
    requests = sa_operator.recorder.requests()
    assert not forbidden(requests), f"refused requests: {forbidden(requests)}"
    assert "is forbidden: User" not in sa_operator.log()  # what the API server says on an RBAC denial
    rules = granted([d for d in sa_operator.release.manifest() if d["kind"] in ("ClusterRole", "Role")])
    needed = used(requests)
    assert needed <= rules, f"used but not granted:\n{describe(needed - rules)}"
    unused = rules - needed
    assert unused == set(NOT_VISIBLE_IN_REQUESTS), (
        f"granted but never used:\n{describe(unused - set(NOT_VISIBLE_IN_REQUESTS))}\n"
        f"listed as not visible but used:\n{describe(set(NOT_VISIBLE_IN_REQUESTS) - unused)}")
    # cluster-wide mode: every watch is cluster-wide (one stream per kind, not one per namespace)
    watches = [Request.of(r) for r in requests if r["method"] == "GET" and r["query"].get("watch")]
    assert watches and all((w.target() or ("", None))[1] is None for w in watches)


METRICS = ("gonka_operator_reconciles_total", "gonka_operator_reconcile_duration_seconds",
           "gonka_operator_admin_api_requests_total", "gonka_operator_registry_nodes",
           "gonka_operator_registry_drift_repairs_total")


def scrape(url: str) -> dict[str, float]:
    """`name{labels}` → value of every sample on /metrics."""
    out = {}
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def series(samples: dict[str, float], name: str, **labels: str) -> float:
    found = [v for k, v in samples.items() if re.match(rf"{name}(\{{|$)", k)
             and all(f'{lk}="{lv}"' in k for lk, lv in labels.items())]
    return sum(found) if found else -1.0


def test_metrics_answer_with_every_series(sa_operator: SaOperator, kubectl: Kubectl, standin: StandIn,
                                          namespace: str) -> None:
    name = unique("metrics")
    kubectl.run("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode", "metadata": {"name": name},
        "spec": {"adminURL": standin.url, "model": "Qwen/Qwen3-32B-FP8", "gpus": 1,
                 "external": {"host": "10.0.0.31"}}}))
    try:
        _check_metrics(sa_operator, kubectl, standin, namespace, name)
    finally:
        kubectl.run("delete", "inferencenode", name, "-n", namespace, "--timeout=60s", check=False)


def _check_metrics(sa_operator: SaOperator, kubectl: Kubectl, standin: StandIn, namespace: str, name: str) -> None:
    wait_condition(kubectl, "inferencenode", name, namespace, "Registered", "True")
    standin.remove(name)  # the poller notices and registers it again: a drift repair
    wait_for(lambda: series(scrape(sa_operator.metrics_url), "gonka_operator_registry_drift_repairs_total") >= 1,
             30, lambda: f"a registry drift repair on /metrics:\n{httpx.get(sa_operator.metrics_url).text[-3000:]}")
    # the poll after the repair sees the entry again
    samples = wait_for(lambda: (m := scrape(sa_operator.metrics_url))
                       and series(m, "gonka_operator_registry_nodes", state="registered") >= 1 and m, 30,
                       "gonka_operator_registry_nodes{state=registered} >= 1")
    assert series(samples, "gonka_operator_reconciles_total", kind="InferenceNode", outcome="ok") >= 1
    assert series(samples, "gonka_operator_reconcile_duration_seconds_count", kind="InferenceNode") >= 1
    assert series(samples, "gonka_operator_reconcile_duration_seconds_bucket", kind="InferenceNode", le="+Inf") >= 1
    assert series(samples, "gonka_operator_admin_api_requests_total", code="200") >= 1
    assert series(samples, "gonka_operator_registry_nodes", state="failed") >= 0
    for metric in METRICS:
        assert any(k.startswith(metric) for k in samples), f"{metric} missing"


def test_reconciling_again_writes_nothing(sa_operator: SaOperator, kubectl: Kubectl, standin: StandIn,
                                          namespace: str, tmp_path: Path) -> None:
    """After an operator restart every CR is resumed (reconciled again): nothing may change."""
    ml = unique("steady")
    manifest = f"""
apiVersion: v1
kind: Secret
metadata: {{name: keyring}}
stringData: {{password: pw}}
---
apiVersion: gonka.ai/v1alpha1
kind: NetworkNode
metadata: {{name: gonka}}
spec:
  keyName: k
  accountPubKey: pub
  keyringPasswordSecretRef: {{name: keyring, key: password}}
  publicHost: gonka.example.com
  exposure: {{p2p: {{type: ClusterIP}}, proxy: {{type: ClusterIP}}}}
---
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {{name: {ml}}}
spec:
  networkNodeRef: {{name: gonka}}
  model: Qwen/Qwen3-32B-FP8
  gpus: 1
  hfCache: {{size: 10Gi}}
"""
    kubectl.run("apply", "-n", namespace, "-f", "-", input=manifest)
    wait_condition(kubectl, "inferencenode", ml, namespace, "Ready", "True", timeout=90)
    wait_condition(kubectl, "networknode", "gonka", namespace, "Ready", "True", timeout=90)
    wait_for(lambda: (kubectl.get("inferencenode", ml, namespace)["status"].get("registry") or {})
             .get("currentStatus") == "INFERENCE", 30, "registry state INFERENCE")

    def objects() -> dict[str, dict[str, Any]]:
        return {**children(kubectl, namespace),
                **{f"CR/{o['metadata']['name']}": o for o in kubectl.json("get", "gonka", "-n", namespace)["items"]}}

    def versions() -> dict[str, str]:
        return {k: v["metadata"]["resourceVersion"] for k, v in objects().items()}

    # settled: two registry polls (2 s each) write nothing
    wait_for(lambda: (v := versions()) and holds_for(lambda: versions() == v, 5, "settled") is None, 60,
             "statuses to settle")
    before = objects()
    sa_operator.operator.stop()
    sa_operator.operator.start()
    polls = standin.requests().get("GET /admin/v1/nodes", 0)
    wait_for(lambda: standin.requests().get("GET /admin/v1/nodes", 0) >= polls + 2, 30,
             "two registry polls by the restarted operator")

    def changes() -> str:
        after = objects()
        return "; ".join(f"{key}: status {before[key].get('status')} -> {after[key].get('status')}"
                         for key in before if after.get(key, {}).get("metadata", {}).get("resourceVersion")
                         != before[key]["metadata"]["resourceVersion"])

    holds_for(lambda: not changes(), 6, lambda: f"no write after the restart; written: {changes()}")
    kubectl.run("delete", "inferencenode", ml, "-n", namespace, "--timeout=60s")
