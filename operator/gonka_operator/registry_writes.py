"""The writes one RegistryLoop (poller.py) makes for one InferenceNode: register it (or update it,
enable/disable it), drain then deregister it when it is being deleted, and release its finalizer
`gonka.ai/registry-cleanup`. Split out of poller.py along that seam; the loop decides when.

Drain, then deregister (drain.py, via disruption.drain_for): the entry is disabled first and deleted once the
network node no longer schedules the node. When the NetworkNode whose registry holds the entry is
being deleted or confirmed absent (registry.network_node_gone: not merely missing from the index,
as right after a start), deregistration is tried once and, if its api no longer answers, the
finalizer goes anyway (Event DeregistrationSkipped).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gonka_operator import disruption, inference_node, registry
from gonka_operator.admin import AdminError, AdminNotFound
from gonka_operator.context import Context, InferenceRecord, Key
from gonka_operator.metrics import DRIFT_REPAIRS
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.registry import FINALIZER, SKIP_DEREGISTRATION, RegistryProblem
from gonka_operator.status import Facts

if TYPE_CHECKING:
    from gonka_operator.registry_loop import RegistryLoop

logger = logging.getLogger(__name__)
VANISHED = "vanished"  # the cause of a sync: the entry had gone from the registry


def deleting(record: InferenceRecord) -> bool:
    return bool(record.body["metadata"].get("deletionTimestamp"))


def holds_finalizer(record: InferenceRecord) -> bool:
    return FINALIZER in (record.body["metadata"].get("finalizers") or [])


async def register(loop: RegistryLoop, key: Key, record: InferenceRecord, claims: dict[str, list[Key]],
                   cause: str | None) -> None:
    """Make the entry of `key` what its spec says (`cause`: why the loop synced it, for the Event)."""
    ctx = loop.ctx
    assert loop.snapshot is not None
    if not (record.finalized or holds_finalizer(record)):
        return  # never an entry without the finalizer that removes it: kopf's handler marks it again
    hold = inference_node.registration_hold(record)
    if hold is not None:  # the cache or the pod is not there yet; a registered node keeps its entry
        if not record.registration.ok and record.registration != hold:
            record.registration = hold
            await inference_node.write_status(ctx, record)
        return
    spec = InferenceNodeSpec.model_validate(record.body["spec"])
    config = registry.desired_config(key, spec, ctx.settings.cluster_domain)
    owner = claims.get(config.id, [key])[0]
    if owner != key:
        raise registry.conflict_problem(owner, config.id, loop.url)
    current = loop.snapshot.get(config.id)
    written = await registry.register(ctx.admin, loop.url, config, spec.enabled, current)
    if written.put_succeeded:
        loop.latest_confirmed = True
    if ctx.admin.known_generation(loop.url) is not None:
        loop.latest_confirmed = False
    loop.snapshot[config.id] = written.entry
    previous = record.registration
    record.admin_url = loop.url
    record.registration = registry.registered_facts(record, config, loop.url, spec.enabled)
    if cause == VANISHED and written.changed:
        DRIFT_REPAIRS.inc()
        await ctx.kube.post_event(record.body, "Warning", "ReRegistered",
                                  f"{config.id} had vanished from the admin registry at {loop.url}; "
                                  "registered it again")
    elif cause and written.changed:
        DRIFT_REPAIRS.inc()
        await ctx.kube.post_event(record.body, "Warning", "Repaired",
                                  f"{config.id} at {loop.url}: {cause}; put it back as the spec says")
    elif written.changed or previous.ok is False:
        await ctx.kube.post_event(record.body, "Normal", "Registered", record.registration.message)
    await inference_node.write_status(ctx, record)


async def deregister(loop: RegistryLoop, key: Key, record: InferenceRecord, claims: dict[str, list[Key]]) -> None:
    """Drain, then remove the entry of an InferenceNode being deleted, then release its finalizer."""
    ctx = loop.ctx
    if not holds_finalizer(record):
        loop.forget(key)
        return
    if (record.body["metadata"].get("annotations") or {}).get(SKIP_DEREGISTRATION) == "true":
        await release(ctx, record, "DeregistrationSkipped", f"annotation {SKIP_DEREGISTRATION}=true")
        loop.forget(key)
        return
    node_id = registry.node_id_of(key, record.body)
    owner = claims.get(node_id, [key])[0]
    if owner != key:
        await release(ctx, record, "Deregistered", f"{node_id} at {loop.url} belongs to "
                      f"InferenceNode {owner[0]}/{owner[1]}: left alone")
        loop.forget(key)
        return
    spec = InferenceNodeSpec.model_validate(record.body["spec"])
    moot = await registry.network_node_gone(ctx, key[0], spec)
    drained = "" if moot else await drain(loop, record, node_id)  # raises while still scheduled
    try:
        removed = await ctx.admin.delete(loop.url, node_id)
    except AdminError as exc:
        if moot:
            # The NetworkNode whose registry this is is gone or going (e.g. its namespace is
            # being deleted): its api and data go with it, so there is nothing left to clean up.
            await release(ctx, record, "DeregistrationSkipped",
                          f"NetworkNode {spec.network_node_ref.name if spec.network_node_ref else ''} is "
                          f"deleted together with its registry; {node_id} not removed from {loop.url} ({exc})")
            loop.forget(key)
            mark_claimants(loop, node_id, key)
            return
        raise RegistryProblem(Facts(False, "DeregistrationPending",
                                    f"could not remove {node_id} from {loop.url} yet: {exc}"),
                              registry.backoff(loop.retries.get(key, 0))) from exc
    if loop.snapshot is not None:
        loop.snapshot.pop(node_id, None)
    outcome = (f"removed {node_id} from {loop.url}" if removed
               else f"{node_id} was not in the registry at {loop.url}") + drained
    await release(ctx, record, "Deregistered", outcome)
    loop.forget(key)
    mark_claimants(loop, node_id, key)


async def drain(loop: RegistryLoop, record: InferenceRecord, node_id: str) -> str:
    """Drain before deregistering (disruption.drain_for): disable the entry, then raise a
    `Draining` RegistryProblem (retried at the poll interval) while the network node still
    schedules the node. Returns what the Deregistered Event adds."""
    entry = (loop.snapshot or {}).get(node_id)
    step = disruption.drain_for(loop.ctx, record, entry)  # records the epoch it disables it in
    if step.disable:
        try:
            await loop.ctx.admin.set_enabled(loop.url, node_id, False)
        except AdminNotFound:
            return " (it had gone from the registry)"
        await loop.ctx.kube.post_event(record.body, "Normal", disruption.DRAINING,
                                       f"disabled {node_id} in the registry at {loop.url} before deregistering it")
        if entry is not None and entry.state.admin_state is not None:
            entry.state.admin_state.enabled = False
    if step.done:
        return f" ({step.why})"
    if record.registration.reason != disruption.DRAINING:
        await loop.ctx.kube.post_event(record.body, "Normal", disruption.DRAINING, f"{node_id}: {step.why}")
    raise RegistryProblem(Facts(True, disruption.DRAINING, f"{node_id} is disabled; {step.why}"),
                          loop.ctx.settings.registry_poll_seconds, warn=False)


def mark_claimants(loop: RegistryLoop, node_id: str, gone: Key) -> None:
    """The owner of an id went: a CR that was refused it (IdConflict) may now register."""
    for key in list(loop.members):
        record = loop.ctx.inference.get(key)
        if key != gone and record is not None and registry.node_id_of(key, record.body) == node_id:
            loop.mark(key)


async def report_problem(ctx: Context, record: InferenceRecord, problem: RegistryProblem) -> None:
    """Registration (or deregistration) did not happen: status, and a Warning when it is news."""
    previous, record.registration = record.registration, problem.facts
    news = (previous.reason, previous.message) != (problem.facts.reason, problem.facts.message)
    if news and problem.warn:
        await ctx.kube.post_event(record.body, "Warning", problem.facts.reason, problem.facts.message)
    await inference_node.write_status(ctx, record)


async def release(ctx: Context, record: InferenceRecord, reason: str, message: str) -> None:
    """Remove our finalizer: the InferenceNode may go. KubeError propagates (retried)."""
    meta = record.body["metadata"]
    await ctx.kube.set_finalizer(record.body, FINALIZER, present=False)
    # our own write, like the snapshot after a PUT: a poll before the DELETED event must not
    # deregister it again
    meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
    event_type = "Normal" if reason == "Deregistered" else "Warning"
    await ctx.kube.post_event(record.body, event_type, reason, message)
    logger.info("Released InferenceNode %s/%s (%s): %s", meta["namespace"], meta["name"], reason, message)
