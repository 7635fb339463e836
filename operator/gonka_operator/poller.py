"""Registry feedback: one `GET nodes` per admin API per interval, fanned out to every InferenceNode.

Per interval and admin API: the entries of managed nodes go to each InferenceNode's
status.registry; managed nodes that vanished from the registry are registered again (Event
ReRegistered); entries no InferenceNode owns are listed on the NetworkNode (and left alone).
Statuses are written only when something changed (lastSeen is refreshed at most every
LAST_SEEN_REFRESH seconds, so an idle host causes no writes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime

from gonka_operator import inference_node, network_node
from gonka_operator.admin import AdminError, NodeEntry
from gonka_operator.conditions import now_rfc3339
from gonka_operator.context import Context, InferenceRecord, Key, NetworkRecord, RegistrySnapshot
from gonka_operator.metrics import DRIFT_REPAIRS, REGISTRY_NODES
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.registry import RegistryProblem, register, resolve_admin_url

logger = logging.getLogger(__name__)
LAST_SEEN_REFRESH = 600.0


def registry_block(entry: NodeEntry, previous: dict[str, object] | None, now: str) -> dict[str, object]:
    state = entry.state
    block: dict[str, object] = {
        "currentStatus": state.current_status, "intendedStatus": state.intended_status,
        "pocStatus": state.poc_current_status, "failureReason": state.failure_reason or None,
        "enabled": state.admin_state.enabled if state.admin_state else None,
    }
    block = {k: v for k, v in block.items() if v is not None}
    last_seen = (previous or {}).get("lastSeen")
    same = previous is not None and all(previous.get(k) == v for k, v in block.items()) and \
        set(previous) - {"lastSeen"} == set(block)
    if same and isinstance(last_seen, str) and _age(last_seen) < LAST_SEEN_REFRESH:
        block["lastSeen"] = last_seen
    else:
        block["lastSeen"] = now
    return block


def _age(rfc3339: str) -> float:
    try:
        then = datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - then).total_seconds()


def _groups(ctx: Context) -> tuple[dict[str, list[Key]], dict[str, list[NetworkRecord]]]:
    """InferenceNodes and NetworkNodes by the admin URL they use."""
    nodes: dict[str, list[Key]] = defaultdict(list)
    networks: dict[str, list[NetworkRecord]] = defaultdict(list)
    for key, record in ctx.inference.items():
        try:
            nodes[resolve_admin_url(ctx, key[0], InferenceNodeSpec.model_validate(record.body["spec"]))].append(key)
        except RegistryProblem:
            # Its NetworkNode is gone (e.g. deleted first, with the namespace): the entry at the URL
            # it was registered with is still its own until the finalizer removed it.
            if record.admin_url:
                nodes[record.admin_url].append(key)
    for (namespace, name), nn in ctx.network.items():
        url = ctx.settings.admin_url_for(namespace, name, (nn.endpoints or {}).get("adminURL"))
        if url:
            networks[url].append(nn)
    return nodes, networks


async def _repair(ctx: Context, key: Key, record: InferenceRecord) -> None:
    spec = InferenceNodeSpec.model_validate(record.body["spec"])
    try:
        await register(ctx, key, spec)
    except RegistryProblem as problem:
        logger.warning("Could not re-register InferenceNode %s/%s: %s", *key, problem)
        return
    DRIFT_REPAIRS.inc()
    await ctx.kube.post_event(record.body, "Warning", "ReRegistered",
                              f"{spec.node_id or key[1]} had vanished from the admin registry; registered it again")


async def _poll_admin(ctx: Context, url: str, keys: list[Key], networks: list[NetworkRecord],
                      started: float) -> tuple[int, int]:
    now = now_rfc3339()
    try:
        entries = await ctx.admin.list_nodes(url)
    except AdminError as exc:
        logger.info("Registry poll of %s failed: %s", url, exc)
        for nn in networks:
            nn.poll["adminReachable"] = False
            await network_node.write_status(ctx, nn)
        return 0, 0
    gone = {node_id for (u, node_id), at in ctx.deregistered.items() if u == url and at >= started}
    snapshot = ctx.registry[url] = RegistrySnapshot({e.node.id: e for e in entries if e.node.id not in gone}, now)
    managed_ids: set[str] = set()
    registered, failed = 0, 0
    per_network: dict[Key, list[int]] = defaultdict(lambda: [0, 0])  # registered, failed
    for key in keys:
        record = ctx.inference.get(key)
        if record is None:
            continue
        node_id = record.body["spec"].get("nodeId") or key[1]
        managed_ids.add(node_id)
        entry = snapshot.entries.get(node_id)
        if entry is not None:
            is_failed = entry.state.current_status == "FAILED"
            registered, failed = registered + 1, failed + is_failed
            ref = (record.body["spec"].get("networkNodeRef") or {}).get("name")
            if ref:
                counts = per_network[(key[0], ref)]
                counts[0], counts[1] = counts[0] + 1, counts[1] + is_failed
            record.registry = registry_block(entry, record.registry, now)
            await inference_node.write_status(ctx, record)
        elif (record.registration.ok and record.registered_at < started
              and not record.body["metadata"].get("deletionTimestamp")):
            await _repair(ctx, key, record)
    unmanaged = sorted(set(snapshot.entries) - managed_ids)
    for nn in networks:
        meta = nn.body["metadata"]
        mine = per_network[(meta["namespace"], meta["name"])]
        nn.poll = {"adminReachable": True, "registry": {"registered": mine[0], "failed": mine[1]},
                   "unmanagedNodes": unmanaged}
        await network_node.write_status(ctx, nn)
    return registered, failed


async def poll_once(ctx: Context) -> None:
    started = time.monotonic()
    for key, at in list(ctx.deregistered.items()):  # only deletions during a poll matter
        if at < started:
            del ctx.deregistered[key]
    await inference_node.wake_unhandled(ctx, started)
    nodes, networks = _groups(ctx)
    urls = sorted(set(nodes) | set(networks))
    results = await asyncio.gather(*(_poll_admin(ctx, url, nodes.get(url, []), networks.get(url, []), started)
                                     for url in urls), return_exceptions=True)
    registered = failed = 0
    for url, result in zip(urls, results, strict=True):
        if isinstance(result, BaseException):
            logger.error("Registry poll of %s crashed: %r", url, result)
            continue
        registered, failed = registered + result[0], failed + result[1]
    REGISTRY_NODES.labels(state="registered").set(registered)
    REGISTRY_NODES.labels(state="failed").set(failed)


async def run(ctx: Context) -> None:
    """Poll until cancelled (at operator cleanup). A crashed round is logged, never silenced."""
    while True:
        await asyncio.sleep(ctx.settings.registry_poll_seconds)
        try:
            await poll_once(ctx)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Registry poll round failed; next round in %s s", ctx.settings.registry_poll_seconds)
