"""Watch the children: keep status current and repair drift.

Every child carries our labels. A child event updates the owner's record (Deployment availability,
the scheduler's verdict on a Pending pod, StatefulSet readiness, Service IPs) and its status. When
a child was deleted, or no longer contains what we applied (someone edited a field we own), the
owner's children are applied again. Status-only events apply nothing, so they cause no writes.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from gonka_operator import inference_node, network_node
from gonka_operator.builders.common import LABEL_INFERENCE_NODE, LABEL_NETWORK_NODE, Obj
from gonka_operator.context import Context
from gonka_operator.kube import KubeError

logger = logging.getLogger(__name__)
_EMPTY: tuple[Any, ...] = ({}, [], None, "", False)


def _same_scalar(desired: Any, actual: Any) -> bool:
    if desired == actual or str(desired) == str(actual):
        return True
    try:  # resource quantities are normalised by the API server ("1000m" -> "1")
        return bool(parse_quantity(desired) == parse_quantity(actual))
    except (ValueError, TypeError):
        return False


def is_subset(desired: Any, actual: Any) -> bool:
    """Does `actual` (as read back, with server defaults) still contain everything in `desired`?"""
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return False
        return all(is_subset(v, actual[k]) if k in actual else v in _EMPTY for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(actual, list) and len(desired) == len(actual)
                and all(is_subset(d, a) for d, a in zip(desired, actual, strict=True)))
    return _same_scalar(desired, actual)


def _find(children: list[Obj], kind: str, name: str) -> Obj | None:
    return next((c for c in children if c["kind"] == kind and c["metadata"]["name"] == name), None)


def _owner(obj: Obj) -> tuple[str, str] | None:
    for ref in obj["metadata"].get("ownerReferences", []):
        if ref.get("apiVersion", "").startswith("gonka.ai/"):
            return ref["kind"], ref["name"]
    labels = obj["metadata"].get("labels", {})
    if labels.get(LABEL_INFERENCE_NODE):  # pods and retained PVCs: no owner reference to us
        return "InferenceNode", labels[LABEL_INFERENCE_NODE]
    if obj["kind"] == "PersistentVolumeClaim" and labels.get(LABEL_NETWORK_NODE):
        return "NetworkNode", labels[LABEL_NETWORK_NODE]
    return None


async def on_child_event(ctx: Context, event_type: str | None, obj: Obj) -> None:
    owner = _owner(obj)
    if owner is None:
        return
    kind, name = owner
    namespace = obj["metadata"]["namespace"]
    deleted = event_type == "DELETED"
    if kind == "InferenceNode":
        record = ctx.inference.get((namespace, name))
        if record is None:
            return
        if obj["kind"] == "Pod":
            if deleted:
                record.pods.pop(obj["metadata"]["name"], None)
            else:
                record.pods[obj["metadata"]["name"]] = {"status": obj.get("status", {})}
        elif obj["kind"] == "Deployment":
            record.deployment = None if deleted else {"status": obj.get("status", {})}
        if obj["kind"] != "Pod" and _drifted(inference_node.desired_children(record.body), obj, deleted):
            if record.body["metadata"].get("deletionTimestamp"):
                return
            logger.info("Repairing %s %s/%s of InferenceNode %s", obj["kind"], namespace, obj["metadata"]["name"], name)
            for child in inference_node.desired_children(record.body):
                await repair(ctx, child)
        await inference_node.write_status(ctx, record)
    elif kind == "NetworkNode":
        nn = ctx.network.get((namespace, name))
        if nn is None:
            return
        if not deleted:
            network_node.remember_child(nn, obj)
        settings = ctx.settings
        desired = network_node.desired_children(nn.body, nn.service_ips, settings.operator_pod_labels,
                                                 settings.cluster_domain)
        if _drifted(desired, obj, deleted) and not nn.body["metadata"].get("deletionTimestamp"):
            logger.info("Repairing %s %s/%s of NetworkNode %s", obj["kind"], namespace, obj["metadata"]["name"], name)
            await network_node.reconcile(ctx, nn.body)
        else:
            await network_node.write_status(ctx, nn)


async def repair(ctx: Context, desired: Obj) -> None:
    """Apply `desired`. An edit can leave the object in a state our apply cannot merge into (e.g.
    strategy switched to RollingUpdate gains rollingUpdate defaults that Recreate forbids): then the
    object is replaced, which is what the user declared anyway."""
    try:
        await ctx.kube.apply(desired)
    except KubeError as exc:
        if exc.status != 422 or desired["kind"] == "PersistentVolumeClaim":  # never drop data
            raise
        logger.warning("Replacing %s %s/%s: %s", desired["kind"], desired["metadata"]["namespace"],
                       desired["metadata"]["name"], exc)
        await ctx.kube.delete(desired)
        await ctx.kube.apply(desired)


def _drifted(children: list[Obj], obj: Obj, deleted: bool) -> bool:
    desired = _find(children, obj["kind"], obj["metadata"]["name"])
    if desired is None:
        return False  # not ours any more (e.g. explorer switched off): leave it
    return deleted or not is_subset(desired, obj)
