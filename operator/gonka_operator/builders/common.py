"""Labels, owner references and pod fragments shared by both builders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gonka_operator.models.common import EnvVar, Resources, Scheduling

Obj = dict[str, Any]

GROUP = "gonka.ai"
API_VERSION = f"{GROUP}/v1alpha1"
MANAGED_BY = "gonka-operator"
LABEL_NETWORK_NODE = f"{GROUP}/network-node"
LABEL_INFERENCE_NODE = f"{GROUP}/inference-node"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"


@dataclass(frozen=True)
class Owner:
    """The custom resource a child belongs to."""

    kind: str
    name: str
    namespace: str
    uid: str

    def reference(self) -> Obj:
        return {"apiVersion": API_VERSION, "kind": self.kind, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}


def labels(app: str, instance: str, component: str, **extra: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app, LABEL_INSTANCE: instance, LABEL_COMPONENT: component,
            LABEL_MANAGED_BY: MANAGED_BY, **extra}


def metadata(name: str, owner: Owner, obj_labels: dict[str, str], *, owned: bool = True,
             annotations: dict[str, str] | None = None) -> Obj:
    """Object metadata; `owned=False` for the retained objects (PVCs) that must outlive the CR."""
    meta: Obj = {"name": name, "namespace": owner.namespace, "labels": obj_labels}
    if owned:
        meta["ownerReferences"] = [owner.reference()]
    if annotations:
        meta["annotations"] = annotations
    return meta


def env_list(fixed: dict[str, str], extra: list[EnvVar] | None = None) -> list[Obj]:
    """Fixed env first (sorted, so the rendering is stable), then the user's extra env.

    A user entry with the same name replaces the fixed one: the user is explicit.
    """
    extra = extra or []
    overridden = {e.name for e in extra}
    out: list[Obj] = [{"name": k, "value": v} for k, v in sorted(fixed.items()) if k not in overridden]
    return out + [e.wire() for e in extra]


def resources(res: Resources | None, **forced: Any) -> Obj:
    requests = {k: str(v) for k, v in (res.requests if res else {}).items()}
    limits = {k: str(v) for k, v in (res.limits if res else {}).items()}
    for key, value in forced.items():
        requests[key] = limits[key] = value
    out: Obj = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def scheduling(sched: Scheduling | None, node_selector: dict[str, str] | None = None,
               tolerations: list[Obj] | None = None) -> Obj:
    """nodeSelector/tolerations/affinity for a pod spec, the user's merged over ours."""
    selector = {**(node_selector or {}), **(sched.node_selector if sched else {})}
    tols = [*(tolerations or []), *(sched.tolerations if sched else [])]
    out: Obj = {}
    if selector:
        out["nodeSelector"] = selector
    if tols:
        out["tolerations"] = tols
    if sched and sched.affinity:
        out["affinity"] = sched.affinity
    return out


# The Gonka images run as root and write under /root; we keep that but remove what they never need.
CONTAINER_SECURITY: Obj = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID",
                                             "NET_BIND_SERVICE"]},
}
POD_SECURITY: Obj = {"seccompProfile": {"type": "RuntimeDefault"}}


def http_probe(port: int | str, path: str, period: int, failures: int, delay: int = 0) -> Obj:
    probe: Obj = {"httpGet": {"path": path, "port": port}, "periodSeconds": period,
                  "failureThreshold": failures, "timeoutSeconds": 5}
    if delay:
        probe["initialDelaySeconds"] = delay
    return probe


def service_port(name: str, port: int, target: int | str, node_port: int | None = None) -> Obj:
    out: Obj = {"name": name, "port": port, "targetPort": target, "protocol": "TCP"}
    if node_port is not None:
        out["nodePort"] = node_port
    return out
