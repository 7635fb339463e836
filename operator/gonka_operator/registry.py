"""The rules of one registry entry (REFERENCE.md §4): what it should hold, who may write it, and the
admin-API calls that make it so. No state of its own: poller.RegistryLoop, the one writer of each
admin API, calls these with what it knows.

Rules that keep the registry exact:
* one writer per admin API (its RegistryLoop), and that writer never lets a `GET nodes` overlap
  its own writes, so its snapshot is exact up to edits by others;
* on an admin API not known to upsert (the 2025-08 generation, or one where no PUT of ours has
  succeeded yet) the snapshot a write relies on is a fresh `GET`, so an existing id is never
  re-POSTed (that generation would append a duplicate to its saved config);
* one id, one CR: the oldest CR that claims an id at an admin API owns it; the others get
  `IdConflict` and never write.
"""

from __future__ import annotations

from dataclasses import dataclass

from gonka_operator.admin import (
    AdminClient,
    AdminNotFound,
    AdminRejected,
    AdminState,
    InferenceNodeConfig,
    NodeEntry,
    NodeState,
    RegisteredNode,
)
from gonka_operator.builders.inference_node import registry_config
from gonka_operator.context import API_VERSION, Context, InferenceRecord, Key
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.status import Facts, statefulset_ready

SKIP_DEREGISTRATION = "gonka.ai/skip-deregistration"
FINALIZER = "gonka.ai/registry-cleanup"


class RegistryProblem(Exception):
    """Registration did not happen; `facts` is what the status says and `retry_after` when to retry."""

    def __init__(self, facts: Facts, retry_after: float, warn: bool = True) -> None:
        super().__init__(facts.message)
        self.facts = facts
        self.retry_after = retry_after
        self.warn = warn  # post a Warning Event (False for "not yet", e.g. the api still syncing)


def backoff(retry: int, base: float = 2.0, cap: float = 60.0) -> float:
    return float(min(cap, base * 2 ** min(retry, 10)))


def node_id_of(key: Key, body: dict[str, object]) -> str:
    spec = body.get("spec") or {}
    node_id = spec.get("nodeId") if isinstance(spec, dict) else None
    return str(node_id or key[1])


async def network_node_gone(ctx: Context, namespace: str, spec: InferenceNodeSpec) -> bool:
    """The NetworkNode that owns this node's registry is being deleted or confirmed absent (adminURL
    mode: never). Not being in the index proves nothing: right after a start the index may not
    have listed it yet, so then the API is asked (None only on 404; other errors propagate, retried)."""
    if spec.network_node_ref is None:
        return False
    name = spec.network_node_ref.name
    nn = ctx.network.get((namespace, name))
    body = nn.body if nn is not None else await ctx.kube.get(API_VERSION, "NetworkNode", namespace, name)
    return body is None or bool(body["metadata"].get("deletionTimestamp"))


def resolve_admin_url(ctx: Context, namespace: str, spec: InferenceNodeSpec) -> str:
    """The admin API of this InferenceNode's network node, or RegistryProblem saying why not yet.

    A NetworkNode's admin API is used once its node/api pod is Ready: before that (the api syncs
    the chain, possibly for hours) the node is `NetworkNodeNotReady`, not `AdminUnreachable`."""
    if spec.admin_url:
        return spec.admin_url
    assert spec.network_node_ref is not None, "admission requires networkNodeRef or adminURL"
    nn = spec.network_node_ref.name
    record = ctx.network.get((namespace, nn))
    if record is None or record.body["metadata"].get("deletionTimestamp"):
        raise RegistryProblem(Facts(False, "NetworkNodeNotFound",
                                    f"NetworkNode {nn} does not exist in namespace {namespace}"), 30)
    in_cluster = (record.endpoints or {}).get("adminURL")
    url = ctx.settings.admin_url_for(namespace, nn, in_cluster)
    if not url or not statefulset_ready(record.statefulset):
        raise RegistryProblem(Facts(None, "NetworkNodeNotReady",
                                    f"NetworkNode {nn}: waiting for its node/api pod to become Ready"), 30,
                              warn=False)
    return url


