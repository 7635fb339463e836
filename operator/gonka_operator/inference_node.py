"""InferenceNode use cases: apply (and prune) the workload, compute and write status.

The registry side (register, deregister, poll) belongs to the node's admin API loop in poller.py;
this module only marks the node for it (`ctx.registries.mark`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from gonka_operator import context, disruption
from gonka_operator.builders import hf_cache
from gonka_operator.builders import inference_node as build
from gonka_operator.builders.common import LABEL_INFERENCE_NODE, Obj, Owner
from gonka_operator.builders.pdb import build_pdb
from gonka_operator.builders.policies import inference_node_policy
from gonka_operator.children import ApplyRefused, apply_child, changed, digest, ident, prune
from gonka_operator.conditions import Cond, merge_conditions, now_rfc3339
from gonka_operator.context import Context, InferenceRecord, Key, key_of
from gonka_operator.kube import KubeError
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.registry import FINALIZER
from gonka_operator.settings import DEFAULT_PRELOAD_IMAGE
from gonka_operator.status import Facts, deployment_available, inference_node_conditions, merge_patch, workload_facts

logger = logging.getLogger(__name__)
KIND = "InferenceNode"
# kopf's own wake-up annotation (its progress storage's `touch-dummy` under our prefix): kopf
# removes it again with its next patch of the object, and it is not part of the diffed essence.
TOUCH_ANNOTATION = "gonka.ai/touch-dummy"
UNHANDLED_SECONDS = 30.0
MAX_WINDOWS = 5  # write_status: the longest a status change waits while facts keep coming, in windows


def owner_of(body: Obj) -> Owner:
    meta = body["metadata"]
    return Owner(KIND, meta["name"], meta["namespace"], meta["uid"])


def desired_children(body: Obj, *, replicas: int | None = None, preload_image: str = DEFAULT_PRELOAD_IMAGE,
                     preload_attempt: int = 1, preload_retry: hf_cache.Retry = hf_cache.DEFAULT_RETRY) -> list[Obj]:
    """Everything the cluster should hold for this InferenceNode (nothing for an external one).
    `replicas` of the ML Deployment: see `ml_replicas` (default: 0 while a preload Job is wanted);
    `preload_attempt`: the preload Job's attempt (`hf_cache.plan`)."""
    spec = InferenceNodeSpec.model_validate(body["spec"])
    if spec.external:
        return []
    owner = owner_of(body)
    nn = spec.network_node_ref.name if spec.network_node_ref else None
    job = build.build_preload_job(owner, spec, preload_image, preload_attempt, preload_retry)
    if replicas is None:
        replicas = 0 if job else 1
    children = [build.build_deployment(owner, spec, nn, replicas), build.build_service(owner, nn)]
    if job:
        children.insert(0, job)
    pvc = build.build_hf_cache_pvc(owner, spec)
    if pvc:
        children.insert(0, pvc)
    if not nn:  # no NetworkNode to share its proxy ConfigMap (adminURL): the node has its own
        children.insert(0, build.build_proxy_config(owner))
    children.append(inference_node_policy(owner, nn, spec.allowed_from))
    return children


# -- the HF cache gate (spec.hfCache.preload; builders/hf_cache.py) ---------------------------------

def cache_plan(record: InferenceRecord, spec: InferenceNodeSpec | None = None) -> hf_cache.Plan:
    """Which attempt of the preload is wanted now (a failed Job is followed by the next after its delay)."""
    spec = spec or InferenceNodeSpec.model_validate(record.body["spec"])
    return hf_cache.plan(record.body["metadata"]["name"], spec, record.jobs, time.time())


def cache_view(record: InferenceRecord) -> hf_cache.CacheView:
    """The cache of the current (repository, revision), from its preload Job and the Job's pods."""
    spec = InferenceNodeSpec.model_validate(record.body["spec"])
    name = record.body["metadata"]["name"]
    current = cache_plan(record, spec)
    job = record.jobs.get(hf_cache.job_name(name, spec, current.attempt))
    return hf_cache.read_job(spec, name, job, list(record.preload_pods.values()), record.cache_progress, current)


