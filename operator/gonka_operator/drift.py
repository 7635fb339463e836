"""Watch the children: keep the owners' facts current and mark drifted owners for reconcile.

Every child carries our labels. A child event updates the owner's record (Deployment availability,
the scheduler's verdict on a Pending pod, StatefulSet readiness, Service IPs, which children exist)
and its status. It never applies anything itself: when a child was deleted, no longer contains
what we applied (someone edited a field we own), or is no longer desired (pruning), the owner is
*marked* (`Repairs.mark`), and the Repairs worker runs the owner's reconcile — the same function
kopf's handlers run (inference_node.apply_children, network_node.reconcile), under the same lock.
Marks are deduplicated, so a burst of child events costs one reconcile. Status-only events mark
nothing, so they cause no writes.

A watch that relists after a gap reports what exists, never what was deleted meanwhile: a relist
(kopf's events of type None, after the first listing) and the periodic resync LIST the children
and mark the owners of those gone (`resync_children`); regaining the Lease reconciles every owner
(`Repairs.reapply_all`). Both drop `Record.applied`, so the reconcile applies what it skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from gonka_operator import inference_node, network_node
from gonka_operator.builders import hf_cache
from gonka_operator.builders.common import LABEL_INFERENCE_NODE, LABEL_MANAGED_BY, LABEL_NETWORK_NODE, MANAGED_BY, Obj
from gonka_operator.builders.onboarding import is_onboarding_pod
from gonka_operator.children import APPLIED_API_VERSIONS, CREATED_ONCE, NEVER_PRUNED, forget, owned_by
from gonka_operator.context import Context, Key, Record
from gonka_operator.kube import KubeError
from gonka_operator.registry import backoff
from gonka_operator.status import statefulset_ready

logger = logging.getLogger(__name__)
# A listing (kopf's events of type None) more than RELIST_GAP seconds after the previous one of that
# kind is a relist after a watch gap; RELIST_SETTLE seconds later the children are checked.
RELIST_GAP = 30.0
RELIST_SETTLE = 5.0
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


def owner_of(obj: Obj) -> tuple[str, str] | None:
    for ref in obj["metadata"].get("ownerReferences", []):
        if ref.get("apiVersion", "").startswith("gonka.ai/"):
            return ref["kind"], ref["name"]
    labels = obj["metadata"].get("labels", {})
    if labels.get(LABEL_INFERENCE_NODE):  # pods and retained PVCs: no owner reference to us
        return "InferenceNode", labels[LABEL_INFERENCE_NODE]
    if obj["kind"] == "PersistentVolumeClaim" and labels.get(LABEL_NETWORK_NODE):
        return "NetworkNode", labels[LABEL_NETWORK_NODE]
    if obj["kind"] == "Pod" and is_onboarding_pod(obj):  # a warm-key/register Job's pod (its outcome)
        return "NetworkNode", labels[LABEL_NETWORK_NODE]
    return None


def needs_reconcile(desired: list[Obj], obj: Obj, deleted: bool, owner_uid: str) -> bool:
    """Was this child deleted, edited away from what we apply, or is it ours but no longer desired?"""
    if obj["kind"] == "Pod":
        return False
    want = _find(desired, obj["kind"], obj["metadata"]["name"])
    if want is None:  # not desired (any more): prune it if it is really this CR's child
        return not deleted and obj["kind"] not in NEVER_PRUNED and owned_by(obj, owner_uid)
    if obj["kind"] in CREATED_ONCE:  # a Job is never patched: only its absence is drift
        return deleted
    return deleted or not is_subset(want, obj)


def _track(record: Record, obj: Obj, deleted: bool) -> None:
    if obj["kind"] == "Pod" or not owned_by(obj, record.body["metadata"]["uid"]):
        return
    child = (obj["kind"], obj["metadata"]["name"])
    if deleted:
        record.children.discard(child)
    else:
        record.children.add(child)


async def on_child_event(ctx: Context, event_type: str | None, obj: Obj) -> None:
    if event_type is None and ctx.repairs is not None:  # kopf: listed, not watched
        ctx.repairs.listed(obj["kind"])
    owner = owner_of(obj)
    if owner is None:
        return
    kind, name = owner
    namespace = obj["metadata"]["namespace"]
    key = (namespace, name)
    deleted = event_type == "DELETED"
    if kind == "InferenceNode":
        record = ctx.inference.get(key)
        if record is None:
            return
        _track(record, obj, deleted)
        gates_before = inference_node.gates(record)
        if obj["kind"] == "Pod" and hf_cache.is_preload_pod(obj):  # a preload Job's pod (its outcome)
            if deleted:
                record.preload_pods.pop(obj["metadata"]["name"], None)
            else:
                record.preload_pods[obj["metadata"]["name"]] = {
                    "status": obj.get("status", {}), "job": hf_cache.job_of_pod(obj),
                    "created": obj["metadata"].get("creationTimestamp")}
        elif obj["kind"] == "Pod":
            if deleted:
                record.pods.pop(obj["metadata"]["name"], None)
            else:  # only the scheduler's verdict on a pod it cannot place is read (status.pending_reason)
                verdict = [c for c in (obj.get("status") or {}).get("conditions") or []
                           if c.get("type") == "PodScheduled" and c.get("status") == "False"]
                if verdict:
                    record.pods[obj["metadata"]["name"]] = {"status": {"conditions": verdict}}
                else:
                    record.pods.pop(obj["metadata"]["name"], None)
        elif obj["kind"] == "Deployment":
            record.deployment = None if deleted else {"status": obj.get("status", {}),
                                                      "replicas": (obj.get("spec") or {}).get("replicas")}
        elif obj["kind"] == "Job":
            if deleted:
                record.jobs.pop(obj["metadata"]["name"], None)
            else:
                record.jobs[obj["metadata"]["name"]] = hf_cache.job_facts(obj)
        gates_after = inference_node.gates(record)
        if gates_after != gates_before and not record.body["metadata"].get("deletionTimestamp"):
            # the cache became Ready (scale the ML pod up) or the pod came up: reconcile, then register
            if gates_after[0] != gates_before[0] and ctx.repairs is not None:
                ctx.repairs.mark("InferenceNode", key)
            if ctx.registries is not None:
                await ctx.registries.mark(key)
        if deleted:
            await forget(record, obj["kind"], obj["metadata"]["name"])  # applied again when desired
        if not record.body["metadata"].get("deletionTimestamp") and needs_reconcile(
                inference_node.desired_for(ctx, record), obj, deleted, record.body["metadata"]["uid"]):
            await forget(record, obj["kind"], obj["metadata"]["name"])  # no longer what we applied: apply it
            logger.info("%s %s/%s of InferenceNode %s drifted; marked for reconcile", obj["kind"], namespace,
                        obj["metadata"]["name"], name)
            assert ctx.repairs is not None
            ctx.repairs.mark("InferenceNode", key)
        await inference_node.write_status(ctx, record)
    elif kind == "NetworkNode":
        nn = ctx.network.get(key)
        if nn is None:
            return
        _track(nn, obj, deleted)
        was_ready = statefulset_ready(nn.statefulset)
        if not deleted:
            network_node.remember_child(nn, obj)
        elif obj["kind"] == "StatefulSet":
            nn.statefulset = None
        else:
            network_node.forget_child(nn, obj)
        settings = ctx.settings
        desired = network_node.desired_children(nn.body, nn.service_ips, settings.operator_pod_labels,
                                                 settings.cluster_domain, settings.operator_namespace,
                                                 status=nn.status_written)
        if not nn.body["metadata"].get("deletionTimestamp") and needs_reconcile(
                desired, obj, deleted, nn.body["metadata"]["uid"]):
            logger.info("%s %s/%s of NetworkNode %s drifted; marked for reconcile", obj["kind"], namespace,
                        obj["metadata"]["name"], name)
            assert ctx.repairs is not None
            ctx.repairs.mark("NetworkNode", key)
        await network_node.write_status(ctx, nn)
        if obj["kind"] == "Job" and network_node.onboarding_pending(nn) and ctx.repairs is not None:
            ctx.repairs.mark("NetworkNode", key)  # the warm key exists: create the registration Job
        if statefulset_ready(nn.statefulset) != was_ready and ctx.registries is not None:
            ctx.registries.mark_network(key)  # its api became ready (register) or went (status)


async def resync_children(ctx: Context) -> list[Key]:
    """The children this process applied that are gone although no DELETED event said so (a watch
    that relists after a gap reports what exists, never what was deleted meanwhile): forgotten, and
    their owner marked for a reconcile. One LIST per namespace and kind; no write when all are
    there. Called with the periodic resync (poller.Registries.tick)."""
    wanted: dict[tuple[str, str], list[Key]] = {}
    for key, record in list(ctx.inference.items()):
        if record.handled and not record.body["metadata"].get("deletionTimestamp"):
            for kind, _ in record.applied:
                wanted.setdefault((key[0], kind), []).append(key)
    marked: list[Key] = []
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    for (namespace, kind), keys in sorted(wanted.items()):
        if kind not in APPLIED_API_VERSIONS:
            continue
        try:
            items = await ctx.kube.list(APPLIED_API_VERSIONS[kind], kind, namespace, label_selector=selector)
        except KubeError as exc:
            logger.warning("Resync of %ss in %s failed: %s", kind, namespace, exc)
            continue
        present = {item["metadata"]["name"] for item in items}
        for key in sorted(set(keys)):
            owner = ctx.inference.get(key)
            if owner is None:  # deleted meanwhile
                continue
            for child_kind, name in [c for c in owner.applied if c[0] == kind and c[1] not in present]:
                logger.info("%s %s/%s of InferenceNode %s is gone without an event; marked for reconcile",
                            child_kind, namespace, name, key[1])
                await forget(owner, child_kind, name)
                if key not in marked:
                    marked.append(key)
    for key in marked:
        if ctx.repairs is not None:
            ctx.repairs.mark("InferenceNode", key)
    return marked


class Repairs:
    """Marked owners, reconciled by one worker task, each at most once per batch of marks."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.pending: dict[tuple[str, Key], None] = {}
        self.retries: dict[tuple[str, Key], int] = {}
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.listings: dict[str, float] = {}  # kind → monotonic time of its latest listed child
        self._relist_check: asyncio.Task[None] | None = None

    def mark(self, kind: str, key: Key) -> None:
        self.pending[(kind, key)] = None
        self.wake.set()

    def listed(self, kind: str) -> None:
        """A child of `kind` came from a listing. The first listing of a kind (start-up) is what the
        resume reconcile applies anyway; a later one is a relist after a watch gap, in which
        deletions went unreported: the children are checked once it settled (`resync_children`)."""
        now = time.monotonic()
        previous, self.listings[kind] = self.listings.get(kind), now
        if previous is None or now - previous <= RELIST_GAP or self._relist_check is not None:
            return
        logger.info("The watch of %ss relisted: checking for children deleted meanwhile", kind)
        self._relist_check = self._spawn(self._check_after_relist())

    async def _check_after_relist(self) -> None:
        await asyncio.sleep(RELIST_SETTLE)
        self._relist_check = None
        await self.ctx.leader.wait()
        await resync_children(self.ctx)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def reapply_all(self) -> asyncio.Task[None]:
        """This process became the active operator again (lease.py `on_acquired`): while another
        one held the Lease anything may have changed, so what this process applied before proves
        nothing. Every owner is reconciled once, applying all its children."""
        return self._spawn(self._reapply_all())

    async def _reapply_all(self) -> None:
        # only what this process reconciled before (at the first acquisition: nothing, kopf's
        # resume handlers reconcile everything)
        for key, record in list(self.ctx.inference.items()):
            async with record.apply_lock:  # after an apply still in flight from before the pause
                record.applied.clear()
            if record.handled:
                self.mark("InferenceNode", key)
        for key, nn in list(self.ctx.network.items()):
            if nn.observed_generation is not None:
                self.mark("NetworkNode", key)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="drift repairs")

    async def stop(self) -> None:
        tasks = [t for t in [self.task, *self._background] if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            await self.ctx.leader.wait()
            self.wake.clear()
            batch, self.pending = list(self.pending), {}
            await asyncio.gather(*(self.repair(kind, key) for kind, key in batch))

    async def repair(self, kind: str, key: Key) -> None:
        ctx = self.ctx
        try:
            if kind == "InferenceNode":
                record = ctx.inference.get(key)
                if record is not None and record.handled:
                    await inference_node.apply_children(ctx, record)
                    await inference_node.write_status(ctx, record)
            else:
                nn = ctx.network.get(key)
                if nn is not None and nn.observed_generation is not None:
                    await network_node.reconcile(ctx, nn.body)
        except (KubeError, ValueError) as exc:
            retry = self.retries[(kind, key)] = self.retries.get((kind, key), 0) + 1
            delay = backoff(retry)
            logger.warning("Repair of %s %s/%s failed (%s); again in %.0f s", kind, *key, exc, delay)
            asyncio.get_running_loop().call_later(delay, self.mark, kind, key)
            return
        self.retries.pop((kind, key), None)