def network_admin_url(ctx: Context, key: Key) -> str | None:
    """The admin URL a NetworkNode's registry is polled at (readiness aside)."""
    record = ctx.network.get(key)
    if record is None:
        return None
    return ctx.settings.admin_url_for(key[0], key[1], (record.endpoints or {}).get("adminURL"))


def problem_from(exc: Exception, url: str, retry: int) -> RegistryProblem:
    if isinstance(exc, AdminRejected) and not isinstance(exc, AdminNotFound):
        # e.g. a model not approved by governance: governance lists change, so retry slowly.
        return RegistryProblem(Facts(False, "Rejected", f"admin API at {url} rejected the node: {exc}"), 300)
    return RegistryProblem(Facts(False, "AdminUnreachable", f"admin API at {url}: {exc}"), backoff(retry))


def desired_config(key: Key, spec: InferenceNodeSpec, cluster_domain: str) -> InferenceNodeConfig:
    return registry_config(key[1], key[0], spec, cluster_domain)


def content_drift(entry: NodeEntry, config: InferenceNodeConfig, enabled: bool) -> str | None:
    """What differs between the registry's entry and the CR (None: nothing)."""
    if not entry.node.same_config(config):
        have, want = entry.node.to_body(), config.to_body()
        fields = sorted(k for k in want if have.get(k) != want[k])
        return "entry differs from the spec in " + ", ".join(fields)
    admin = entry.state.admin_state
    if admin is not None and admin.enabled is not None and admin.enabled != enabled:
        return f"entry is {'enabled' if admin.enabled else 'disabled'}, the spec says enabled={enabled}"
    return None


def id_owner(ctx: Context, url: str, node_id: str, claimants: list[Key]) -> Key:
    """Of the CRs that claim `node_id` at `url`, the one that owns it: the oldest (creation time,
    then namespace/name), which after a restart is the same one as before."""
    def age(key: Key) -> tuple[str, Key]:
        record = ctx.inference.get(key)
        created = str(record.body["metadata"].get("creationTimestamp", "")) if record else "~"
        return created, key
    return min(claimants, key=age)


def conflict_problem(owner: Key, node_id: str, url: str) -> RegistryProblem:
    return RegistryProblem(Facts(False, "IdConflict",
                                 f"registry id {node_id} at {url} belongs to InferenceNode {owner[0]}/{owner[1]}; "
                                 "set a distinct spec.nodeId"), 60)


@dataclass
class Written:
    entry: NodeEntry  # what the registry holds now (to keep the snapshot in step)
    put_succeeded: bool  # a PUT of ours was accepted: the api upserts (latest generation)
    changed: bool  # anything was sent


async def register(admin: AdminClient, url: str, config: InferenceNodeConfig, enabled: bool,
                   current: NodeEntry | None) -> Written:
    """Make the entry equal `config` and `enabled`, given what the registry holds now (`current`
    must be exact on a 2025-08 api: see the module docstring). Admin errors propagate."""
    legacy_before = admin.known_generation(url) is not None
    sent = current is None or not current.node.same_config(config)
    await admin.upsert(url, config, current.node if current else None)
    legacy = admin.known_generation(url) is not None
    put_ok = sent and not legacy and not legacy_before
    if current is None or (sent and legacy):
        was_enabled: bool | None = True  # a freshly POSTed entry starts enabled
    else:
        was_enabled = current.state.admin_state.enabled if current.state.admin_state else None
    toggled = was_enabled != enabled
    if toggled:
        await admin.set_enabled(url, config.id, enabled)
    state = (current.state if current else NodeState()).model_copy(
        update={"admin_state": AdminState(enabled=enabled)})
    return Written(NodeEntry(node=RegisteredNode(**config.to_body()), state=state), put_ok, sent or toggled)


def registered_facts(record: InferenceRecord, config: InferenceNodeConfig, url: str, enabled: bool) -> Facts:
    detail = "enabled" if enabled else "disabled (takes effect at the next epoch)"
    return Facts(True, "Registered", f"registered as {config.id} at {url}, {detail}")