def preload_retry(ctx: Context) -> hf_cache.Retry:
    s = ctx.settings
    return hf_cache.Retry(s.preload_backoff_limit, s.preload_retry_seconds, s.preload_retry_max_seconds)


def ml_replicas(record: InferenceRecord) -> int:
    """1 once the cache is Ready, or when the Deployment already runs a pod (a model change downloads
    the new weights first; the serving pod is never scaled down for it); 0 before."""
    if cache_view(record).ready:
        return 1
    return 1 if ((record.deployment or {}).get("replicas") or 0) >= 1 else 0


def desired_for(ctx: Context, record: InferenceRecord) -> list[Obj]:
    """`desired_children` with what the facts decide (replicas) and the settings (preload image): the one
    call of reconcile and of drift detection, so both compare against the same objects."""
    children = desired_children(record.body, replicas=ml_replicas(record), preload_image=ctx.settings.preload_image,
                                preload_attempt=cache_plan(record).attempt, preload_retry=preload_retry(ctx))
    if any(c["kind"] == "Deployment" for c in children) and disruption.window_for(
            ctx, key_of(record.body), record).open:  # evictions wait for the Inference phase: a PDB during PoC
        spec = InferenceNodeSpec.model_validate(record.body["spec"])
        children.append(build_pdb(owner_of(record.body), spec.network_node_ref.name if spec.network_node_ref
                                  else None))
    return children


def gates(record: InferenceRecord) -> tuple[bool, bool]:
    """(cache Ready, ML Deployment available): when one flips, the node needs a reconcile / a sync."""
    try:
        return cache_view(record).ready, deployment_available(record.deployment)
    except ValueError:  # pydantic's ValidationError: an invalid spec opens no gate
        return False, False


def registration_hold(record: InferenceRecord) -> Facts | None:
    """Why the node may not be registered (or updated) yet, or None. Registered only once the cache
    holds the weights of the current model AND the ML pod is up: the network node must not schedule
    a node that would spend the next PoC downloading."""
    spec = InferenceNodeSpec.model_validate(record.body["spec"])
    if spec.external:
        return None
    cache = cache_view(record)
    if not cache.ready:
        return Facts(None, "WaitingForCache", f"registered once the HF cache is Ready: {cache.message}")
    if not deployment_available(record.deployment):
        return Facts(None, "WaitingForWorkload", "registered once the mlnode pod is up")
    return None


async def learn_cache_facts(ctx: Context, record: InferenceRecord) -> None:
    """Before the first events of the preload Job and the Deployment have arrived (e.g. right after a
    restart), read them: a serving pod must never be scaled to 0 for lack of facts."""
    spec = InferenceNodeSpec.model_validate(record.body["spec"])
    if not hf_cache.wanted(spec):
        return
    meta = record.body["metadata"]
    if hf_cache.current_job(meta["name"], spec, record.jobs)[1] is None:  # which attempts exist?
        for job in await ctx.kube.list("batch/v1", "Job", meta["namespace"]):
            jname = job["metadata"]["name"]
            if hf_cache.attempt_of(meta["name"], spec, jname) is not None:
                record.jobs[jname] = hf_cache.job_facts(job)
    if record.deployment is None and not cache_view(record).ready:
        dep = await ctx.kube.get("apps/v1", "Deployment", meta["namespace"], build.workload_name(meta["name"]))
        if dep is not None:
            record.deployment = {"status": dep.get("status", {}), "replicas": dep["spec"].get("replicas")}


def record_for(ctx: Context, body: Obj) -> InferenceRecord:
    """The record of `body`, created or updated (called by the indexer, on every event)."""
    key = key_of(body)
    record = ctx.inference.get(key)
    status = body.get("status") or {}
    body = {k: v for k, v in body.items() if k != "status"}  # kept as status_written: not twice in memory
    if record is None:
        # start from what the object shows, so a restarted operator rewrites nothing it already said
        record = ctx.inference[key] = InferenceRecord(body=body, status_written=status or None,
                                                      registry=status.get("registry"),
                                                      admin_url=status.get("adminURL"))
    else:
        record.body = body
    record.seen_at = time.monotonic()
    return record


