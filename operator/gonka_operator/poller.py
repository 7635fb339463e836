"""Everything the operator does against admin APIs: one `RegistryLoop` task per admin API.

A loop is the only writer of its admin API and the only owner of what the operator knows about it
(its last `GET nodes`, the backoff of each InferenceNode that failed there). Handlers, drift events
and the NetworkNode indexer never call the admin API: they *mark* an InferenceNode
(`Registries.mark`), and the loop of its admin URL syncs it:

* register (PUT, or on the 2025-08 generation DELETE+POST after a fresh GET), enable/disable;
* deregister an InferenceNode being deleted, then remove the finalizer `gonka.ai/registry-cleanup`
  (a deletion never sits in a kopf worker, so a sick admin API cannot starve other objects);
* every interval: ONE `GET nodes`, fanned out to every InferenceNode's `status.registry`;
  entries that vanished are registered again (Event ReRegistered), entries edited or
  enabled/disabled by hand are put back (Event Repaired), entries no InferenceNode owns are listed on
  the NetworkNode (and left alone).

A failure is a status and an Event, and that one InferenceNode is retried with backoff by the loop
(2 s … 60 s; 300 s for a rejection): a sick admin API slows nothing but itself. Statuses are written
only when something changed (poll_status.py: lastSeen is refreshed at most every LAST_SEEN_REFRESH
seconds, so an idle host causes no writes). `Registries` starts a loop when an admin URL is first
used and stops it (dropping its state) when no CR uses the URL any more.

Modules: this one is `Registries` (which loops run, membership, housekeeping); registry_loop.py the
loop of one admin API (when to poll, sync, retry); registry_writes.py the writes for one node
(register, drain, deregister, release); poll_status.py its status.registry block.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable

from pydantic import ValidationError

from gonka_operator import drift, inference_node, preload_housekeeping, registry
from gonka_operator.context import Context, InferenceRecord, Key
from gonka_operator.kube import KubeError
from gonka_operator.metrics import REGISTRY_NODES
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.poll_status import registry_block
from gonka_operator.registry import RegistryProblem
from gonka_operator.registry_loop import RegistryLoop
from gonka_operator.registry_writes import deleting as _deleting
from gonka_operator.registry_writes import holds_finalizer, release, report_problem

__all__ = ["Registries", "RegistryLoop", "registry_block"]
logger = logging.getLogger(__name__)


class Registries:
    """The RegistryLoops, by admin URL, and the periodic housekeeping around them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.loops: dict[str, RegistryLoop] = {}
        self.task: asyncio.Task[None] | None = None
        self._last_resync = time.monotonic()
        self._marking: set[asyncio.Task[None]] = set()

    def loop(self, url: str) -> RegistryLoop:
        loop = self.loops.get(url)
        if loop is None:
            loop = self.loops[url] = RegistryLoop(self.ctx, url)
            loop.start()
        return loop

    def _url_of(self, key: Key, record: InferenceRecord) -> str | None:
        """The admin URL the entry of `key` lives at: its resolved URL or, when that cannot be
        resolved any more (NetworkNode gone), the one it was registered at."""
        try:
            spec = InferenceNodeSpec.model_validate(record.body["spec"])
            return registry.resolve_admin_url(self.ctx, key[0], spec)
        except RegistryProblem:
            return record.admin_url
        except ValidationError:
            return record.admin_url

    async def mark(self, key: Key) -> None:
        """Have `key` synced with its admin registry (registered, updated, or deregistered)."""
        ctx = self.ctx
        record = ctx.inference.get(key)
        if record is None or not ctx.leader.is_set():
            return
        deleting = _deleting(record)
        url: str | None
        try:
            spec = InferenceNodeSpec.model_validate(record.body["spec"])
            url = registry.resolve_admin_url(ctx, key[0], spec)
        except ValidationError as exc:
            logger.warning("InferenceNode %s/%s does not validate: %s", *key, exc)
            url = record.admin_url if deleting else None
            if url is None:
                if deleting and holds_finalizer(record):
                    await release(ctx, record, "DeregistrationSkipped", "invalid spec and never registered")
                return
        except RegistryProblem as problem:
            url = record.admin_url if deleting else None
            if deleting and url is None:
                if problem.facts.reason == "NetworkNodeNotFound" and not await self._network_gone(key, spec):
                    return  # not indexed yet (start-up): marked again when the index lists it
                if holds_finalizer(record):
                    await release(ctx, record, "Deregistered",
                                  f"{problem.facts.message}: it was never registered, nothing to remove")
                return
            if not deleting:
                for loop in self.loops.values():
                    loop.dirty.pop(key, None)
                await report_problem(ctx, record, problem)
                return
        assert url is not None
        for other_url, loop in self.loops.items():
            if other_url != url and key in loop.members:
                loop.forget(key)
        self.loop(url).mark(key)

    async def _network_gone(self, key: Key, spec: InferenceNodeSpec) -> bool:
        try:
            return await registry.network_node_gone(self.ctx, key[0], spec)
        except KubeError as exc:
            logger.warning("InferenceNode %s/%s: could not read its NetworkNode: %s", *key, exc)
            return False  # the next tick marks it again

    def mark_network(self, nn_key: Key) -> list[Key]:
        """Mark every InferenceNode of a NetworkNode (it appeared, became ready, or went)."""
        keys = [k for k, r in self.ctx.inference.items()
                if k[0] == nn_key[0] and ((r.body.get("spec") or {}).get("networkNodeRef") or {}).get("name")
                == nn_key[1]]
        for key in keys:
            task = asyncio.get_running_loop().create_task(self.mark(key))
            self._marking.add(task)
            task.add_done_callback(self._marking.discard)
        return keys

    def forget(self, key: Key) -> None:
        for loop in self.loops.values():
            loop.forget(key)

    async def mark_all(self, keys: Iterable[Key]) -> None:
        for key in list(keys):
            await self.mark(key)

    async def tick(self) -> None:
        """Membership of every loop, loops started and stopped, stalled objects woken, metrics."""
        ctx = self.ctx
        started = time.monotonic()
        await inference_node.wake_unhandled(ctx, started)
        await preload_housekeeping.refresh_cache_progress(ctx)  # bytes/files of running preload Jobs
        await preload_housekeeping.retry_due_preloads(ctx)  # a failed preload's next attempt
        members: dict[str, set[Key]] = defaultdict(set)
        networks: dict[str, set[Key]] = defaultdict(set)
        for key, record in list(ctx.inference.items()):
            url = self._url_of(key, record)
            if url:
                members[url].add(key)
            elif not record.registration.ok and (not _deleting(record) or holds_finalizer(record)):
                await self.mark(key)  # e.g. its NetworkNode appeared meanwhile (or is confirmed gone)
        for nn_key in list(ctx.network):
            url = registry.network_admin_url(ctx, nn_key)
            if url:
                networks[url].add(nn_key)
        for url in set(members) | set(networks):
            loop = self.loop(url)
            loop.members = members.get(url, set()) | set(loop.dirty)
            loop.networks = networks.get(url, set())
        for url in [u for u, loop in self.loops.items() if not loop.members and not loop.networks]:
            await self.loops.pop(url).stop()  # memory: nothing is kept for an admin API nobody uses
        REGISTRY_NODES.labels(state="registered").set(sum(lp.counts[0] for lp in self.loops.values()))
        REGISTRY_NODES.labels(state="failed").set(sum(lp.counts[1] for lp in self.loops.values()))
        if started - self._last_resync >= ctx.settings.resync_seconds:
            self._last_resync = started
            await inference_node.resync(ctx)  # update events a watch lost
            await drift.resync_children(ctx)  # deletions a watch lost (a relist reports none)

    async def run(self) -> None:
        """Until cancelled (operator cleanup): on becoming the active operator, every CR is marked
        (a fresh process checks every entry once), then a tick per poll interval."""
        while True:
            await self.ctx.leader.wait()  # again after a pause (Lease not renewed in time)
            await self.tick()
            await self.mark_all(self.ctx.inference)
            while self.ctx.leader.is_set():
                await asyncio.sleep(self.ctx.settings.registry_poll_seconds)
                try:
                    await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("Registry housekeeping failed; next round in %s s",
                                     self.ctx.settings.registry_poll_seconds)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="registries")

    async def stop(self) -> None:
        tasks = [t for t in [self.task, *(lp.task for lp in self.loops.values())] if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
