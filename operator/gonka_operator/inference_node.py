"""InferenceNode use cases: apply the workload, register, compute and write status, deregister."""

from __future__ import annotations

import asyncio
import logging
import time

from gonka_operator import context
from gonka_operator.builders import inference_node as build
from gonka_operator.builders.common import Obj, Owner
from gonka_operator.builders.policies import inference_node_policy
from gonka_operator.conditions import now_rfc3339
from gonka_operator.context import Context, InferenceRecord, Key, key_of
from gonka_operator.kube import KubeError
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.registry import RegistryProblem, deregister, register
from gonka_operator.status import Facts, inference_node_conditions, workload_facts

logger = logging.getLogger(__name__)
KIND = "InferenceNode"
# kopf's own wake-up annotation (its progress storage's `touch-dummy` under our prefix): kopf
# removes it again with its next patch of the object, and it is not part of the diffed essence.
TOUCH_ANNOTATION = "gonka.ai/touch-dummy"
UNHANDLED_SECONDS = 30.0


def owner_of(body: Obj) -> Owner:
    meta = body["metadata"]
    return Owner(KIND, meta["name"], meta["namespace"], meta["uid"])


def desired_children(body: Obj) -> list[Obj]:
    """Everything the cluster should hold for this InferenceNode (nothing for an external one)."""
    spec = InferenceNodeSpec.model_validate(body["spec"])
    if spec.external:
        return []
    owner = owner_of(body)
    nn = spec.network_node_ref.name if spec.network_node_ref else None
    children = [build.build_deployment(owner, spec, nn), build.build_service(owner, nn)]
    pvc = build.build_hf_cache_pvc(owner, spec)
    if pvc:
        children.insert(0, pvc)
    if nn:
        children.append(inference_node_policy(owner, nn))
    return children


def record_for(ctx: Context, body: Obj) -> InferenceRecord:
    key = key_of(body)
    record = ctx.inference.get(key)
    if record is None:
        status = body.get("status") or {}
        # start from what the object shows, so a restarted operator rewrites nothing it already said
        record = ctx.inference[key] = InferenceRecord(body=body, status_written=status or None,
                                                      registry=status.get("registry"))
    else:
        record.body = body
    record.seen_at = time.monotonic()
    return record


async def reconcile(ctx: Context, body: Obj, retry: int) -> None:
    """Apply the workload, then register. RegistryProblem propagates (with status already written)
    so the handler can ask kopf for a retry with the right delay."""
    record = record_for(ctx, body)
    record.handled = True
    key = key_of(body)
    spec = InferenceNodeSpec.model_validate(body["spec"])
    children = desired_children(body)
    # independent objects: one round trip instead of three (the Service, which registration
    # names as the host, exists once this returns)
    for child, applied in zip(children, await asyncio.gather(*map(ctx.kube.apply, children)), strict=True):
        if child["kind"] == "Deployment" and record.deployment is None:
            record.deployment = {"status": applied.get("status", {})}
    try:
        record.admin_url, record.registration = await register(ctx, key, spec, retry)
        record.registered_at = time.monotonic()
    except RegistryProblem as problem:
        previous, record.registration = record.registration, problem.facts
        if previous.reason != problem.facts.reason or previous.message != problem.facts.message:
            await ctx.kube.post_event(body, "Warning", problem.facts.reason, problem.facts.message)
        raise
    finally:
        # Only now: child events seen meanwhile must not write a status without the registration.
        record.observed_generation = body["metadata"].get("generation")
        await write_status(ctx, record)


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
        try:
            await ctx.kube.annotate(context.API_VERSION, KIND, *key, {TOUCH_ANNOTATION: now_rfc3339()})
        except KubeError as exc:
            logger.warning("Could not touch InferenceNode %s/%s: %s", *key, exc)
    return stalled


async def finalize(ctx: Context, body: Obj, retry: int) -> str:
    """Deregister before the finalizer goes; children are garbage-collected afterwards."""
    record = record_for(ctx, body)
    key = key_of(body)
    spec = InferenceNodeSpec.model_validate(body["spec"])
    last_url = (body.get("status") or {}).get("adminURL") or record.admin_url
    try:
        outcome = await deregister(ctx, key, spec, last_url, retry)
    except RegistryProblem as problem:
        if record.registration.reason != problem.facts.reason:
            await ctx.kube.post_event(body, "Warning", problem.facts.reason, problem.facts.message)
        record.registration = problem.facts
        await write_status(ctx, record)
        raise
    await ctx.kube.post_event(body, "Normal", "Deregistered", outcome)
    return outcome


def compute_status(record: InferenceRecord) -> Obj:
    body = record.body
    spec = InferenceNodeSpec.model_validate(body["spec"])
    previous = (record.status_written or {}).get("conditions", [])
    workload = workload_facts(spec.external is not None, record.deployment, list(record.pods.values()))
    registration = record.registration
    if registration.ok and not spec.enabled:
        registration = Facts(True, "Disabled", registration.message)
    status: Obj = {
        "observedGeneration": record.observed_generation,
        "conditions": inference_node_conditions(previous, record.observed_generation, workload,
                                                registration, now_rfc3339()),
        "nodeId": spec.node_id or body["metadata"]["name"],
    }
    if record.admin_url:
        status["adminURL"] = record.admin_url
    if record.registry is not None:
        status["registry"] = record.registry
    return status


async def write_status(ctx: Context, record: InferenceRecord) -> None:
    await context.write_status(ctx, record, KIND, compute_status)
