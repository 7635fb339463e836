"""What the operator knows while it runs: shared clients and the latest view of every object.

One `Context` is created at startup and put in kopf's memo. Watch events keep the records current,
so handlers, drift repair and the registry poller read memory instead of asking the API server.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from gonka_operator.admin import AdminClient, NodeEntry
from gonka_operator.kube import Kube
from gonka_operator.settings import Settings
from gonka_operator.status import Facts

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)


def key_of(body: Any) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


@dataclass
class InferenceRecord:
    body: Obj
    observed_generation: int | None = None
    registration: Facts = field(default_factory=lambda: Facts(None, "Pending", "not registered yet"))
    admin_url: str | None = None
    deployment: Obj | None = None
    pods: dict[str, Obj] = field(default_factory=dict)
    registry: Obj | None = None  # status.registry block from the last poll
    registered_at: float = 0.0  # monotonic time of our last successful registration
    status_written: Obj | None = None  # last status we wrote (or saw on the object)


@dataclass
class NetworkRecord:
    body: Obj
    observed_generation: int | None = None
    statefulset: Obj | None = None
    proxy: Obj | None = None
    service_ips: dict[str, str] = field(default_factory=dict)
    apply_error: str | None = None
    endpoints: dict[str, str] | None = None
    poll: Obj = field(default_factory=dict)  # adminReachable, registry counts, unmanagedNodes
    status_written: Obj | None = None


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
    _locks: defaultdict[tuple[str, str], asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    def registry_lock(self, admin_url: str, node_id: str) -> asyncio.Lock:
        """Serialises every change of one registry entry (handler retries and the poller's repairs)."""
        return self._locks[(admin_url, node_id)]
