"""What the operator knows while it runs: shared clients and the latest view of every object.

One `Context` is created at startup and put in kopf's memo. Each fact has one writer:

* `inference` / `network` (the latest body of every CR) are written only by kopf's indexers in
  handlers.py, which kopf runs before any other handler (so nothing is handled before both kinds
  were listed) and on every event;
* the children's facts on a record (Deployment availability, pods, StatefulSet readiness, Service
  IPs, which children exist) only by drift.py's child-event handler;
* everything about one admin API (its last `GET nodes`, backoff, which InferenceNodes to sync) only
  by that admin API's `RegistryLoop` in poller.py, which also owns `registration`/`registry` of the
  records it serves. Other code only *marks* a record for that loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gonka_operator.admin import AdminClient
from gonka_operator.kube import Kube
from gonka_operator.settings import Settings
from gonka_operator.status import Facts, merge_patch

if TYPE_CHECKING:
    from gonka_operator.drift import Repairs
    from gonka_operator.poller import Registries

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
API_VERSION = "gonka.ai/v1alpha1"
PENDING = "Pending"


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
    # One reconcile of the children at a time (kopf's handler and drift repair run the same code).
    apply_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    apply_error: str | None = None  # the API server refused a desired child (condition ApplyFailed)
    children: set[tuple[str, str]] = field(default_factory=set)  # (kind, name) seen with our owner ref
    # (kind, name) -> digest of the desired object last applied successfully (children.changed): an
    # apply of the same object again is skipped; a child's drift or deletion event drops its entry.
    applied: dict[tuple[str, str], bytes] = field(default_factory=dict)


@dataclass
class InferenceRecord(Record):
    registration: Facts = field(default_factory=lambda: Facts(None, PENDING, "not registered yet"))
    admin_url: str | None = None  # where its entry was last registered (status.adminURL)
    deployment: Obj | None = None
    pods: dict[str, Obj] = field(default_factory=dict)
    jobs: dict[str, Obj] = field(default_factory=dict)  # preload Jobs by name: {"status": ...}
    preload_pods: dict[str, Obj] = field(default_factory=dict)  # their pods: {"status", "job", "created"}
    cache_progress: Obj | None = None  # the running preload pod's last progress line (fetchedBytes/Files)
    registry: Obj | None = None  # status.registry block from the last poll
    disruption: Obj = field(default_factory=dict)  # disruption.py: a held restart, the last restart
    seen_at: float = 0.0  # monotonic time of the latest watch event (see inference_node.wake_unhandled)
    handled: bool = False  # reconcile() has started for it in this process
    finalized: bool = False  # reconcile() made sure it carries our finalizer
    # inference_node.write_status: the coalesced status write waiting for the facts to pause, when it
    # is due, and when its first change came (monotonic times)
    status_task: asyncio.Task[None] | None = None
    status_due: float = 0.0
    status_since: float = 0.0


@dataclass
class NetworkRecord(Record):
    statefulset: Obj | None = None
    proxy: Obj | None = None
    service_ips: dict[str, str] = field(default_factory=dict)
    endpoints: dict[str, str] | None = None
    poll: Obj = field(default_factory=dict)  # adminReachable, registry counts, unmanagedNodes
    # host_status.HostWatch: status keys chain/epoch/weight, and the setup-report conditions (None: not read yet)
    host: Obj = field(default_factory=dict)
    host_conditions: list[Any] | None = None
    onboarding_jobs: dict[str, Obj] = field(default_factory=dict)  # warm-key/register Jobs: {"status"}
    onboarding_pods: dict[str, Obj] = field(default_factory=dict)  # their pods: {"metadata": {labels}, "status"}
    disruption: Obj = field(default_factory=dict)  # disruption.py: a held node-pod restart, the PoC window's end


@dataclass
class Context:
    settings: Settings
    kube: Kube
    admin: AdminClient
    inference: dict[Key, InferenceRecord] = field(default_factory=dict)
    network: dict[Key, NetworkRecord] = field(default_factory=dict)
    registries: Registries | None = None  # set at startup (poller.Registries)
    repairs: Repairs | None = None  # set at startup (drift.Repairs)
    # Set while this process holds the operator's Lease (lease.py); handlers wait for it.
    leader: asyncio.Event = field(default_factory=asyncio.Event)


def reportable(record: Record) -> bool:
    """Status is written only after this process reconciled the object once (observedGeneration)
    and, for an InferenceNode, once the registration's outcome is known (no intermediate write)."""
    if record.observed_generation is None:
        return False
    return not (isinstance(record, InferenceRecord) and record.registration.reason == PENDING)


async def write_status(ctx: Context, record: Record, kind: str, compute: Callable[[Any], Obj]) -> None:
    """Write `compute(record)` to the object's status if it differs from what the object shows.

    A merge patch: keys that became empty are sent as null, so they are removed (a recovered node
    loses its old failureReason)."""
    if not reportable(record):
        return
    async with record.status_lock:
        desired = compute(record)
        patch = merge_patch(record.status_written, desired)
        if not patch:
            return
        meta = record.body["metadata"]
        await ctx.kube.patch_status(API_VERSION, kind, meta["namespace"], meta["name"], patch)
        record.status_written = desired
