"""PoC-aware disruption of ML pods: when may the operator restart an ML node's pod?

Upstream's guidance (REFERENCE.md §8, gonka-ai/gonka docs "host/upgrades": never update during PoC
or confirmation PoC, one machine at a time): a node restarted during a PoC window loses that
epoch's weight. So a change that would restart a serving ML pod (its pod template differs from the
live Deployment's: a spec edit, an image bump, putting back a template someone edited) is *held*:

* while the network node reports a PoC window or a confirmation PoC (the last `GET nodes` of the
  node's admin API, polled by its RegistryLoop: `onboarding.timing.in_poc_window`,
  `confirmation_poc_active`, or a `current_phase` of the PoC stages). Reason `PoCInProgress`.
* while another ML node of the same NetworkNode is being restarted (its rollout is not complete, or,
  when it was in INFERENCE before, the network node does not report it back in INFERENCE yet; at
  most RESTART_BOUND seconds). Reason `WaitingForSibling`.

A held change is simply not applied: the Deployment keeps its live template (never deleted, never
scaled), everything else (Service, NetworkPolicy, registry config) is applied as usual. The CR
says `UpdatePending=True` with the reason. After each poll the loop re-checks the held nodes and
marks those that may go now for a reconcile (`released`), which applies the change.

`gonka.ai/force-update: "true"` lets any change through at once. Nothing is held when the timing is
unknown (the api does not report it, or the node is not registered: an unregistered node has no
PoC weight to lose).

Drain, then deregister (`drain_step`, called by the RegistryLoop for an InferenceNode being deleted):
the entry is first disabled in the registry; the entry and the pod (the CR keeps its finalizer, so
its children stay) remain while the network node still schedules the node: its timing says
`should_be_online` or a PoC window is open. Then the entry is deleted and the finalizer released.
Bounded by `spec.drainTimeout` from the deletionTimestamp (default 2h: an epoch is 17280 blocks,
~24 h at ~5 s blocks (gonka-ai/gonka genesis/genesis.json `epoch_length`), so waiting for the turn
could block a delete for a day; the stretch in which a node must stay online is the lead-up to PoC
plus the PoC and validation stages, well under that). `gonka.ai/force-delete: "true"` (and
`gonka.ai/skip-deregistration`, handled before) cut it short; without timing (older apis) there is
nothing to wait for.

Pure decisions (`window_of`, `template_changes`, `sibling_busy`, `drain_step`) plus the hooks the
workload code calls (`hold`, `released`); the state lives on `InferenceRecord.disruption`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gonka_operator import registry
from gonka_operator.admin.models import NodeEntry, OnboardingTiming
from gonka_operator.builders.common import Obj
from gonka_operator.conditions import Cond
from gonka_operator.context import Context, InferenceRecord, Key

logger = logging.getLogger(__name__)

FORCE_UPDATE = "gonka.ai/force-update"
FORCE_DELETE = "gonka.ai/force-delete"
DRAINING = "Draining"
POC_PHASES = frozenset({"PoCGenerate", "PoCGenerateWindDown", "PoCValidate", "PoCValidateWindDown"})
POC_IN_PROGRESS = "PoCInProgress"
WAITING_FOR_SIBLING = "WaitingForSibling"
RESTART_BOUND = 900.0  # a sibling that is not back after 15 min no longer blocks the others
CONDITION = "UpdatePending"


@dataclass(frozen=True)
class Window:
    """What the network node last said about PoC: `open` when a restart would cost weight."""

    open: bool
    what: str = ""  # "PoC window" | "confirmation PoC"
    phase: str | None = None


NO_WINDOW = Window(False)


def window_of(timing: OnboardingTiming | None) -> Window:
    """The PoC window as the api's `onboarding.timing` reports it (None: unknown, so not open)."""
    if timing is None:
        return NO_WINDOW
    if timing.confirmation_poc_active:
        return Window(True, "confirmation PoC", timing.current_phase)
    if timing.in_poc_window or (timing.current_phase in POC_PHASES):
        return Window(True, "PoC window", timing.current_phase)
    return Window(False, "", timing.current_phase)


def window_in(snapshot: dict[str, NodeEntry] | None, node_id: str) -> Window:
    """The window from a poll: the node's own entry, else any entry's (one chain clock per api)."""
    if not snapshot:
        return NO_WINDOW
    own = snapshot.get(node_id)
    entries = [own] if own is not None and own.onboarding and own.onboarding.timing else []
    entries += [e for e in snapshot.values() if e.onboarding and e.onboarding.timing]
    for entry in entries[:1]:
        assert entry.onboarding is not None
        return window_of(entry.onboarding.timing)
    return NO_WINDOW


