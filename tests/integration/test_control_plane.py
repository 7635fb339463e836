"""The local control plane behaves like Kubernetes where the operator depends on it.

Every test talks to the real API server started by the `cluster` fixture (no mocks) and works in
its own namespace. Each positive check is paired with the observation that would be different if
the feature were missing, so these tests can fail.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gonka_operator.devcluster import LocalCluster
from helpers import wait_for

pytestmark = pytest.mark.integration

GPU = "nvidia.com/gpu"
GPU_NODES = {"kwok-gpu-h100", "kwok-gpu-h200"}
APPLY = "application/apply-patch+yaml"


# ---- a throw-away CRD with a CEL rule ------------------------------------------------------------


class Crd:
    def __init__(self, group: str) -> None:
        self.group, self.version, self.plural, self.kind = group, "v1", "widgets", "Widget"

    def obj(self, name: str, replicas: int, model: str = "qwen") -> dict[str, Any]:
        return {
            "apiVersion": f"{self.group}/{self.version}",
            "kind": self.kind,
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "model": model},
        }


@pytest.fixture(scope="module")
def crd(api_client: Any) -> Iterator[Crd]:
    # A random group per run: CRDs are cluster-wide, and a reused cluster may still hold an old one.
    c = Crd(f"t{uuid.uuid4().hex[:8]}.devcluster.gonka.test")
    ext = client.ApiextensionsV1Api(api_client)
    spec_schema = {
        "type": "object",
        "required": ["replicas"],
        "properties": {"replicas": {"type": "integer", "minimum": 0}, "model": {"type": "string"}},
        "x-kubernetes-validations": [
            {"rule": "self.replicas <= 8", "message": "replicas must be at most 8 (one GPU node)"}
        ],
    }
    ext.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{c.plural}.{c.group}"},
        "spec": {
            "group": c.group,
            "scope": "Namespaced",
            "names": {"plural": c.plural, "singular": "widget", "kind": c.kind},
            "versions": [{
                "name": c.version, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}},
            }],
        },
    })

    def established() -> bool:
        got = ext.read_custom_resource_definition(f"{c.plural}.{c.group}")
        return any(x.type == "Established" and x.status == "True" for x in got.status.conditions or [])

    wait_for(established, 30, f"CRD {c.plural}.{c.group} Established")
    try:
        yield c
    finally:
        ext.delete_custom_resource_definition(f"{c.plural}.{c.group}")


def test_crd_object_roundtrip(api_client: Any, crd: Crd, namespace: str) -> None:
    co = client.CustomObjectsApi(api_client)
    # The discovery cache of a fresh CRD can lag Established by a moment: retry until served.
    created = wait_for(
        lambda: co.create_namespaced_custom_object(
            crd.group, crd.version, namespace, crd.plural, crd.obj("w1", 2)),
        30, "the new CRD to be served",
    )
    assert created["metadata"]["uid"]
    got = co.get_namespaced_custom_object(crd.group, crd.version, namespace, crd.plural, "w1")
    assert got["spec"] == {"replicas": 2, "model": "qwen"}
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_cel_rule_rejects_bad_object(api_client: Any, crd: Crd, namespace: str) -> None:
    co = client.CustomObjectsApi(api_client)
    wait_for(
        lambda: co.create_namespaced_custom_object(
            crd.group, crd.version, namespace, crd.plural, crd.obj("ok", 8)),
        30, "a valid Widget (replicas=8) to be accepted",
    )
    with pytest.raises(ApiException) as err:
        co.create_namespaced_custom_object(
            crd.group, crd.version, namespace, crd.plural, crd.obj("too-big", 9))
    assert err.value.status == 422, err.value.body
    assert "replicas must be at most 8 (one GPU node)" in err.value.body
    with pytest.raises(ApiException) as gone:
        co.get_namespaced_custom_object(crd.group, crd.version, namespace, crd.plural, "too-big")
    assert gone.value.status == 404


def test_server_side_apply_is_idempotent(api_client: Any, crd: Crd, namespace: str) -> None:
    co = client.CustomObjectsApi(api_client)

    def apply(replicas: int) -> dict[str, Any]:
        result: dict[str, Any] = co.patch_namespaced_custom_object(
            crd.group, crd.version, namespace, crd.plural, "applied", crd.obj("applied", replicas),
            field_manager="gonka-test", force=True, _content_type=APPLY,
        )
        return result

    first = wait_for(lambda: apply(3), 30, "the first server-side apply (creates the object)")
    second = apply(3)
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    managers = {(m["manager"], m["operation"]) for m in second["metadata"]["managedFields"]}
    assert ("gonka-test", "Apply") in managers
    # Contrast: a real change does produce a new resourceVersion.
    third = apply(4)
    assert third["metadata"]["resourceVersion"] != second["metadata"]["resourceVersion"]
    assert third["spec"]["replicas"] == 4


# ---- scheduling on the kwok nodes --------------------------------------------------------------


def gpu_deployment(name: str, gpus: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{
                    # Never pulled: kwok only pretends to run it.
                    "name": "main", "image": "registry.invalid/inference:0",
                    "resources": {"limits": {GPU: str(gpus)}},
                }]},
            },
        },
    }


def _pods(core: Any, namespace: str, app: str) -> list[Any]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def _pod_summary(core: Any, namespace: str, app: str) -> str:
    return repr([
        (p.metadata.name, p.status.phase, p.spec.node_name,
         [(c.type, c.status, c.reason, c.message) for c in p.status.conditions or []])
        for p in _pods(core, namespace, app)
    ])


def test_gpu_deployment_becomes_available(api_client: Any, namespace: str) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, gpu_deployment("four-gpus", 4))

    def available() -> bool:
        d = apps.read_namespaced_deployment("four-gpus", namespace)
        return any(c.type == "Available" and c.status == "True" for c in d.status.conditions or [])

    wait_for(available, 60, lambda: f"Deployment four-gpus Available; pods: "
             f"{_pod_summary(core, namespace, 'four-gpus')}")
    [pod] = _pods(core, namespace, "four-gpus")
    assert pod.status.phase == "Running"
    assert pod.spec.node_name in GPU_NODES
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.present"] == "true"
    assert node.status.allocatable[GPU] == "8"


def test_too_many_gpus_stays_pending(api_client: Any, namespace: str) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, gpu_deployment("sixteen-gpus", 16))

    def unschedulable() -> Any:
        for pod in _pods(core, namespace, "sixteen-gpus"):
            for c in pod.status.conditions or []:
                if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                    return pod, c
        return None

    pod, cond = wait_for(unschedulable, 60, lambda: f"PodScheduled=False; pods: "
                         f"{_pod_summary(core, namespace, 'sixteen-gpus')}")
    assert f"Insufficient {GPU}" in cond.message, cond.message
    assert pod.status.phase == "Pending" and not pod.spec.node_name

    def failed_scheduling_event() -> list[Any]:
        events = core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={pod.metadata.name}").items
        return [e for e in events if e.reason == "FailedScheduling" and GPU in (e.message or "")]

    wait_for(failed_scheduling_event, 30, f"a FailedScheduling event naming {GPU}")
    d = apps.read_namespaced_deployment("sixteen-gpus", namespace)
    assert not d.status.available_replicas


def test_deleted_pod_goes_away(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "main", "image": "registry.invalid/x:0"}]},
    })
    wait_for(lambda: core.read_namespaced_pod("p", namespace).status.phase == "Running", 60,
             "pod p Running on a kwok node")
    core.delete_namespaced_pod("p", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("p", namespace)
        except ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, 30, "pod p to disappear after delete (kwok's pod-delete stage)")


# ---- controllers ---------------------------------------------------------------------------------


def test_deleting_owner_garbage_collects_dependent(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "owned", "ownerReferences": [ref]}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})

    core.delete_namespaced_config_map("owner", namespace)

    def owned_gone() -> bool:
        try:
            core.read_namespaced_config_map("owned", namespace)
        except ApiException as e:
            return e.status == 404
        return False

    wait_for(owned_gone, 60, "ConfigMap 'owned' to be garbage-collected after its owner was deleted")
    # Only the dependent went: the unowned ConfigMap is untouched.
    assert core.read_namespaced_config_map("bystander", namespace).metadata.name == "bystander"


def test_service_account_token_authenticates(api_client: Any, cluster: LocalCluster, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
    token = core.create_namespaced_service_account_token(
        "robot", namespace, {"spec": {"expirationSeconds": 600}}).status.token
    cfg = client.Configuration()
    cfg.host = cluster.server
    cfg.ssl_ca_cert = api_client.configuration.ssl_ca_cert  # the admin kubeconfig's CA, no client cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(cfg) as robot:
        review = client.AuthenticationV1Api(robot).create_self_subject_review({})
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:robot"
        # RBAC is on: a fresh ServiceAccount may not list pods.
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(robot).list_namespaced_pod(namespace)
        assert denied.value.status == 403


def test_kubectl_reports_server_version(cluster: LocalCluster, kubeconfig: str) -> None:
    out = subprocess.run(
        [str(cluster.bin_dir / "kubectl"), "--kubeconfig", kubeconfig, "version", "-o", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    version = json.loads(out.stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.34."), version
    assert version["clientVersion"]["gitVersion"].startswith("v1.34."), version
