"""Applying and pruning the children of a custom resource (used by its reconcile, the one code path
of kopf's handlers and of drift repair).

* A child the API server refuses (422) is replaced only when the live object's edit is the cause:
  the desired object alone, dry-run applied under a fresh name, is accepted. If the API refuses the
  desired object itself (e.g. requests above limits, which the CRD schema lets through), that is
  `ApplyRefused` (condition ApplyFailed with the API's message), never a deletion.
* Children the desired set no longer holds (spec.external, explorer off, networkNodeRef switched to
  adminURL) are deleted, by the owner reference to this very CR (uid) — never a PVC or StatefulSet.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

from gonka_operator.kube import KubeError

logger = logging.getLogger(__name__)
Obj = dict[str, Any]

# What may be pruned (kind → apiVersion). Job: the preload Job of a previous model; ConfigMap: an
# adminURL node's own proxy config after a switch to networkNodeRef; PodDisruptionBudget: the ML
# Deployment's, after a switch to spec.external.
API_VERSIONS = {"Deployment": "apps/v1", "Service": "v1", "NetworkPolicy": "networking.k8s.io/v1",
                "Job": "batch/v1", "ConfigMap": "v1", "PodDisruptionBudget": "policy/v1"}
APPLIED_API_VERSIONS = {**API_VERSIONS, "PersistentVolumeClaim": "v1"}  # every kind `applied` may hold
NEVER_PRUNED = ("PersistentVolumeClaim", "StatefulSet", "Pod")
CREATED_ONCE = ("Job",)
KEEPS_PODS = ("Deployment",)  # replaced with its pods orphaned, then adopted (replace_keeping_pods)
REPLACE_WAIT = 30.0


class ApplyRefused(Exception):
    """The API server refuses the desired object itself; `str()` names it and gives the API's text."""

    def __init__(self, obj: Obj, message: str) -> None:
        super().__init__(f"{obj['kind']} {obj['metadata']['name']}: {message}")


async def create_once(ctx: Any, desired: Obj) -> Obj:
    """A Job is created, never patched or replaced: its pod template is immutable, and replacing it
    re-runs it. Its name carries what must re-run it (hf_cache.job_name: repository, revision,
    volume; the onboarding Jobs run once per NetworkNode), never the image: a chart upgrade that
    changes the operator image (the preload Job's) must not re-run every preload."""
    try:
        created: Obj = await ctx.kube.create(desired)
        return created
    except KubeError as exc:
        if exc.status != 409:
            if exc.status in (400, 422):
                raise ApplyRefused(desired, str(exc)) from exc
            raise
    meta = desired["metadata"]
    live: Obj | None = await ctx.kube.get(desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
    if live is None:  # deleted between the two calls: the next reconcile creates it
        raise KubeError(409, f"{desired['kind']} {meta['namespace']}/{meta['name']} is being deleted")
    return live


async def apply_child(ctx: Any, desired: Obj) -> Obj:
    """Server-side apply `desired`, replacing the live object when (and only when) its edit is
    what the apply cannot merge into (e.g. strategy switched to RollingUpdate gains rollingUpdate
    defaults that Recreate forbids). A Job is created once (`create_once`)."""
    if desired["kind"] in CREATED_ONCE:
        return await create_once(ctx, desired)
    try:
        applied: Obj = await ctx.kube.apply(desired)
        return applied
    except KubeError as exc:
        if exc.status not in (400, 422):
            raise
        try:
            await ctx.kube.dry_run_create(desired)
        except KubeError as dry:
            if dry.status in (400, 422):
                raise ApplyRefused(desired, str(exc)) from exc
            raise
        if desired["kind"] in NEVER_PRUNED:  # never drop data or a signer
            raise ApplyRefused(desired, f"{exc} (the live object's edit blocks the apply; fix it by hand)") from exc
        logger.warning("Replacing %s %s/%s, whose edit the apply cannot merge into: %s", desired["kind"],
                       desired["metadata"]["namespace"], desired["metadata"]["name"], exc)
        if desired["kind"] in KEEPS_PODS:
            await replace_keeping_pods(ctx, desired)
        else:
            await ctx.kube.delete(desired)
        replaced: Obj = await ctx.kube.apply(desired)
        return replaced


async def replace_keeping_pods(ctx: Any, desired: Obj) -> None:
    """Delete a Deployment but not its ReplicaSets and pods (propagationPolicy Orphan), and wait
    until it is gone: the Deployment applied next adopts them (same selector), and its pod restarts
    only if the pod template changed, which `disruption.hold` has allowed before the apply (it held
    the ML Deployment otherwise). A replacement deleting the pod was a restart no hold saw, mid-PoC
    too. Still there after REPLACE_WAIT seconds (the garbage collector orphans the dependents
    first): KubeError 409, retried."""
    meta = desired["metadata"]
    await ctx.kube.delete(desired, propagation="Orphan")
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + REPLACE_WAIT, 0.1
    while await ctx.kube.get(desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"]) is not None:
        if loop.time() > deadline:
            raise KubeError(409, f"{desired['kind']} {meta['namespace']}/{meta['name']} is still being deleted "
                            "(orphaning its ReplicaSets); replaced at the retry")
        await asyncio.sleep(pause)
        pause = min(2.0, pause * 2)


def ident(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def digest(obj: Obj) -> bytes:
    """A short fingerprint of a desired object (what `Record.applied` keeps instead of the object)."""
    return hashlib.blake2b(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode(), digest_size=16).digest()


def changed(record: Any, desired: list[Obj]) -> list[Obj]:
    """The desired children that need an apply: those not applied by this process yet, or whose
    desired object differs from the one last applied. An unchanged server-side apply is still a
    PATCH request (a write in the API server's metrics) and an etcd read-modify-write, so it is
    not sent. The live object drifting away from it (an edit, a deletion) is seen by the child's
    watch event, which drops the entry (`forget`) and marks the owner for a reconcile."""
    return [c for c in desired if record.applied.get(ident(c)) != digest(c)]


async def forget(record: Any, kind: str, name: str) -> None:
    """Drop what `changed` knows of a child, so that the next reconcile applies it. Under the apply
    lock: an apply in flight records its digest when it ends, and a deletion seen meanwhile must
    come after that, or the reconcile it marks would skip the child."""
    async with record.apply_lock:
        record.applied.pop((kind, name), None)


def owned_by(obj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


async def prune(ctx: Any, record: Any, desired: list[Obj]) -> list[tuple[str, str]]:
    """Delete the children seen with this CR's owner reference that `desired` does not hold."""
    wanted = {(c["kind"], c["metadata"]["name"]) for c in desired}
    namespace = record.body["metadata"]["namespace"]
    pruned = []
    for kind, name in sorted(record.children - wanted):
        if kind in NEVER_PRUNED or kind not in API_VERSIONS:
            continue
        logger.info("Pruning %s %s/%s: no longer part of %s %s", kind, namespace, name,
                    record.body["kind"], record.body["metadata"]["name"])
        await ctx.kube.delete({"apiVersion": API_VERSIONS[kind], "kind": kind,
                               "metadata": {"namespace": namespace, "name": name}})
        record.children.discard((kind, name))
        pruned.append((kind, name))
    return pruned
