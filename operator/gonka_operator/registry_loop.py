"""One admin API's `RegistryLoop` (see poller.py for the whole picture): the only writer of that admin
API and the only owner of what the operator knows about it — its last `GET nodes` (kept in step with
its own writes, never overlapping them), which InferenceNodes to sync and the backoff of each. Every
interval ONE `GET nodes` (poll), then the marked nodes that are due (sync); the writes for one node
are in registry_writes.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from pydantic import ValidationError

from gonka_operator import disruption, inference_node, network_node, registry, registry_writes
from gonka_operator.admin import AdminError, AdminUnavailable, NodeEntry
from gonka_operator.conditions import now_rfc3339
from gonka_operator.context import Context, InferenceRecord, Key
from gonka_operator.kube import KubeError
from gonka_operator.metrics import timed_poll
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.poll_status import registry_block
from gonka_operator.registry import RegistryProblem
from gonka_operator.registry_writes import VANISHED, holds_finalizer, report_problem
from gonka_operator.registry_writes import deleting as _deleting
from gonka_operator.status import Facts

logger = logging.getLogger(__name__)
CONCURRENCY = 8  # requests in flight per admin API while a burst is synced


class RegistryLoop:
    """The one task that talks to one admin API (see the module docstring)."""

    def __init__(self, ctx: Context, url: str) -> None:
        self.ctx, self.url = ctx, url
        self.members: set[Key] = set()  # InferenceNodes whose entry lives here
        self.networks: set[Key] = set()  # NetworkNodes whose registry this is
        self.snapshot: dict[str, NodeEntry] | None = None  # last GET, kept in step with our writes
        self.latest_confirmed = False  # a PUT of ours succeeded: the api upserts
        self.reachable: bool | None = None
        self.counts = (0, 0)  # registered, failed at the last poll
        self.dirty: dict[Key, str | None] = {}  # to sync → why (None, VANISHED, a drift message)
        self.retry_at: dict[Key, float] = {}
        self.retries: dict[Key, int] = {}
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    # -- marking (called by anyone; never blocks) ---------------------------------------------------

    def mark(self, key: Key, cause: str | None = None, *, now: bool = True) -> None:
        """Sync `key` soon: at once (`now`, e.g. a spec change), or at its next retry time."""
        self.members.add(key)
        self.dirty[key] = cause or self.dirty.get(key)
        if now:
            self.retry_at.pop(key, None)
        self.wake.set()

    def forget(self, key: Key) -> None:
        self.members.discard(key)
        for state in (self.dirty, self.retry_at, self.retries):
            state.pop(key, None)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"registry {self.url}")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    # -- the loop -----------------------------------------------------------------------------------

    async def run(self) -> None:
        interval = self.ctx.settings.registry_poll_seconds
        next_poll = 0.0
        while True:
            if not self.ctx.leader.is_set():  # paused: another operator may hold the Lease
                await self.ctx.leader.wait()
                next_poll = 0.0
            self.wake.clear()
            polled = False
            try:
                if time.monotonic() >= next_poll:
                    with timed_poll():  # the poll's wall time and CPU (bench, /metrics)
                        await self.poll()
                    polled = True
                    next_poll = time.monotonic() + interval
                due = [k for k in self.dirty if self.retry_at.get(k, 0.0) <= time.monotonic()]
                if due:
                    await self.sync(due, fresh=polled)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the loop of this admin API for good
                logger.exception("Registry loop of %s failed; continuing in %s s", self.url, interval)
                next_poll = time.monotonic() + interval
                for key in self.dirty:
                    self.retry_at.setdefault(key, time.monotonic() + interval)
            wake_at = min([next_poll, *(self.retry_at.get(k, 0.0) for k in self.dirty)])
            try:
                async with asyncio.timeout(max(0.0, wake_at - time.monotonic())):
                    await self.wake.wait()
            except TimeoutError:
                pass

    async def poll(self) -> None:
        ctx = self.ctx
        try:
            entries = await ctx.admin.list_nodes(self.url)
        except AdminError as exc:
            logger.info("Registry poll of %s failed: %s", self.url, exc)
            self.reachable = False
            for nn_key in sorted(self.networks):
                nn = ctx.network.get(nn_key)
                if nn is not None:
                    await self._write_network(nn_key, {**nn.poll, "adminReachable": False})
            return
        self.reachable = True
        self.snapshot = {e.node.id: e for e in entries}
        managed: set[str] = set()
        registered = failed = 0
        per_network: dict[Key, list[int]] = defaultdict(lambda: [0, 0])
        claims = self._claims()
        for key in sorted(self.members):
            record = ctx.inference.get(key)
            if record is None:
                continue
            node_id = registry.node_id_of(key, record.body)
            managed.add(node_id)
            try:
                await self._observe(key, record, node_id, claims, per_network)
            except (ValidationError, KubeError) as exc:  # one bad CR must not stop the poll
                logger.warning("Registry poll of %s: skipped InferenceNode %s/%s: %s", self.url, *key, exc)
                continue
            entry = self.snapshot.get(node_id)
            if entry is not None and claims.get(node_id, [key])[0] == key:
                registered, failed = registered + 1, failed + (entry.state.current_status == "FAILED")
        self.counts = (registered, failed)
        disruption.released(ctx, self.members)  # held restarts whose PoC window (or sibling) is over
        unmanaged = sorted(set(self.snapshot) - managed)
        for nn_key in sorted(self.networks):
            mine = per_network[nn_key]
            await self._write_network(nn_key, {"adminReachable": True, "unmanagedNodes": unmanaged,
                                               "registry": {"registered": mine[0], "failed": mine[1]}})

    async def _observe(self, key: Key, record: InferenceRecord, node_id: str, claims: dict[str, list[Key]],
                       per_network: dict[Key, list[int]]) -> None:
        """One InferenceNode at poll time: its status.registry, and whether it needs a sync."""
        assert self.snapshot is not None
        if _deleting(record):
            if holds_finalizer(record) and key not in self.dirty:
                self.mark(key, now=False)  # e.g. a deletion that was pending before a restart
            return
        if claims.get(node_id, [key])[0] != key:
            return  # IdConflict: not its entry
        entry = self.snapshot.get(node_id)
        if entry is None:
            if record.registration.ok and key not in self.dirty:
                self.mark(key, VANISHED)
            return
        spec = InferenceNodeSpec.model_validate(record.body["spec"])
        ref = spec.network_node_ref.name if spec.network_node_ref else None
        if ref:
            counts = per_network[(key[0], ref)]
            counts[0], counts[1] = counts[0] + 1, counts[1] + (entry.state.current_status == "FAILED")
        if record.registration.ok and key not in self.dirty:
            config = registry.desired_config(key, spec, self.ctx.settings.cluster_domain)
            drift = registry.content_drift(entry, config, spec.enabled)
            if drift:
                self.mark(key, drift)
        record.registry = registry_block(entry, record.registry, now_rfc3339())
        await inference_node.write_status(self.ctx, record)

    def _claims(self) -> dict[str, list[Key]]:
        """node id → the InferenceNodes claiming it here, owner first."""
        by_id: dict[str, list[Key]] = defaultdict(list)
        for key in self.members:
            record = self.ctx.inference.get(key)
            if record is not None:
                by_id[registry.node_id_of(key, record.body)].append(key)
        out = {}
        for node_id, keys in by_id.items():
            owner = registry.id_owner(self.ctx, self.url, node_id, keys)
            out[node_id] = [owner, *sorted(k for k in keys if k != owner)]
        return out

    # -- syncing ------------------------------------------------------------------------------------

    async def sync(self, keys: list[Key], *, fresh: bool) -> None:
        ctx = self.ctx
        upserts = self.latest_confirmed and ctx.admin.known_generation(self.url) is None
        if self.snapshot is None or not (fresh or upserts):
            try:  # the snapshot a write relies on must be fresh unless the api upserts
                self.snapshot = {e.node.id: e for e in await ctx.admin.list_nodes(self.url)}
                self.reachable = True
            except AdminError as exc:
                self.reachable = False
                for key in keys:
                    await self._failed(key, registry.problem_from(exc, self.url, self.retries.get(key, 0)))
                return
        claims = self._claims()
        down: list[AdminError] = []  # once one request found the api down, the others wait too
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(key: Key) -> None:
            async with limit:
                if down:
                    await self._failed(key, registry.problem_from(down[0], self.url, self.retries.get(key, 0)))
                    return
                try:
                    await self._sync_one(key, claims)
                except AdminUnavailable as exc:
                    down.append(exc)
                    await self._failed(key, registry.problem_from(exc, self.url, self.retries.get(key, 0)))

        await asyncio.gather(*(one(k) for k in keys))

    async def _sync_one(self, key: Key, claims: dict[str, list[Key]]) -> None:
        record = self.ctx.inference.get(key)
        cause = self.dirty.pop(key, None)
        if record is None:
            self.forget(key)
            return
        try:
            if _deleting(record):
                await self._deregister(key, record, claims)
            else:
                await self._register(key, record, claims, cause)
        except RegistryProblem as problem:
            self.dirty.setdefault(key, cause)
            await self._failed(key, problem)
            return
        except AdminUnavailable:
            self.dirty.setdefault(key, cause)
            raise
        except AdminError as exc:
            self.dirty.setdefault(key, cause)
            await self._failed(key, registry.problem_from(exc, self.url, self.retries.get(key, 0)))
            return
        except (ValidationError, KubeError) as exc:
            self.dirty.setdefault(key, cause)
            logger.warning("Sync of InferenceNode %s/%s with %s failed: %s", *key, self.url, exc)
            self._schedule_retry(key, registry.backoff(self.retries.get(key, 0)))
            return
        self.retries.pop(key, None)
        self.retry_at.pop(key, None)

    def _schedule_retry(self, key: Key, delay: float) -> None:
        self.retries[key] = self.retries.get(key, 0) + 1
        self.retry_at[key] = time.monotonic() + delay

    async def _failed(self, key: Key, problem: RegistryProblem) -> None:
        self.dirty.setdefault(key, None)
        record = self.ctx.inference.get(key)
        if record is not None and _deleting(record):
            if problem.facts.reason not in ("DeregistrationPending", disruption.DRAINING):
                problem = RegistryProblem(Facts(False, "DeregistrationPending",
                                                f"could not remove it yet: {problem.facts.message}"),
                                          registry.backoff(self.retries.get(key, 0)))
            if record.observed_generation is None:  # e.g. after a restart: the status must say why it waits
                record.observed_generation = record.body["metadata"].get("generation")
        self._schedule_retry(key, problem.retry_after)
        if record is not None:
            await report_problem(self.ctx, record, problem)

    async def _register(self, key: Key, record: InferenceRecord, claims: dict[str, list[Key]],
                        cause: str | None) -> None:
        await registry_writes.register(self, key, record, claims, cause)

    async def _deregister(self, key: Key, record: InferenceRecord, claims: dict[str, list[Key]]) -> None:
        await registry_writes.deregister(self, key, record, claims)

    async def _write_network(self, nn_key: Key, poll: dict[str, object]) -> None:
        nn = self.ctx.network.get(nn_key)
        if nn is not None:
            nn.poll = poll
            await network_node.write_status(self.ctx, nn)