def window_for(ctx: Context, key: Key, record: InferenceRecord) -> Window:
    if ctx.registries is None or record.admin_url is None or not record.registration.ok:
        return NO_WINDOW
    loop = ctx.registries.loops.get(record.admin_url)
    if loop is None:
        return NO_WINDOW
    return window_in(loop.snapshot, registry.node_id_of(key, record.body))


def forced(body: Obj) -> bool:
    return (body["metadata"].get("annotations") or {}).get(FORCE_UPDATE) == "true"


def template_changes(desired: Obj, live: Obj | None) -> bool:
    """Would applying `desired` restart the pod of `live`? Only for a live Deployment that runs a
    pod (replicas >= 1) and whose pod template no longer contains the desired one."""
    from gonka_operator.drift import is_subset  # drift imports the workload modules

    if live is None or ((live.get("spec") or {}).get("replicas") or 0) < 1:
        return False
    return not is_subset(desired["spec"]["template"], (live.get("spec") or {}).get("template"))


def rollout_done(record: InferenceRecord) -> bool:
    """The restart this operator applied last is over: the Deployment observed the new generation,
    its pods are updated and available, and the network node reports the node in INFERENCE again."""
    started = record.disruption.get("restarted")
    if started is None:
        return True
    if time.monotonic() - started["at"] > RESTART_BOUND:
        return True
    dep = record.deployment or {}
    status = dep.get("status") or {}
    replicas = dep.get("replicas") or 0
    if (status.get("observedGeneration") or 0) < started["generation"]:
        return False
    if (status.get("updatedReplicas") or 0) < replicas or (status.get("availableReplicas") or 0) < replicas:
        return False
    if (status.get("replicas") or 0) > replicas:  # the old pod is still terminating
        return False
    if not started.get("was_inference"):  # it was not serving before (e.g. FAILED): the rollout is enough
        return True
    current = (record.registry or {}).get("currentStatus")
    return not (record.registration.ok and current is not None and current != "INFERENCE")


def network_of(body: Obj) -> str | None:
    ref = (body.get("spec") or {}).get("networkNodeRef") or {}
    name = ref.get("name") if isinstance(ref, dict) else None
    return str(name) if name else None


def siblings(ctx: Context, key: Key, record: InferenceRecord) -> Iterable[tuple[Key, InferenceRecord]]:
    nn = network_of(record.body)
    if nn is None:
        return []
    return [(k, r) for k, r in list(ctx.inference.items())
            if k != key and k[0] == key[0] and network_of(r.body) == nn]


def sibling_busy(ctx: Context, key: Key, record: InferenceRecord) -> Key | None:
    """Another ML node of the same NetworkNode whose restart is not over, or None."""
    for other_key, other in siblings(ctx, key, record):
        if not rollout_done(other):
            return other_key
    return None


_LOCKS: dict[tuple[int, str, str], asyncio.Lock] = {}


def _network_lock(ctx: Context, key: Key, record: InferenceRecord) -> asyncio.Lock:
    """One restart decision at a time per NetworkNode (the repair worker reconciles in parallel)."""
    nn = network_of(record.body) or f"/{key[1]}"
    return _LOCKS.setdefault((id(ctx), key[0], nn), asyncio.Lock())


async def hold(ctx: Context, key: Key, record: InferenceRecord, children: list[Obj]) -> list[Obj]:
    """The children to apply now: `children`, without the ML Deployment when applying it would
    restart the serving pod and that is not allowed now. Sets `record.disruption["held"]` to the
    reason (or removes it), and `["restarted"]` when it lets a restart through."""
    pdb = next((c for c in children if c["kind"] == "PodDisruptionBudget"), None)
    if pdb is not None:
        record.disruption["pdb"] = pdb["spec"]["maxUnavailable"]
    deployment = next((c for c in children if c["kind"] == "Deployment"), None)
    if deployment is None:
        record.disruption.pop("held", None)
        return children
    window = window_for(ctx, key, record)
    has_siblings = bool(list(siblings(ctx, key, record)))
    if not window.open and not has_siblings and "held" not in record.disruption:
        return children  # nothing could hold it: no read
    async with _network_lock(ctx, key, record):
        live = await ctx.kube.get("apps/v1", "Deployment", key[0], deployment["metadata"]["name"])
        if not template_changes(deployment, live):
            record.disruption.pop("held", None)
            return children
        reason = message = None
        if forced(record.body):
            pass
        elif window.open:
            reason = POC_IN_PROGRESS
            message = (f"the network node reports a {window.what} (phase {window.phase or 'unknown'}): "
                       "the change restarts the mlnode pod and is applied in the Inference phase "
                       f"(or now with annotation {FORCE_UPDATE}=true)")
        else:
            busy = sibling_busy(ctx, key, record)
            if busy is not None:
                reason = WAITING_FOR_SIBLING
                message = (f"InferenceNode {busy[1]} of the same NetworkNode is being restarted: one ML node "
                           "at a time, this one follows when that one is back in INFERENCE")
        if reason is not None:
            if (record.disruption.get("held") or {}).get("reason") != reason:
                logger.info("Held the restart of InferenceNode %s/%s: %s", *key, message)
                await ctx.kube.post_event(record.body, "Normal", reason, f"update held: {message}")
            record.disruption["held"] = {"reason": reason, "message": message}
            return [c for c in children if c is not deployment]
        was_held = record.disruption.pop("held", None)
        generation = ((live or {}).get("metadata") or {}).get("generation") or 0
        record.disruption["restarted"] = {
            "at": time.monotonic(), "generation": generation + 1,
            "was_inference": (record.registry or {}).get("currentStatus") == "INFERENCE"}
        if was_held:
            await ctx.kube.post_event(record.body, "Normal", "UpdateApplied",
                                      "the held change is applied now (restarting the mlnode pod)")
        return children


