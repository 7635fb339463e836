"""What the operator knows while it runs: shared clients and the latest view of every object.

One `Context` is created at startup and put in kopf's memo. Watch events keep the records current,
so handlers, drift repair and the registry poller read memory instead of asking the API server.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gonka_operator.admin import AdminClient, NodeEntry
from gonka_operator.kube import Kube
from gonka_operator.settings import Settings
from gonka_operator.status import Facts, changed

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
API_VERSION = "gonka.ai/v1alpha1"


def key_of(body: Any) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


@dataclass
class Record:
    """What all records share: the latest body and the status we last wrote (or saw)."""

    body: Obj
    observed_generation: int | None = None
    status_written: Obj | None = None
    # One status write at a time per object: concurrent child events must not both write.
    status_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class InferenceRecord(Record):
    registration: Facts = field(default_factory=lambda: Facts(None, "Pending", "not registered yet"))
    admin_url: str | None = None
    deployment: Obj | None = None
    pods: dict[str, Obj] = field(default_factory=dict)
    registry: Obj | None = None  # status.registry block from the last poll
    registered_at: float = 0.0  # monotonic time of our last successful registration
    seen_at: float = 0.0  # monotonic time of the latest watch event (see inference_node.wake_unhandled)
    handled: bool = False  # reconcile() has started for it in this process


@dataclass
class NetworkRecord(Record):
    statefulset: Obj | None = None
    proxy: Obj | None = None
    service_ips: dict[str, str] = field(default_factory=dict)
    apply_error: str | None = None
    endpoints: dict[str, str] | None = None
    poll: Obj = field(default_factory=dict)  # adminReachable, registry counts, unmanagedNodes


@dataclass
class RegistrySnapshot:
    """The last `GET nodes` of one admin API."""

    entries: dict[str, NodeEntry]
    taken_at: str


@dataclass
class Context:
    settings: Settings
    kube: Kube
    admin: AdminClient
    inference: dict[Key, InferenceRecord] = field(default_factory=dict)
    network: dict[Key, NetworkRecord] = field(default_factory=dict)
    registry: dict[str, RegistrySnapshot] = field(default_factory=dict)
    # Admin APIs that accepted a PUT: the latest generation, where an upsert is safe without a GET.
    upsert_confirmed: set[str] = field(default_factory=set)
    # (admin URL, node id) → monotonic time we deleted it: a poll whose GET was already under way
    # must not show that entry (as "unmanaged": its InferenceNode is gone by then).
    deregistered: dict[tuple[str, str], float] = field(default_factory=dict)
    _locks: defaultdict[tuple[str, str], asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    def registry_lock(self, admin_url: str, node_id: str) -> asyncio.Lock:
        """Serialises every change of one registry entry (handler retries and the poller's repairs)."""
        return self._locks[(admin_url, node_id)]


async def write_status(ctx: Context, record: Record, kind: str, compute: Callable[[Any], Obj]) -> None:
    """Write `compute(record)` to the object's status if it differs from what the object shows.

    Nothing is written before this process reconciled the object once (observedGeneration).
    """
    if record.observed_generation is None:
        return
    async with record.status_lock:
        desired = compute(record)
        if not changed(record.status_written, desired):
            return
        meta = record.body["metadata"]
        await ctx.kube.patch_status(API_VERSION, kind, meta["namespace"], meta["name"], desired)
        record.status_written = desired
