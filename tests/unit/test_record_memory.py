"""What the operator keeps per InferenceNode (issue 13: peak RSS at 1000 nodes): of a pod only the
scheduler's verdict while it cannot be placed, of the CR's own body not its status (the record has
`status_written`). The facts read from them stay the same."""

from __future__ import annotations

import copy
from typing import Any

from fakekube import context, handled
from test_write_amplification import body

from gonka_operator import drift, inference_node
from gonka_operator.handlers import _plain

UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}
RUNNING = {"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.1.0.7", "qosClass": "Burstable",
           "startTime": "2026-12-02T01:00:00Z",
           "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-12-02T01:00:01Z"}
                          for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                    "PodScheduled")],
           "containerStatuses": [{"name": "mlnode", "ready": True, "restartCount": 0, "image": "x" * 80,
                                  "imageID": "sha256:" + "0" * 64, "state": {"running": {"startedAt": "t"}}}]}


def pod(name: str, status: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-mlnode-abc", "namespace": "ns",
                         "labels": {"gonka.ai/inference-node": name}}, "status": copy.deepcopy(status)}


async def test_a_pod_is_kept_only_as_the_schedulers_verdict_while_it_cannot_be_placed() -> None:
    ctx, _ = context(None)  # type: ignore[arg-type]
    ctx.repairs = drift.Repairs(ctx)
    record = handled(ctx, body("a"))
    record.deployment = {"status": {"replicas": 1, "unavailableReplicas": 1}, "replicas": 1}
    pending = {"phase": "Pending", "qosClass": "Burstable", "conditions": [UNSCHEDULABLE]}
    await drift.on_child_event(ctx, "ADDED", pod("a", pending))
    assert list(record.pods.values()) == [{"status": {"conditions": [UNSCHEDULABLE]}}]
    status = inference_node.compute_status(record)
    workload = {c["type"]: c for c in status["conditions"]}["WorkloadAvailable"]
    assert workload["reason"] == "InsufficientGPU" and "Insufficient nvidia.com/gpu" in workload["message"]
    await drift.on_child_event(ctx, "MODIFIED", pod("a", RUNNING))  # placed and running: nothing to keep
    assert record.pods == {}


def test_the_record_keeps_the_crs_body_without_its_status() -> None:
    ctx, _ = context(None)  # type: ignore[arg-type]
    live = {**body("a"), "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeId": "a"}}
    record = inference_node.record_for(ctx, _plain(live))
    assert "status" not in record.body
    assert record.status_written == live["status"]  # what the object shows: nothing rewritten after a restart


def test_children_are_watched_with_a_server_side_selector_and_the_crs_without() -> None:
    """kopf's `labels=` filters on handlers are client-side: without a server-side selector the
    operator would receive, parse and keep a memory (~1 KB) of every Pod, Deployment, Service… of
    the cluster, ours or not."""
    import kopf
    from kopf._cogs.structs.references import Resource

    from gonka_operator.handlers import CHILD_KINDS, watch_only_ours

    settings = kopf.OperatorSettings()
    watch_only_ours(settings)
    ours = "app.kubernetes.io/managed-by=gonka-operator"
    for group, version, plural in CHILD_KINDS:
        resource = Resource(group=group, version=version, plural=plural, namespaced=True)
        assert settings.watching.label_selectors.collect(resource) == [ours], plural
    assert {p for _, _, p in CHILD_KINDS} >= {"pods", "deployments", "services", "networkpolicies", "jobs",
                                               "statefulsets", "persistentvolumeclaims"}
    for plural in ("inferencenodes", "networknodes"):
        crs = Resource(group="gonka.ai", version="v1alpha1", plural=plural, namespaced=True)
        assert settings.watching.label_selectors.collect(crs) == []