def condition(record: InferenceRecord, previous: list[Any]) -> Cond | None:
    """UpdatePending: True while held; False once applied (only when it was shown before)."""
    held = record.disruption.get("held")
    if held:
        return Cond(CONDITION, True, held["reason"], held["message"])
    if any(c.get("type") == CONDITION for c in previous or []):
        return Cond(CONDITION, False, "UpToDate", "no change is held")
    return None


def released(ctx: Context, keys: Iterable[Key]) -> list[Key]:
    """After a poll: the held nodes among `keys` that may go now, marked for a reconcile (returned);
    so are those whose PodDisruptionBudget no longer matches the window (builders/pdb.py)."""
    out = []
    for key in keys:
        record = ctx.inference.get(key)
        if record is None:
            continue
        pdb = record.disruption.get("pdb")
        if pdb is not None and (pdb == 0) != window_for(ctx, key, record).open and ctx.repairs is not None:
            ctx.repairs.mark("InferenceNode", key)  # the window opened or closed: tighten or loosen the PDB
        if not record.disruption.get("held"):
            continue
        if window_for(ctx, key, record).open and not forced(record.body):
            continue
        if sibling_busy(ctx, key, record) is not None and not forced(record.body):
            continue
        out.append(key)
        if ctx.repairs is not None:
            ctx.repairs.mark("InferenceNode", key)
    return out


# -- drain, then deregister ------------------------------------------------------------------------

def parse_duration(text: str) -> timedelta:
    """"2h", "90m", "1h30m", "45s" (spec.drainTimeout; the CRD's pattern admits nothing else)."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text or "")
    if not match or not text:
        raise ValueError(f"not a duration: {text!r}")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def drain_deadline(body: Obj) -> datetime | None:
    stamp = body["metadata"].get("deletionTimestamp")
    if not stamp:
        return None
    try:
        since = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        timeout = parse_duration(str((body.get("spec") or {}).get("drainTimeout") or "2h"))
    except ValueError:
        return None
    return since + timeout


@dataclass(frozen=True)
class DrainStep:
    disable: bool  # the entry is still enabled: disable it first
    done: bool  # it may be deleted now
    why: str


def drain_step(entry: NodeEntry | None, body: Obj, now: datetime | None = None) -> DrainStep:
    """What the deregistration of a deleted InferenceNode does next, given its entry in the last poll."""
    if entry is None:
        return DrainStep(False, True, "not in the registry")
    enabled = entry.state.admin_state is None or entry.state.admin_state.enabled is not False
    if (body["metadata"].get("annotations") or {}).get(FORCE_DELETE) == "true":
        return DrainStep(False, True, f"annotation {FORCE_DELETE}=true: not drained")
    timing = entry.onboarding.timing if entry.onboarding else None
    if timing is None:
        return DrainStep(False, True, "the api reports no schedule: nothing to wait for")
    deadline = drain_deadline(body)
    now = now or datetime.now(UTC)
    if deadline is not None and now >= deadline:
        return DrainStep(enabled, True, "drainTimeout passed while it was still scheduled")
    window = window_of(timing)
    if window.open or timing.should_be_online:
        until = f", at the latest until {deadline:%Y-%m-%dT%H:%M:%SZ} (drainTimeout)" if deadline else ""
        what = window.what if window.open else "should_be_online"
        return DrainStep(enabled, False, f"the network node still schedules it ({what}, phase "
                                         f"{timing.current_phase or 'unknown'}): the entry and the pod stay{until}")
    return DrainStep(enabled, True, "no longer scheduled (should_be_online false)")
