"""status.registry of one InferenceNode, from one entry of its admin API's `GET nodes` (the registry
poll, poller.RegistryLoop): written only when something changed, so an idle host causes no writes —
lastSeen is refreshed at most every LAST_SEEN_REFRESH seconds, and the api's PoC countdown becomes a
moment that moves only when the estimate really changes."""

from __future__ import annotations

from datetime import UTC, datetime

from gonka_operator.admin import NodeEntry
from gonka_operator.registry_status import registry_status

LAST_SEEN_REFRESH = 600.0


def registry_block(entry: NodeEntry, previous: dict[str, object] | None, now: str,
                   at: datetime | None = None) -> dict[str, object]:
    """status.registry of one entry; lastSeen moves only when something else changed, or every
    LAST_SEEN_REFRESH seconds."""
    at = at or datetime.now(UTC)
    block = registry_status(entry, at)
    _keep_next_poc_estimate(block, previous, at)
    last_seen = (previous or {}).get("lastSeen")
    same = previous is not None and all(previous.get(k) == v for k, v in block.items()) and \
        set(previous) - {"lastSeen"} == set(block)
    if same and isinstance(last_seen, str) and _age(last_seen) < LAST_SEEN_REFRESH:
        block["lastSeen"] = last_seen
    else:
        block["lastSeen"] = now
    return block


NEXT_POC_TOLERANCE = 120.0  # seconds, or a tenth of the time left when that is more


def _keep_next_poc_estimate(block: dict[str, object], previous: dict[str, object] | None, at: datetime) -> None:
    """`nextPoCAt` is the api's countdown turned into a moment; when blocks come slower or faster
    than the api assumes (or the chain halts), that moment drifts with wall time, and a status
    write every minute of every node would follow. Keep the previous moment while the new estimate
    stays within NEXT_POC_TOLERANCE (or a tenth of the time left) of it."""
    onboarding, before = block.get("onboarding"), (previous or {}).get("onboarding")
    if not isinstance(onboarding, dict) or not isinstance(before, dict):
        return
    new, old = _parse(onboarding.get("nextPoCAt")), _parse(before.get("nextPoCAt"))
    if new is None or old is None:
        return
    left = max(0.0, (new - at).total_seconds())
    if abs((new - old).total_seconds()) <= max(NEXT_POC_TOLERANCE, left / 10):
        onboarding["nextPoCAt"] = before["nextPoCAt"]


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _age(rfc3339: str) -> float:
    try:
        then = datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - then).total_seconds()
