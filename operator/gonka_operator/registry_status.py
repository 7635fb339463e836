"""One admin-registry entry → the `status.registry` block of its InferenceNode (pure, no I/O).

What `GET /admin/v1/nodes` returns per item (REFERENCE.md §6; upstream decentralized-api
`broker.NodeResponse` and internal/server/admin/onboarding_response.go `NodeWithOnboarding`):
`{node, state {current_status, intended_status, poc_current_status, failure_reason, admin_state,
ml_node_version, epoch_ml_nodes {model: {node_id, throughput, poc_weight}}}, onboarding
{participant_state, mlnode_state, timing {current_phase, seconds_until_next_poc,
should_be_online, …}, user_message, guidance}}`.

The block is written to the CR only when it changes (the poller compares it with the last one), so
it holds no value that changes on every poll: the api's countdown `seconds_until_next_poc` becomes
the moment `nextPoCAt`, rounded to the minute, which stays put while the chain keeps its pace.
Keys whose value is unknown are left out; the poller adds `lastSeen`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gonka_operator.admin.models import NodeEntry

NEXT_POC_ROUNDING = timedelta(minutes=1)


def _drop_none(block: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in block.items() if v is not None and v != {}}


def poc_weight(entry: NodeEntry) -> int | float | None:
    """The node's PoC weight in the current epoch: the sum over its models of `poc_weight`.

    None when the api does not report `epoch_ml_nodes` (older apis, or before the first epoch);
    0 when it reports the node in no model of the epoch.
    """
    nodes = entry.state.epoch_ml_nodes
    if nodes is None:
        return None
    total: int | float = 0
    for allocation in nodes.values():
        if allocation.poc_weight is not None:
            total += allocation.poc_weight
    return total


def next_poc_at(seconds: int | None, now: datetime) -> str | None:
    if seconds is None or seconds < 0:
        return None
    at = now.astimezone(UTC) + timedelta(seconds=seconds)
    step = NEXT_POC_ROUNDING.total_seconds()
    rounded = datetime.fromtimestamp(round(at.timestamp() / step) * step, UTC)
    return rounded.strftime("%Y-%m-%dT%H:%M:%SZ")


def onboarding_block(entry: NodeEntry, now: datetime) -> dict[str, object]:
    onboarding = entry.onboarding
    if onboarding is None:
        return {}
    timing = onboarding.timing
    return _drop_none({
        "participantState": onboarding.participant_state or None,
        "mlnodeState": onboarding.mlnode_state or None,
        "phase": (timing.current_phase or None) if timing else None,
        "nextPoCAt": next_poc_at(timing.seconds_until_next_poc, now) if timing else None,
        "shouldBeOnline": timing.should_be_online if timing else None,
        "userMessage": onboarding.user_message or None,
        "guidance": onboarding.guidance or None,
    })


def registry_status(entry: NodeEntry, now: datetime | None = None) -> dict[str, object]:
    """The camelCase `status.registry` block for `entry` (without `lastSeen`).

    Keys: currentStatus, intendedStatus, pocStatus, failureReason, enabled, mlNodeVersion,
    pocWeight (sum over the models of the epoch), onboarding {participantState, mlnodeState, phase,
    nextPoCAt, shouldBeOnline, userMessage, guidance}. `now` (default: the current time) only turns
    the api's seconds-until-PoC into `nextPoCAt`.
    """
    state = entry.state
    now = now or datetime.now(UTC)
    return _drop_none({
        "currentStatus": state.current_status or None,
        "intendedStatus": state.intended_status or None,
        "pocStatus": state.poc_current_status or None,
        "failureReason": state.failure_reason or None,
        "enabled": state.admin_state.enabled if state.admin_state else None,
        "mlNodeVersion": state.ml_node_version or None,
        "pocWeight": poc_weight(entry),
        "onboarding": onboarding_block(entry, now),
    })
