"""The operator in the cluster, as users run it (chart, own image, no URL override), driving a host whose
containers are the stand-ins, all on the real node: registration through cluster DNS, the stand-in
reaching the ML pods through their Services and proxies, a PoC round's batches arriving at the
callback URL, INFERENCE on the CR, deregistration from inside the cluster, and the operator's own
/metrics and liveness."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from deploy import MODEL, OPERATOR_NS, RELEASE, SCHEDULING, Host
from pods import api, probe

from gonka_operator.devcluster.images import toolbox_image
from helpers import wait_for


def _entries(host: Host) -> dict[str, Any]:
    nodes = host.standin("/admin/v1/nodes")
    return {e["node"]["id"]: e for e in nodes}


def test_operator_registers_through_the_in_cluster_admin_url(host: Host) -> None:
    ns, nn = host.namespace, host.network_node
    deployment = host.json("get", "deployment", "-n", OPERATOR_NS, RELEASE)
    env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    assert "GONKA_ADMIN_URL_OVERRIDES" not in env, "the operator must find the admin API by itself"
    status = host.json("get", "networknode", "-n", ns, nn)["status"]
    assert status["endpoints"]["adminURL"] == f"http://{nn}-api.{ns}.svc.cluster.local:9200"
    entries = _entries(host)
    assert set(entries) >= set(host.ml_nodes), entries
    for name in host.ml_nodes:
        assert entries[name]["node"]["host"] == f"{name}-mlnode.{ns}.svc.cluster.local"
    # The registration came from the operator's pod: the stand-in logged the request's source.
    op_ip = host.json("get", "pods", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=gonka-operator")[
        "items"][0]["status"]["podIP"]
    access = host.logs(ns, f"{nn}-node-0", "api")
    assert any(op_ip in line and "/admin/v1/nodes" in line for line in access.splitlines()), access[-3000:]


def test_standin_reaches_each_ml_pod_through_its_service_with_a_version_prefix(host: Host) -> None:
    ns = host.namespace
    api_ip = host.json("get", "pod", "-n", ns, f"{host.network_node}-node-0")["status"]["podIP"]
    for name in host.ml_nodes:
        pod = host.json("get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}")["items"][0]
        assert pod["spec"]["nodeName"] == "real-0"

        def prefixed(pod_name: str = pod["metadata"]["name"]) -> list[str]:
            log = host.logs(ns, pod_name, "proxy")
            return [ln for ln in log.splitlines() if ln.startswith(api_ip) and " /v3.0.8/" in ln]

        lines = wait_for(prefixed, 120, f"the api pod's prefixed requests in {name}'s proxy log", interval=2)
        assert lines
        seen = json.loads(host.exec_python(ns, pod["metadata"]["name"], "mlnode", _GET, "/stand-in/v1/requests"))
        paths = {r["path"] if isinstance(r, dict) else r for r in (seen.get("requests", seen)
                                                                   if isinstance(seen, dict) else seen)}
        assert not any(str(p).startswith("/v3.0.8/") for p in paths), "nginx must strip the version prefix"


_GET = """\
import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:8080" + sys.argv[1], timeout=10).read().decode())
"""


def test_poc_round_delivers_the_ml_pods_batches_to_the_callback_url(host: Host) -> None:
    host.standin("/stand-in/v1/poc", "POST", {"action": "open"})
    try:
        def generated() -> set[str]:
            batches = host.standin("/stand-in/v1/poc-batches")
            return {str(b["body"].get("node_id")) for b in batches if b["kind"] == "generated"}

        senders = wait_for(lambda: len(generated()) >= len(host.ml_nodes) and generated(), 180,
                           "generated PoC batches from every ML pod", interval=2)
        assert len(senders) >= len(host.ml_nodes)
    finally:
        host.standin("/stand-in/v1/poc", "POST", {"action": "close"})


def test_cr_shows_inference_and_deleting_it_deregisters(host: Host) -> None:
    ns = host.namespace
    for name in host.ml_nodes:
        wait_for(lambda name=name: host.json("get", "inferencenode", "-n", ns, name).get("status", {})
                 .get("registry", {}).get("currentStatus") == "INFERENCE", 180, f"{name} INFERENCE", interval=2)
    extra = {"apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode", "metadata": {"name": "ml-del"},
             "spec": {"networkNodeRef": {"name": host.network_node}, "model": MODEL, "gpus": 1,
                      "hardwareType": "H100", "hfCache": {"size": "1Gi", "preload": False},
                      "image": host.images["mlnode"].ref,
                      "proxy": {"image": host.images["nginx"].ref}, "scheduling": SCHEDULING}}
    subprocess.run([*host.kubectl, "apply", "-n", ns, "-f", "-"], input=json.dumps(extra), text=True, check=True,
                   capture_output=True)
    wait_for(lambda: "ml-del" in _entries(host), 180, "ml-del registered", interval=2)
    host.run("delete", "inferencenode", "-n", ns, "ml-del", "--wait=true", timeout=180)
    assert "ml-del" not in _entries(host)


def test_operator_metrics_and_liveness_answer_through_service_and_probes(host: Host, e2e_namespace: str) -> None:
    pod = host.json("get", "pods", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=gonka-operator")["items"][0]
    container = pod["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and status["restartCount"] == 0, status
    core, _ = api(host.cluster.api_client())
    tool = toolbox_image()
    assert host.cluster.real_node is not None
    host.cluster.real_node.load_images([tool])
    got = probe(core, e2e_namespace, tool.ref, f"{RELEASE}-metrics.{OPERATOR_NS}.svc.cluster.local", 8081,
                "/metrics")
    assert got["ok"] and got["status"] == 200 and "gonka_" in got["body"], got
