"""lease.LeaderElection against a small in-memory Lease store (optimistic concurrency as the API
server does it: a PUT with an old resourceVersion is a 409)."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from gonka_operator.kube import KubeError
from gonka_operator.lease import LeaderElection


class LeaseStore:
    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.lease)

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.lease is not None:
            raise KubeError(409, "exists")
        self.version += 1
        self.lease = {**copy.deepcopy(obj), "metadata": {**obj["metadata"], "resourceVersion": str(self.version)}}
        return self.lease

    async def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        assert self.lease is not None
        if obj["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise KubeError(409, "conflict")
        self.version += 1
        self.lease = {**copy.deepcopy(obj), "metadata": {**obj["metadata"], "resourceVersion": str(self.version)}}
        return self.lease


def election(store: LeaseStore, me: str) -> LeaderElection:
    return LeaderElection(store, "ns", "gonka-operator", asyncio.Event(), duration=15, me=me)  # type: ignore[arg-type]


async def test_one_holder_renewals_and_takeover_after_expiry() -> None:
    store = LeaseStore()
    a, b = election(store, "a"), election(store, "b")
    assert await a.try_acquire() and not await b.try_acquire()
    assert await a.try_acquire()  # renewal
    assert store.lease and store.lease["spec"]["holderIdentity"] == "a"
    old = (datetime.now(UTC) - timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    store.lease["spec"]["renewTime"] = old  # a stopped renewing 20 s ago
    assert await b.try_acquire() and not await a.try_acquire()
    assert store.lease["spec"]["holderIdentity"] == "b" and store.lease["spec"]["leaseTransitions"] == 1


async def test_release_hands_over_at_once() -> None:
    store = LeaseStore()
    a, b = election(store, "a"), election(store, "b")
    assert await a.try_acquire()
    a.leader.set()
    await a.release()
    assert not a.leader.is_set() and await b.try_acquire()


async def test_a_holder_that_cannot_renew_pauses_and_comes_back() -> None:
    class Down(LeaseStore):
        down = False

        async def get(self, *args: Any) -> dict[str, Any] | None:
            if self.down:
                raise KubeError(0, "connection refused")
            return await super().get(*args)

    store = Down()
    a = LeaderElection(store, "ns", "l", asyncio.Event(), duration=0.3, me="a")  # type: ignore[arg-type]
    a.start()
    await asyncio.wait_for(a.leader.wait(), 2)
    store.down = True
    for _ in range(100):
        await asyncio.sleep(0.02)
        if not a.leader.is_set():
            break
    assert not a.leader.is_set()  # paused, not acting
    store.down = False
    await asyncio.wait_for(a.leader.wait(), 2)  # nobody else took it: back
    await a.release()


async def test_every_acquisition_is_announced() -> None:
    """Each time this process becomes the active operator (first, and again after a pause) it calls
    `on_acquired` (drift.Repairs.reapply_all: what it applied before the pause proves nothing now)."""
    store = LeaseStore()
    calls: list[str] = []
    a = LeaderElection(store, "ns", "gonka-operator", asyncio.Event(), duration=0.3, me="a",  # type: ignore[arg-type]
                       on_acquired=lambda: calls.append("a"))
    a.start()
    for _ in range(50):
        await asyncio.sleep(0.02)
        if a.leader.is_set():
            break
    assert calls == ["a"]
    b = election(store, "b")
    assert store.lease is not None
    store.lease["spec"]["renewTime"] = "2000-01-01T00:00:00.000000Z"  # a pause: "b" takes it over
    assert await b.try_acquire()
    for _ in range(100):
        await asyncio.sleep(0.02)
        if not a.leader.is_set():
            break
    assert not a.leader.is_set()
    store.lease["spec"]["renewTime"] = "2000-01-01T00:00:00.000000Z"  # "b" went away
    for _ in range(200):
        await asyncio.sleep(0.02)
        if a.leader.is_set():
            break
    assert a.leader.is_set() and calls == ["a", "a"]
    assert a.task is not None
    a.task.cancel()
