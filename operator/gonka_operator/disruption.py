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

The network node's own pod (`hold_network`, called by network_node.reconcile): a change of the
StatefulSet's pod template (node, api, tmkms restart together) is held the same way while the
network node reports a PoC window or confirmation PoC: its `/v1/epochs/latest` as the host status
last read it (`status.epoch`: a PoC phase or `is_confirmation_poc_active`), or the timing of its
registry's last `GET nodes`. Applied in the Inference phase (`release_network`, after each host
read); `gonka.ai/force-update: "true"` on the NetworkNode lets it through.

Until when: the end of the window is the epoch's `poc_validation_end` block (`epoch_stages` of
`/v1/epochs/latest`); `observe_epoch` turns it into a moment, to the minute, once per window (the
seconds per block measured between two host reads, else the mainnet's ~5 s), so the message
("until ~2026-06-01T12:05Z") changes only when the window does: no status write per poll. A
confirmation PoC's end is not in that answer and is not guessed.

Drain, then deregister: drain.py (re-exported here).

Pure decisions (`window_of`, `template_changes`, `sibling_busy`, `drain_step`) plus the hooks the
workload code calls (`hold`, `released`); the state lives on `InferenceRecord.disruption`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gonka_operator import registry
from gonka_operator.admin.models import NodeEntry, OnboardingTiming
from gonka_operator.builders.common import Obj
from gonka_operator.conditions import Cond
from gonka_operator.context import Context, InferenceRecord, Key, NetworkRecord, key_of
from gonka_operator.drain import DRAINING as DRAINING  # re-exported: the poller's names
from gonka_operator.drain import FORCE_DELETE as FORCE_DELETE
from gonka_operator.drain import DrainStep as DrainStep
from gonka_operator.drain import drain_deadline as drain_deadline
from gonka_operator.drain import drain_for as drain_for
from gonka_operator.drain import drain_step as drain_step
from gonka_operator.drain import parse_duration as parse_duration

logger = logging.getLogger(__name__)

FORCE_UPDATE = "gonka.ai/force-update"
POC_PHASES = frozenset({"PoCGenerate", "PoCGenerateWindDown", "PoCValidate", "PoCValidateWindDown"})
POC_IN_PROGRESS = "PoCInProgress"
WAITING_FOR_SIBLING = "WaitingForSibling"
RESTART_BOUND = 900.0  # a sibling that is not back after 15 min no longer blocks the others
CONDITION = "UpdatePending"
NOMINAL_BLOCK_SECONDS = 5.0  # mainnet (gonka-ai/gonka genesis: ~5 s blocks) until a rate is measured


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
    deployment = next((c for c in children if c["kind"] == "Deployment"), None)
    if deployment is None:
        record.disruption.pop("held", None)
        return children
    await budget(ctx, key, record, deployment, any(c["kind"] == "PodDisruptionBudget" for c in children))
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
            nn = network_of(record.body)
            message = (f"the network node reports a {window.what} (phase {window.phase or 'unknown'}) "
                       f"{until(ctx.network.get((key[0], nn)) if nn else None, window)}: the change restarts "
                       f"the mlnode pod and is applied in the Inference phase (or now with annotation "
                       f"{FORCE_UPDATE}=true)")
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


async def budget(ctx: Context, key: Key, record: InferenceRecord, deployment: Obj, wanted: bool) -> None:
    """The PDB exists only during a PoC window (builders/pdb.py): delete the one a closed window left
    (applying the wanted one is the caller's). `record.disruption["pdb"]`: whether it exists; unknown
    after a restart, so one read then for a node that ran before (a new node has none)."""
    name = deployment["metadata"]["name"]
    present = record.disruption.get("pdb")
    if present is None and not wanted:
        present = record.deployment is not None and await ctx.kube.get(
            "policy/v1", "PodDisruptionBudget", key[0], name) is not None
    if present and not wanted:
        await ctx.kube.delete({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                               "metadata": {"namespace": key[0], "name": name}})
        record.applied.pop(("PodDisruptionBudget", name), None)  # the next window creates it again
    record.disruption["pdb"] = wanted


def condition(record: InferenceRecord | NetworkRecord, previous: list[Any]) -> Cond | None:
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
        if pdb is not None and pdb != window_for(ctx, key, record).open and ctx.repairs is not None:
            ctx.repairs.mark("InferenceNode", key)  # the window opened or closed: create or delete the PDB
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




# -- until when: the end of the PoC window ---------------------------------------------------------

def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def observe_epoch(record: NetworkRecord, epoch: Obj | None, at: float | None = None,
                  now: datetime | None = None) -> None:
    """Keep, from one `/v1/epochs/latest` read, the seconds per block (measured between reads) and,
    in a PoC window, the moment it ends: fixed the first time the window is seen (a countdown would
    change the message, and so write the status, on every poll)."""
    if not isinstance(epoch, dict) or (height := _int(epoch.get("block_height"))) is None:
        return
    at = time.monotonic() if at is None else at
    seen = record.disruption.get("height_seen")
    if seen is not None and height > seen[0] and at > seen[1]:
        record.disruption["block_seconds"] = (at - seen[1]) / (height - seen[0])
    if seen is None or height != seen[0]:
        record.disruption["height_seen"] = (height, at)
    if epoch.get("phase") not in POC_PHASES:
        record.disruption.pop("window", None)
        return
    stages = epoch.get("epoch_stages") or {}
    ident = [_int((epoch.get("latest_epoch") or {}).get("index")), _int(stages.get("poc_start"))]
    if (record.disruption.get("window") or {}).get("key") == ident:
        return
    end_block = _int(stages.get("poc_validation_end")) or _int(stages.get("set_new_validators"))
    end = None
    if end_block is not None:
        seconds = max(0, end_block - height) * record.disruption.get("block_seconds", NOMINAL_BLOCK_SECONDS)
        moment = (now or datetime.now(UTC)) + timedelta(seconds=seconds + 30)  # +30 s: to the nearest minute
        end = f"{moment.replace(second=0, microsecond=0):%Y-%m-%dT%H:%MZ}"
    record.disruption["window"] = {"key": ident, "end": end}


def until(network: NetworkRecord | None, window: Window) -> str:
    """"until ~2026-06-01T12:05Z" for the open window (see observe_epoch)."""
    if window.what == "confirmation PoC":
        return "until the confirmation PoC ends (the network node reports no end for it)"
    end = ((network.disruption.get("window") or {}).get("end")) if network is not None else None
    return f"until ~{end}" if end else "until the window ends (its end is not known yet)"


# -- the network node's own pod ----------------------------------------------------------------------

def network_window(ctx: Context, key: Key, record: NetworkRecord) -> Window:
    """The PoC window as this network node reports it: its epoch (status.epoch, host_status.py), or
    the timing of its registry's last `GET nodes`."""
    epoch = record.host.get("epoch") or {}
    phase = epoch.get("phase") if isinstance(epoch.get("phase"), str) else None
    if epoch.get("confirmationPoC"):
        return Window(True, "confirmation PoC", phase)
    if phase in POC_PHASES:
        return Window(True, "PoC window", phase)
    url = registry.network_admin_url(ctx, key)
    loop = ctx.registries.loops.get(url) if ctx.registries is not None and url else None
    polled = window_in(loop.snapshot, "") if loop is not None else NO_WINDOW
    return polled if polled.open else Window(False, "", phase)


def _network_message(record: NetworkRecord, window: Window) -> str:
    return (f"the network node reports a {window.what} (phase {window.phase or 'unknown'}) {until(record, window)}: "
            "the change restarts the node pod (node, api, tmkms) and is applied in the Inference phase "
            f"(or now with annotation {FORCE_UPDATE}=true)")


async def hold_network(ctx: Context, record: NetworkRecord, children: list[Obj]) -> list[Obj]:
    """The NetworkNode's children to apply now: without the StatefulSet when applying it would
    restart the node pod during a PoC window. Sets `record.disruption["held"]` (or removes it)."""
    sts = next((c for c in children if c["kind"] == "StatefulSet"), None)
    if sts is None:
        return children
    key = key_of(record.body)
    window = network_window(ctx, key, record)
    if not window.open and "held" not in record.disruption:
        return children  # nothing could hold it: no read
    live = await ctx.kube.get("apps/v1", "StatefulSet", key[0], sts["metadata"]["name"])
    if window.open and not forced(record.body) and template_changes(sts, live):
        message = _network_message(record, window)
        if "held" not in record.disruption:
            logger.info("Held the restart of NetworkNode %s/%s: %s", *key, message)
            await ctx.kube.post_event(record.body, "Normal", POC_IN_PROGRESS, f"update held: {message}")
        record.disruption["held"] = {"reason": POC_IN_PROGRESS, "message": message}
        return [c for c in children if c is not sts]
    if record.disruption.pop("held", None) and template_changes(sts, live):
        await ctx.kube.post_event(record.body, "Normal", "UpdateApplied",
                                  "the held change is applied now (restarting the node pod)")
    return children


def release_network(ctx: Context, key: Key, record: NetworkRecord) -> bool:
    """After a host read: a held NetworkNode change whose window is over is marked for a reconcile
    (True). While it stays held, the message follows what is known of the window's end."""
    held = record.disruption.get("held")
    if not held:
        return False
    window = network_window(ctx, key, record)
    if window.open and not forced(record.body):
        held["message"] = _network_message(record, window)
        return False
    if ctx.repairs is not None:
        ctx.repairs.mark("NetworkNode", key)
    return True
