"""The ML pod's routing proxy as the real operator applies it: the NetworkNode's shared ConfigMap
(server-side apply, owned by the NetworkNode), the ML pod mounting it, the Service and the
NetworkPolicy on the proxy ports; an adminURL ML node with its own ConfigMap and allowedFrom."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gonka_operator.builders import mlnode_proxy
from helpers import wait_for
from manifests import NETWORK_NODE as NN
from procs import Kubectl, Operator, StandIn

pytestmark = pytest.mark.integration

ML = """
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {name: routed}
spec:
  networkNodeRef: {name: gonka}
  model: Qwen/Qwen3-32B-FP8
  hfCache: {size: 10Gi}
"""
REMOTE = """
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {name: remote}
spec:
  adminURL: %s
  model: Qwen/Qwen3-32B-FP8
  hfCache: {size: 10Gi}
  allowedFrom: [{cidr: 127.0.0.1/32}]
  proxy: {image: "mirror.example/nginx:1.28.0"}
"""


def get(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    proc = kubectl.run("get", kind, name, "-n", namespace, "-o", "json", "--show-managed-fields", check=False)
    return dict(json.loads(proc.stdout)) if proc.returncode == 0 else None


def test_shared_proxy_config_mounted_by_the_ml_pod(operator: Operator, kubectl: Kubectl, standin: StandIn,
                                                   namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + ML)
    config = wait_for(lambda: get(kubectl, "configmap", "gonka-ml-proxy", namespace), 60, "ConfigMap gonka-ml-proxy")
    assert config["data"] == {"nginx.conf": mlnode_proxy.pod_config()}
    [owner] = config["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("NetworkNode", "gonka", True)
    managers = {(m["manager"], m["operation"]) for m in config["metadata"]["managedFields"]}
    assert ("gonka-operator", "Apply") in managers  # server-side apply like every other child

    dep = wait_for(lambda: get(kubectl, "deployment", "routed-mlnode", namespace), 60, "Deployment routed-mlnode")
    pod = dep["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["mlnode", "proxy"]
    assert pod["containers"][1]["image"] == "nginx:1.28.0"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["proxy-config"]["configMap"]["name"] == "gonka-ml-proxy"
    assert pod["automountServiceAccountToken"] is False
    assert get(kubectl, "configmap", "routed-mlnode-proxy", namespace) is None  # no per-node ConfigMap

    svc = get(kubectl, "service", "routed-mlnode", namespace)
    assert svc is not None
    assert {p["port"]: p["targetPort"] for p in svc["spec"]["ports"]} == {5050: "proxy-inference",
                                                                        8080: "proxy-mgmt"}
    policy = wait_for(lambda: get(kubectl, "networkpolicy", "routed-mlnode", namespace), 30, "the ML policy")
    [rule] = policy["spec"]["ingress"]
    assert {p["port"] for p in rule["ports"]} == {18080, 15050}
    node_policy = get(kubectl, "networkpolicy", "gonka-node", namespace)
    assert node_policy is not None
    admin_peers = [r for r in node_policy["spec"]["ingress"] if {"protocol": "TCP", "port": 9200} in r["ports"]]
    assert admin_peers == []  # the test operator runs outside the cluster: no pod may reach 9200


def test_admin_url_ml_node_owns_its_proxy_config(operator: Operator, kubectl: Kubectl, standin: StandIn,
                                                 namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=REMOTE % standin.url)
    config = wait_for(lambda: get(kubectl, "configmap", "remote-mlnode-proxy", namespace), 60,
                      "ConfigMap remote-mlnode-proxy")
    assert config["metadata"]["ownerReferences"][0]["kind"] == "InferenceNode"
    assert config["data"] == {"nginx.conf": mlnode_proxy.pod_config()}
    dep = wait_for(lambda: get(kubectl, "deployment", "remote-mlnode", namespace), 60, "Deployment remote-mlnode")
    pod = dep["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["proxy-config"]["configMap"]["name"] == "remote-mlnode-proxy"
    assert pod["containers"][1]["image"] == "mirror.example/nginx:1.28.0"
    policy = wait_for(lambda: get(kubectl, "networkpolicy", "remote-mlnode", namespace), 30, "the ML policy")
    [rule] = policy["spec"]["ingress"]
    assert rule["from"] == [{"ipBlock": {"cidr": "127.0.0.1/32"}}]
