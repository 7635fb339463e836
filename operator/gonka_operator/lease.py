"""One active operator at a time: a coordination.k8s.io Lease, as controller-runtime's leader
election does (kopf's peering pauses only operators of *lower* priority, and needs its own CRDs).

The operator starts its watches at once (its indexes fill, its liveness endpoint answers) but its
handlers, registry loops and drift repairs wait for `ctx.leader`. The holder renews the Lease every
`duration / 3` seconds; a standby takes it over once it has not been renewed for `duration`
seconds, or at once when the holder released it at shutdown. A holder that cannot renew within
`duration` (a partitioned node; the API server restarting) pauses — it must not act next to a new
holder — and competes for the Lease again like a standby (it gets it back if nobody else took it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gonka_operator.kube import Kube, KubeError

logger = logging.getLogger(__name__)
API_VERSION = "coordination.k8s.io/v1"


def _now() -> datetime:
    return datetime.now(UTC)


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class LeaderElection:
    def __init__(self, kube: Kube, namespace: str, name: str, leader: asyncio.Event,
                 duration: float = 15.0, me: str | None = None,
                 on_acquired: Callable[[], object] | None = None) -> None:
        self.kube, self.namespace, self.name, self.leader = kube, namespace, name, leader
        self.on_acquired = on_acquired  # called at each acquisition, before `leader` is set
        self.duration = duration
        self.me = me or identity()
        self.task: asyncio.Task[None] | None = None

    def _spec(self, lease: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
        spec = dict((lease or {}).get("spec") or {})
        if spec.get("holderIdentity") != self.me:
            spec["acquireTime"] = _micro(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if lease else 0)
        spec.update(holderIdentity=self.me, leaseDurationSeconds=int(self.duration), renewTime=_micro(now))
        return spec

    async def try_acquire(self) -> bool:
        """One attempt to take or renew the Lease. True when this process holds it now."""
        now = _now()
        lease = await self.kube.get(API_VERSION, "Lease", self.namespace, self.name)
        if lease is None:
            body = {"apiVersion": API_VERSION, "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace}, "spec": self._spec(None, now)}
            try:
                await self.kube.create(body)
            except KubeError as exc:
                if exc.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = float(spec.get("leaseDurationSeconds") or self.duration)
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if holder and holder != self.me and not expired:
            return False
        lease["spec"] = self._spec(lease, now)
        try:
            await self.kube.replace(lease)  # resourceVersion guards against a concurrent taker
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def run(self) -> None:
        period = self.duration / 3
        last_renewal = 0.0
        loop = asyncio.get_running_loop()
        announced = False
        while True:
            try:
                held = await self.try_acquire()
            except KubeError as exc:
                logger.warning("Lease %s/%s: %s", self.namespace, self.name, exc)
                held = False
            if held:
                last_renewal = loop.time()
                if not self.leader.is_set():
                    logger.info("Acquired Lease %s/%s as %s: this operator is active", self.namespace,
                                self.name, self.me)
                    if self.on_acquired is not None:
                        self.on_acquired()
                    self.leader.set()
            elif self.leader.is_set():
                if loop.time() - last_renewal > self.duration:
                    # Another operator may take the Lease now: stop acting (handlers, registry
                    # loops and repairs wait for `leader` again) and compete for it like a standby.
                    logger.error("Could not renew Lease %s/%s for %.0f s: paused, so that only one operator acts",
                                 self.namespace, self.name, self.duration)
                    self.leader.clear()
                    announced = False
            elif not announced:
                announced = True
                logger.info("Lease %s/%s is held by another operator; waiting as a standby", self.namespace,
                            self.name)
            await asyncio.sleep(period if self.leader.is_set() else min(period, 2.0))

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="leader election")

    async def release(self) -> None:
        """At shutdown: end the Lease now, so that a standby takes over without waiting."""
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if not self.leader.is_set():
            return
        self.leader.clear()
        try:
            lease = await self.kube.get(API_VERSION, "Lease", self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.me:
                lease["spec"] = {**lease["spec"], "holderIdentity": None, "renewTime": None, "acquireTime": None}
                await self.kube.replace(lease)
        except KubeError as exc:
            logger.warning("Could not release Lease %s/%s: %s", self.namespace, self.name, exc)
