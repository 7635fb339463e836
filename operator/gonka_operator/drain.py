"""Drain, then deregister: when may the entry of a deleted InferenceNode go?

Upstream's guidance (REFERENCE.md §8): to take an ML node out, disable it first; a disabled node
stays active until its disable epoch ends and skips the next PoC; once disabled and the epoch has
turned it is safe to stop. So the RegistryLoop (poller.py) first disables the entry; the entry and
the pod (the CR keeps its finalizer, so its children stay) remain while the network node still
schedules the node, and are released when it no longer does:

* the epoch has turned: the current epoch id (`/v1/epochs/latest` of the NetworkNode, read by
  host_status.py) is past the epoch the entry was disabled in (recorded here when the drain
  disabled it; after an operator restart, the entry's own `admin_state.epoch`, which the api sets
  on disable: decentralized-api `apiconfig.AdminState`);
* or the api's timing says `should_be_online` is false and no PoC window is open.

Bounded by `spec.drainTimeout` from the deletionTimestamp (default 2h: an epoch is 17280 blocks,
~24 h at ~5 s blocks (gonka-ai/gonka genesis/genesis.json `epoch_length`), so waiting for the turn
alone could block a delete for a day; the stretch in which a node must stay online is the lead-up to
PoC plus the PoC and validation stages, well under that). `gonka.ai/force-delete: "true"` (and
`gonka.ai/skip-deregistration`, handled by the poller before) cut it short; without timing (older
apis) there is nothing to wait for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gonka_operator.admin.models import NodeEntry

if TYPE_CHECKING:
    from gonka_operator.context import Context, InferenceRecord

Obj = dict[str, Any]
FORCE_DELETE = "gonka.ai/force-delete"
DRAINING = "Draining"


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


def drain_step(entry: NodeEntry | None, body: Obj, now: datetime | None = None, *,
               epoch: int | None = None, disabled_in: int | None = None) -> DrainStep:
    """What the deregistration of a deleted InferenceNode does next, given its entry in the last
    poll, the current epoch id and the epoch the entry was disabled in (None: unknown)."""
    from gonka_operator.disruption import window_of

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
    if not enabled and epoch is not None and disabled_in is not None and epoch > disabled_in:
        return DrainStep(False, True, f"no longer scheduled (the epoch has turned: disabled in epoch "
                                      f"{disabled_in}, now {epoch})")
    window = window_of(timing)
    if window.open or timing.should_be_online:
        until = f", at the latest until {deadline:%Y-%m-%dT%H:%M:%SZ} (drainTimeout)" if deadline else ""
        what = window.what if window.open else "should_be_online"
        turn = f", or until epoch {disabled_in} has ended" if disabled_in is not None and epoch is not None else ""
        return DrainStep(enabled, False, f"the network node still schedules it ({what}, phase "
                                         f"{timing.current_phase or 'unknown'}): the entry and the pod "
                                         f"stay{turn}{until}")
    return DrainStep(enabled, True, "no longer scheduled (should_be_online false)")


def current_epoch(ctx: Context, record: InferenceRecord) -> int | None:
    """The epoch id its NetworkNode last reported (status.epoch.id, host_status.py); None for a node
    registered through adminURL (no epoch is read for it) or before the first read."""
    from gonka_operator.disruption import network_of

    nn = network_of(record.body)
    network = ctx.network.get((record.body["metadata"]["namespace"], nn)) if nn else None
    value = ((network.host if network is not None else {}).get("epoch") or {}).get("id")
    return value if isinstance(value, int) else None


def drain_for(ctx: Context, record: InferenceRecord, entry: NodeEntry | None,
              now: datetime | None = None) -> DrainStep:
    """`drain_step` with the epochs filled in. While the entry is still enabled (the step disables
    it now), the current epoch is recorded as the epoch it was disabled in."""
    epoch = current_epoch(ctx, record)
    enabled = entry is not None and (entry.state.admin_state is None or entry.state.admin_state.enabled is not False)
    if enabled:
        if epoch is not None:
            record.disruption["drain_epoch"] = epoch
        else:
            record.disruption.pop("drain_epoch", None)
    disabled_in = record.disruption.get("drain_epoch")
    if disabled_in is None and entry is not None and not enabled and entry.state.admin_state is not None:
        disabled_in = entry.state.admin_state.epoch  # recorded by the api on disable (after a restart)
    return drain_step(entry, record.body, now, epoch=epoch, disabled_in=disabled_in)