async def apply_children(ctx: Context, record: InferenceRecord) -> None:
    """Apply the desired children and prune the ones no longer desired: the one code path of kopf's
    handler and of drift repair. A child the API server refuses is `ApplyFailed` (status + Warning),
    never a deletion; other KubeErrors propagate (retried)."""
    async with record.apply_lock:
        body = record.body
        if body["metadata"].get("deletionTimestamp"):
            return
        await learn_cache_facts(ctx, record)
        children = desired_for(ctx, record)
        # a change that restarts the serving ML pod waits for the Inference phase (disruption.py)
        now = await disruption.hold(ctx, key_of(body), record, children)
        # only what differs from what this process last applied (an unchanged apply is still a write)
        todo = changed(record, now)
        if _starts_what_the_cache_gated(record, todo):
            # the CR says Ready before the ML pod it gated starts (a coalesced write would come after)
            await _write_now(ctx, record)
        # independent objects: one round trip instead of three (the Service, which registration
        # names as the host, exists once this returns)
        results = await asyncio.gather(*(apply_child(ctx, c) for c in todo), return_exceptions=True)
        refused = [r for r in results if isinstance(r, ApplyRefused)]
        failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, ApplyRefused)]
        for child, result in zip(todo, results, strict=True):
            if isinstance(result, dict):
                record.applied[ident(child)] = digest(child)
            else:  # refused or failed: sent again by the retry
                record.applied.pop(ident(child), None)
        for child, applied in zip(todo, results, strict=True):
            if child["kind"] == "Job" and isinstance(applied, dict):  # the attempt exists now: never again
                record.jobs.setdefault(child["metadata"]["name"], hf_cache.job_facts(applied))
            if child["kind"] == "Deployment" and isinstance(applied, dict) and (
                    record.deployment is None or record.deployment.get("replicas") != child["spec"]["replicas"]):
                record.deployment = {"status": applied.get("status", {}),
                                     "replicas": (applied.get("spec") or {}).get("replicas")}
        if failed:
            raise failed[0]
        error = "; ".join(str(r) for r in refused) or None
        if error and error != record.apply_error:
            await ctx.kube.post_event(body, "Warning", "ApplyFailed", error)
        record.apply_error = error
        await prune(ctx, record, children)


def _starts_what_the_cache_gated(record: InferenceRecord, todo: list[Obj]) -> bool:
    """The apply scales the ML Deployment 0 -> 1 for a cache that is Ready now while the CR still
    shows it otherwise (a status written before the download ended)."""
    shown = ((record.status_written or {}).get("cache") or {}).get("state")
    return shown not in (None, hf_cache.READY) and cache_view(record).ready and any(
        c["kind"] == "Deployment" and c["spec"].get("replicas") == 1 and not (record.deployment or {}).get("replicas")
        for c in todo)


async def reconcile(ctx: Context, body: Obj) -> None:
    """kopf's create/update/resume: our finalizer, the workload, then a mark for the registry loop.
    Nothing here waits for an admin API."""
    record = record_for(ctx, body)
    if body["metadata"].get("deletionTimestamp"):
        return  # the registry loop deregisters it and removes the finalizer
    record.handled = True
    if FINALIZER not in (body["metadata"].get("finalizers") or []):
        await ctx.kube.set_finalizer(body, FINALIZER, present=True)
    record.finalized = True
    before = (record.apply_error, record.disruption.get("held"))
    await apply_children(ctx, record)
    record.observed_generation = body["metadata"].get("generation")
    if (record.apply_error, record.disruption.get("held")) != before:
        await write_status(ctx, record)
    assert ctx.registries is not None
    await ctx.registries.mark(key_of(body))


