"""Pure reducers: observed facts → the status block of each custom resource."""

from __future__ import annotations

from dataclasses import dataclass

from gonka_operator.conditions import Cond, Obj, find, merge_conditions


@dataclass(frozen=True)
class Facts:
    """One fact about an object: ok (None = unknown yet), a CamelCase reason and a message."""

    ok: bool | None
    reason: str
    message: str = ""


def deployment_available(deployment: Obj | None) -> bool:
    if not deployment:
        return False
    cond = find(deployment.get("status", {}).get("conditions"), "Available")
    return bool(cond and cond.get("status") == "True") and deployment["status"].get("availableReplicas", 0) >= 1


def statefulset_ready(sts: Obj | None) -> bool:
    return bool(sts) and (sts or {}).get("status", {}).get("readyReplicas", 0) >= 1


def pending_reason(pods: list[Obj]) -> Facts | None:
    """The scheduler's verdict on a pod that cannot be placed, e.g.
    `0/4 nodes are available: 4 Insufficient nvidia.com/gpu`."""
    for pod in pods:
        cond = find(pod.get("status", {}).get("conditions"), "PodScheduled")
        if cond and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            message = cond.get("message", "")
            reason = "InsufficientGPU" if "Insufficient nvidia.com/gpu" in message else "Unschedulable"
            return Facts(False, reason, message)
    return None


def workload_facts(external: bool, deployment: Obj | None, pods: list[Obj]) -> Facts:
    if external:
        return Facts(True, "External", "ML node runs outside the cluster; nothing to deploy")
    if deployment_available(deployment):
        return Facts(True, "Available", "mlnode pod is up (the network node loads the model)")
    if deployment is None:
        return Facts(False, "Progressing", "Deployment not created yet")
    return pending_reason(pods) or Facts(
        False, "Progressing", "waiting for the mlnode pod to become ready (startup allows 60 min)")


def inference_node_conditions(previous: list[Obj], generation: int | None, workload: Facts,
                              registration: Facts, now: str, health: Facts | None = None) -> list[Obj]:
    """Ready = workload available, registered, and nothing else wrong (`health`: e.g. the registry
    reports the node FAILED, or the API server refused a child: ApplyFailed)."""
    ready_ok: bool | None = bool(workload.ok and registration.ok and health is None)
    if ready_ok:
        ready = Cond("Ready", True, "Ready", "workload available and registered")
    else:
        blocker = health if health is not None else workload if not workload.ok else registration
        ready = Cond("Ready", False if blocker.ok is False else None, blocker.reason, blocker.message)
    conds = [ready, Cond("WorkloadAvailable", workload.ok, workload.reason, workload.message),
             Cond("Registered", registration.ok, registration.reason, registration.message)]
    return merge_conditions(previous, conds, generation, now)


def network_node_conditions(previous: list[Obj], generation: int | None, sts: Obj | None,
                            proxy: Obj | None, apply_error: str | None, now: str) -> list[Obj]:
    node_ready, proxy_ready = statefulset_ready(sts), deployment_available(proxy)
    if apply_error:
        degraded = Cond("Degraded", True, "ApplyFailed", apply_error)
    else:
        degraded = Cond("Degraded", False, "AsExpected")
    if node_ready and proxy_ready:
        ready = Cond("Ready", True, "Ready", "node, api and proxy are ready")
        progressing = Cond("Progressing", False, "Reconciled")
    else:
        waiting = [n for n, ok in (("node/api pod", node_ready), ("proxy", proxy_ready)) if not ok]
        message = "waiting for " + " and ".join(waiting) + " (the api opens its ports after reaching the chain)"
        ready = Cond("Ready", False, "ApplyFailed" if apply_error else "WaitingForPods", message)
        progressing = Cond("Progressing", True, "WaitingForPods", message)
    return merge_conditions(previous, [ready, progressing, degraded], generation, now)


def changed(current: Obj | None, desired: Obj) -> bool:
    """Would writing `desired` change anything (keys that vanished from `desired` included)?"""
    return bool(merge_patch(current, desired))


def merge_patch(current: Obj | None, desired: Obj) -> Obj:
    """The JSON merge patch (RFC 7386) that turns `current` into `desired`: changed keys, nested
    dicts recursed into, and keys `desired` no longer holds set to None (removed). Empty = nothing
    to write. Lists are replaced whole, as merge patches do."""
    current = current or {}
    patch: Obj = {}
    for k, v in desired.items():
        old = current.get(k)
        if isinstance(v, dict) and isinstance(old, dict):
            sub = merge_patch(old, v)
            if sub:
                patch[k] = sub
        elif old != v:
            patch[k] = v
    for k in current.keys() - desired.keys():
        if current[k] is not None:
            patch[k] = None
    return patch
