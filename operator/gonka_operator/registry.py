"""Registration of InferenceNodes in their network node's admin registry (REFERENCE.md §4).

Rules that keep the registry exact: every change of one entry holds that entry's lock; on an admin
API that is not known to upsert (the 2025-08 generation, or one not probed yet) the current entry
comes from a fresh `GET nodes`, so an existing id is never re-POSTed (that generation would append
a duplicate to its saved config).
"""

from __future__ import annotations

import logging
import time

from gonka_operator.admin import (
    AdminNotFound,
    AdminRejected,
    AdminState,
    AdminUnavailable,
    NodeEntry,
    NodeState,
    RegisteredNode,
)
from gonka_operator.builders.inference_node import registry_config
from gonka_operator.context import Context, Key
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.status import Facts

logger = logging.getLogger(__name__)

SKIP_DEREGISTRATION = "gonka.ai/skip-deregistration"


class RegistryProblem(Exception):
    """Registration did not happen; `facts` is what the status says and `retry_after` when to retry."""

    def __init__(self, facts: Facts, retry_after: float) -> None:
        super().__init__(facts.message)
        self.facts = facts
        self.retry_after = retry_after


def resolve_admin_url(ctx: Context, namespace: str, spec: InferenceNodeSpec) -> str:
    """The admin API of this InferenceNode's network node, or RegistryProblem saying why not yet."""
    if spec.admin_url:
        return spec.admin_url
    assert spec.network_node_ref is not None, "admission requires networkNodeRef or adminURL"
    nn = spec.network_node_ref.name
    record = ctx.network.get((namespace, nn))
    if record is None:
        raise RegistryProblem(Facts(False, "NetworkNodeNotFound",
                                    f"NetworkNode {nn} does not exist in namespace {namespace}"), 15)
    in_cluster = (record.endpoints or {}).get("adminURL")
    url = ctx.settings.admin_url_for(namespace, nn, in_cluster)
    if not url:
        raise RegistryProblem(Facts(False, "NetworkNodeNotReady",
                                    f"NetworkNode {nn} has no admin URL yet"), 10)
    return url


def backoff(retry: int, base: float = 2.0, cap: float = 60.0) -> float:
    return float(min(cap, base * 2 ** min(retry, 10)))


def problem_from(exc: Exception, url: str, retry: int) -> RegistryProblem:
    if isinstance(exc, AdminRejected) and not isinstance(exc, AdminNotFound):
        # e.g. a model not approved by governance: governance lists change, so retry slowly.
        return RegistryProblem(Facts(False, "Rejected", f"admin API at {url} rejected the node: {exc}"), 300)
    return RegistryProblem(Facts(False, "AdminUnreachable", f"admin API at {url}: {exc}"), backoff(retry))


async def _current(ctx: Context, url: str, node_id: str) -> NodeEntry | None:
    if url in ctx.upsert_confirmed and url in ctx.registry:
        return ctx.registry[url].entries.get(node_id)
    return await ctx.admin.get_node(url, node_id)


def _remember(ctx: Context, url: str, node_id: str, entry: NodeEntry | None) -> None:
    """Keep the cached snapshot in step with our own writes until the next poll replaces it."""
    snapshot = ctx.registry.get(url)
    if snapshot is None:
        return
    if entry is None:
        snapshot.entries.pop(node_id, None)
    else:
        snapshot.entries[node_id] = entry


async def register(ctx: Context, key: Key, spec: InferenceNodeSpec, retry: int = 0) -> tuple[str, Facts]:
    """Make the registry hold this node exactly as specified. Returns (admin URL, Registered facts)."""
    namespace, name = key
    url = resolve_admin_url(ctx, namespace, spec)
    config = registry_config(name, namespace, spec, ctx.settings.cluster_domain)
    async with ctx.registry_lock(url, config.id):
        try:
            current = await _current(ctx, url, config.id)
            await ctx.admin.upsert(url, config, current.node if current else None)
            if ctx.admin.known_generation(url) is None:
                ctx.upsert_confirmed.add(url)
            changed = current is None or not current.node.same_config(config)
            if current is None or (changed and ctx.admin.known_generation(url) is not None):
                enabled: bool | None = True  # a freshly POSTed entry starts enabled
            else:
                enabled = current.state.admin_state.enabled if current.state.admin_state else None
            if enabled != spec.enabled:
                await ctx.admin.set_enabled(url, config.id, spec.enabled)
            state = (current.state if current else NodeState()).model_copy(
                update={"admin_state": AdminState(enabled=spec.enabled)})
            _remember(ctx, url, config.id, NodeEntry(node=RegisteredNode(**config.to_body()), state=state))
        except (AdminUnavailable, AdminRejected) as exc:
            raise problem_from(exc, url, retry) from exc
    detail = "enabled" if spec.enabled else "disabled (takes effect at the next epoch)"
    return url, Facts(True, "Registered", f"registered as {config.id} at {url}, {detail}")


async def deregister(ctx: Context, key: Key, spec: InferenceNodeSpec, last_admin_url: str | None,
                     retry: int = 0) -> str:
    """Remove the entry. `false` from the API means it was already gone: success too."""
    namespace, name = key
    try:
        url = resolve_admin_url(ctx, namespace, spec)
    except RegistryProblem:
        if not last_admin_url:
            return "the network node is gone and no admin URL was ever used: nothing to remove"
        url = last_admin_url
    node_id = spec.node_id or name
    async with ctx.registry_lock(url, node_id):
        try:
            removed = await ctx.admin.delete(url, node_id)
        except (AdminUnavailable, AdminRejected) as exc:
            raise RegistryProblem(Facts(False, "DeregistrationPending",
                                        f"could not remove {node_id} from {url} yet: {exc}"), backoff(retry)) from exc
        _remember(ctx, url, node_id, None)
        ctx.deregistered[(url, node_id)] = time.monotonic()
    return f"removed {node_id} from {url}" if removed else f"{node_id} was not in the registry at {url}"