async def wake_unhandled(ctx: Context, now: float | None = None) -> list[Key]:
    """Touch every InferenceNode kopf has left alone: not being deleted, never reconciled by this
    process, and its latest watch event UNHANDLED_SECONDS old. The touch is a new event, and kopf
    handles the object on it.

    Why (found by the fault suite, kopf 1.45): when the API server goes away while kopf adds its
    finalizer, kopf's retried PATCH succeeds, but a relisted (older) copy of the object queued
    meanwhile makes it try again; that attempt conflicts and is kept as a "remaining patch", and
    on the next event (the one with the finalizer) kopf skips the handlers because of it, then
    finds nothing left to patch, and waits for an event that never comes: the node was never
    registered."""
    now = time.monotonic() if now is None else now
    stalled = [key for key, record in list(ctx.inference.items())
               if not record.handled and now - record.seen_at > UNHANDLED_SECONDS
               and not record.body["metadata"].get("deletionTimestamp")]
    for key in stalled:
        ctx.inference[key].seen_at = now  # at most one touch per UNHANDLED_SECONDS
        logger.warning("InferenceNode %s/%s was not handled %.0f s after its last event; touching it so "
                       "that kopf handles it", *key, UNHANDLED_SECONDS)
        await touch(ctx, key)
    return stalled


async def touch(ctx: Context, key: Key) -> None:
    try:
        await ctx.kube.annotate(context.API_VERSION, KIND, *key, {TOUCH_ANNOTATION: now_rfc3339()})
    except KubeError as exc:
        logger.warning("Could not touch InferenceNode %s/%s: %s", *key, exc)


async def resync(ctx: Context) -> list[Key]:
    """Re-read the InferenceNodes (one LIST per namespace) and touch those whose generation this
    process has not reconciled although it handled them: an update event the watch lost. kopf then
    sees the change and runs the update handler. Nothing is written when nothing was lost."""
    lost: list[Key] = []
    for namespace in sorted({k[0] for k in ctx.inference}):
        try:
            items = await ctx.kube.list(context.API_VERSION, KIND, namespace)
        except KubeError as exc:
            logger.warning("Resync of InferenceNodes in %s failed: %s", namespace, exc)
            continue
        for item in items:
            key = key_of(item)
            record = ctx.inference.get(key)
            meta = item["metadata"]
            if (record is not None and record.handled and not meta.get("deletionTimestamp")
                    and record.observed_generation is not None
                    and meta.get("generation") != record.observed_generation):
                lost.append(key)
    for key in lost:
        logger.warning("InferenceNode %s/%s changed without an event reaching the operator; touching it", *key)
        await touch(ctx, key)
    return lost


def compute_status(record: InferenceRecord) -> Obj:
    body = record.body
    spec = InferenceNodeSpec.model_validate(body["spec"])
    previous = (record.status_written or {}).get("conditions", [])
    workload = workload_facts(spec.external is not None, record.deployment, list(record.pods.values()))
    cache = cache_view(record)
    if not spec.external and not cache.ready and ml_replicas(record) == 0:
        workload = Facts(False, "WaitingForCache", f"the mlnode pod starts once the HF cache is Ready: {cache.message}")
    registration = record.registration
    if registration.ok and not spec.enabled:
        registration = Facts(True, "Disabled", registration.message)
    health = None
    registry = record.registry or {}
    if registration.ok and registry.get("currentStatus") == "FAILED":
        health = Facts(False, "NodeFailed", "the network node reports the ML node FAILED: "
                       + str(registry.get("failureReason") or "no reason given"))
    if cache.reason == "PreloadFailed":
        health = Facts(False, "PreloadFailed", cache.message)
    if record.apply_error:
        health = Facts(False, "ApplyFailed", record.apply_error)
    now = now_rfc3339()
    conditions = inference_node_conditions(previous, record.observed_generation, workload, registration, now, health)
    if not spec.external:
        conditions += merge_conditions(previous, [Cond("CacheReady", cache.ok, cache.reason, cache.message)],
                                       record.observed_generation, now)
    pending = disruption.condition(record, previous)
    if pending is not None:
        conditions += merge_conditions(previous, [pending], record.observed_generation, now)
    status: Obj = {
        "observedGeneration": record.observed_generation,
        "conditions": conditions,
        "nodeId": spec.node_id or body["metadata"]["name"],
    }
    if cache.status:
        status["cache"] = cache.status
    if record.admin_url:
        status["adminURL"] = record.admin_url
    if record.registry is not None:
        status["registry"] = record.registry
    return status


async def write_status(ctx: Context, record: InferenceRecord) -> None:
    """Write the status if it changed, once the object's facts have paused for
    `status_coalesce_seconds`: each change within that window of the previous one joins the same
    write, which carries every fact known when it goes out. While facts never pause, a change waits
    at most MAX_WINDOWS windows; a new node's first status waits that long for its pod. A fact that
    arrives later gets its own write (issue 13: a new node's WaitingForWorkload, pod up and
    Registered: one write, not three)."""
    delay = ctx.settings.status_coalesce_seconds
    if delay <= 0 or not context.reportable(record):
        await _write_now(ctx, record)  # writes nothing if not reportable
        return
    now = time.monotonic()
    if record.status_task is not None and not record.status_task.done():
        # the pending write computes the status when it runs: it carries this change too
        record.status_due = min(now + delay, record.status_since + MAX_WINDOWS * delay)
        return
    if not merge_patch(record.status_written, compute_status(record)):
        return  # nothing new (e.g. a poll that found the entry unchanged): no write, nothing scheduled
    # A new node's first status waits for its pod (and registration) up to MAX_WINDOWS windows: its
    # first fact is WaitingForWorkload, and the pod comes up seconds later when the controllers are busy.
    first = record.status_written is None and not record.status_since  # nothing shown, nothing scheduled yet
    record.status_since, record.status_due = now, now + (MAX_WINDOWS if first else 1) * delay
    record.status_task = asyncio.get_running_loop().create_task(_write_later(ctx, record))


async def _write_now(ctx: Context, record: InferenceRecord) -> None:
    shown = record.status_written
    before = dict((shown or {}).get("cache") or {})  # a copy: what the object showed until this write
    await context.write_status(ctx, record, KIND, compute_status)
    if record.status_written is not shown:
        await preload_failure_event(ctx, record, before)


async def preload_failure_event(ctx: Context, record: InferenceRecord, before: Obj) -> None:
    """A Warning Event when status.cache has just turned Failed for a preload Job (once per failed
    attempt; the status the object shows is the memory, so a restart posts none again)."""
    after = (record.status_written or {}).get("cache") or {}
    if after.get("state") == hf_cache.FAILED and (before.get("state") != hf_cache.FAILED
                                                  or before.get("job") != after.get("job")):
        await ctx.kube.post_event(record.body, "Warning", "PreloadFailed", str(after.get("message") or ""))


async def _write_later(ctx: Context, record: InferenceRecord) -> None:
    step = max(ctx.settings.status_coalesce_seconds, 0.05)
    while True:  # a fact that came meanwhile moved the due time (on, or for a first status, nearer)
        wait = record.status_due - time.monotonic()
        if wait <= 0:
            break
        await asyncio.sleep(min(wait, step))
    # from here on a new fact starts a write of its own: this one may have computed its status already
    record.status_task = None
    if ctx.inference.get(key_of(record.body)) is not record:
        return  # forgotten (deleted) meanwhile
    try:
        await _write_now(ctx, record)
    except KubeError as exc:
        if exc.status == 404:
            return  # the object is gone
        retry = max(ctx.settings.status_coalesce_seconds, 5.0)
        logger.warning("Status write of InferenceNode %s/%s failed (%s); again in %.0f s",
                       *key_of(record.body), exc, retry)
        record.status_since, record.status_due = time.monotonic(), time.monotonic() + retry
        record.status_task = asyncio.get_running_loop().create_task(_write_later(ctx, record))


def children_label(name: str) -> dict[str, str]:
    return {LABEL_INFERENCE_NODE: name}
