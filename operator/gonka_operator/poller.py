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
only when something changed (lastSeen is refreshed at most every LAST_SEEN_REFRESH seconds, so an
idle host causes no writes). `Registries` starts a loop when an admin URL is first used and stops it
(dropping its state) when no CR uses the URL any more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import ValidationError

from gonka_operator import disruption, inference_node, network_node, registry
from gonka_operator.admin import AdminError, AdminNotFound, AdminUnavailable, NodeEntry
from gonka_operator.conditions import now_rfc3339
from gonka_operator.context import Context, InferenceRecord, Key
from gonka_operator.kube import KubeError
from gonka_operator.metrics import DRIFT_REPAIRS, REGISTRY_NODES, timed_poll
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.registry import FINALIZER, SKIP_DEREGISTRATION, RegistryProblem
from gonka_operator.registry_status import registry_status
from gonka_operator.status import Facts

logger = logging.getLogger(__name__)
LAST_SEEN_REFRESH = 600.0
VANISHED = "vanished"
CONCURRENCY = 8  # requests in flight per admin API while a burst is synced


def registry_block(entry: NodeEntry, previous: dict[str, object] | None, now: str,
                   at: datetime | None = None) -> dict[str, object]:
    """status.registry of one entry; lastSeen moves only when something else changed, or every
    LAST_SEEN_REFRESH seconds."""
    at = at or datetime.now(UTC)
    block = registry_status(entry, at)
    _keep_next_poc_estimate(block, previous, at)
    last_seen = (previous or {}).get("lastSeen")
    same = previous is not None and all(previous.get(k) == v for k, v in block.items()) and \
        set(previous) - {"lastSeen"} == set(block)
    if same and isinstance(last_seen, str) and _age(last_seen) < LAST_SEEN_REFRESH:
        block["lastSeen"] = last_seen
    else:
        block["lastSeen"] = now
    return block


NEXT_POC_TOLERANCE = 120.0  # seconds, or a tenth of the time left when that is more


def _keep_next_poc_estimate(block: dict[str, object], previous: dict[str, object] | None, at: datetime) -> None:
    """`nextPoCAt` is the api's countdown turned into a moment; when blocks come slower or faster
    than the api assumes (or the chain halts), that moment drifts with wall time, and a status
    write every minute of every node would follow. Keep the previous moment while the new estimate
    stays within NEXT_POC_TOLERANCE (or a tenth of the time left) of it."""
    onboarding, before = block.get("onboarding"), (previous or {}).get("onboarding")
    if not isinstance(onboarding, dict) or not isinstance(before, dict):
        return
    new, old = _parse(onboarding.get("nextPoCAt")), _parse(before.get("nextPoCAt"))
    if new is None or old is None:
        return
    left = max(0.0, (new - at).total_seconds())
    if abs((new - old).total_seconds()) <= max(NEXT_POC_TOLERANCE, left / 10):
        onboarding["nextPoCAt"] = before["nextPoCAt"]


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _age(rfc3339: str) -> float:
    try:
        then = datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - then).total_seconds()


def _deleting(record: InferenceRecord) -> bool:
    return bool(record.body["metadata"].get("deletionTimestamp"))


def _holds_finalizer(record: InferenceRecord) -> bool:
    return FINALIZER in (record.body["metadata"].get("finalizers") or [])


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
                    with timed_poll():
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
            if _holds_finalizer(record) and key not in self.dirty:
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
        ctx = self.ctx
        assert self.snapshot is not None
        if not (record.finalized or _holds_finalizer(record)):
            return  # never an entry without the finalizer that removes it: kopf's handler marks it again
        hold = inference_node.registration_hold(record)
        if hold is not None:  # the cache or the pod is not there yet; a registered node keeps its entry
            if not record.registration.ok and record.registration != hold:
                record.registration = hold
                await inference_node.write_status(ctx, record)
            return
        spec = InferenceNodeSpec.model_validate(record.body["spec"])
        config = registry.desired_config(key, spec, ctx.settings.cluster_domain)
        owner = claims.get(config.id, [key])[0]
        if owner != key:
            raise registry.conflict_problem(owner, config.id, self.url)
        current = self.snapshot.get(config.id)
        written = await registry.register(ctx.admin, self.url, config, spec.enabled, current)
        if written.put_succeeded:
            self.latest_confirmed = True
        if ctx.admin.known_generation(self.url) is not None:
            self.latest_confirmed = False
        self.snapshot[config.id] = written.entry
        previous = record.registration
        record.admin_url = self.url
        record.registration = registry.registered_facts(record, config, self.url, spec.enabled)
        if cause == VANISHED and written.changed:
            DRIFT_REPAIRS.inc()
            await ctx.kube.post_event(record.body, "Warning", "ReRegistered",
                                      f"{config.id} had vanished from the admin registry at {self.url}; "
                                      "registered it again")
        elif cause and written.changed:
            DRIFT_REPAIRS.inc()
            await ctx.kube.post_event(record.body, "Warning", "Repaired",
                                      f"{config.id} at {self.url}: {cause}; put it back as the spec says")
        elif written.changed or previous.ok is False:
            await ctx.kube.post_event(record.body, "Normal", "Registered", record.registration.message)
        await inference_node.write_status(ctx, record)

    async def _deregister(self, key: Key, record: InferenceRecord, claims: dict[str, list[Key]]) -> None:
        ctx = self.ctx
        if not _holds_finalizer(record):
            self.forget(key)
            return
        if (record.body["metadata"].get("annotations") or {}).get(SKIP_DEREGISTRATION) == "true":
            await release(ctx, record, "DeregistrationSkipped", f"annotation {SKIP_DEREGISTRATION}=true")
            self.forget(key)
            return
        node_id = registry.node_id_of(key, record.body)
        owner = claims.get(node_id, [key])[0]
        if owner != key:
            await release(ctx, record, "Deregistered", f"{node_id} at {self.url} belongs to "
                          f"InferenceNode {owner[0]}/{owner[1]}: left alone")
            self.forget(key)
            return
        spec = InferenceNodeSpec.model_validate(record.body["spec"])
        moot = registry.network_node_gone(ctx, key[0], spec)
        drained = "" if moot else await self._drain(record, node_id)  # raises while still scheduled
        try:
            removed = await ctx.admin.delete(self.url, node_id)
        except AdminError as exc:
            if moot:
                # The NetworkNode whose registry this is is gone or going (e.g. its namespace is
                # being deleted): its api and data go with it, so there is nothing left to clean up.
                await release(ctx, record, "DeregistrationSkipped",
                              f"NetworkNode {spec.network_node_ref.name if spec.network_node_ref else ''} is "
                              f"deleted together with its registry; {node_id} not removed from {self.url} ({exc})")
                self.forget(key)
                self._mark_claimants(node_id, key)
                return
            raise RegistryProblem(Facts(False, "DeregistrationPending",
                                        f"could not remove {node_id} from {self.url} yet: {exc}"),
                                  registry.backoff(self.retries.get(key, 0))) from exc
        if self.snapshot is not None:
            self.snapshot.pop(node_id, None)
        outcome = (f"removed {node_id} from {self.url}" if removed
                   else f"{node_id} was not in the registry at {self.url}") + drained
        await release(ctx, record, "Deregistered", outcome)
        self.forget(key)
        self._mark_claimants(node_id, key)

    async def _drain(self, record: InferenceRecord, node_id: str) -> str:
        """Drain before deregistering (disruption.drain_step): disable the entry, then raise a
        `Draining` RegistryProblem (retried at the poll interval) while the network node still
        schedules the node. Returns what the Deregistered Event adds."""
        entry = (self.snapshot or {}).get(node_id)
        step = disruption.drain_step(entry, record.body)
        if step.disable:
            try:
                await self.ctx.admin.set_enabled(self.url, node_id, False)
            except AdminNotFound:
                return " (it had gone from the registry)"
            await self.ctx.kube.post_event(record.body, "Normal", disruption.DRAINING,
                                           f"disabled {node_id} in the registry at {self.url} before deregistering it")
            if entry is not None and entry.state.admin_state is not None:
                entry.state.admin_state.enabled = False
        if step.done:
            return f" ({step.why})"
        if record.registration.reason != disruption.DRAINING:
            await self.ctx.kube.post_event(record.body, "Normal", disruption.DRAINING, f"{node_id}: {step.why}")
        raise RegistryProblem(Facts(True, disruption.DRAINING, f"{node_id} is disabled; {step.why}"),
                              self.ctx.settings.registry_poll_seconds, warn=False)

    def _mark_claimants(self, node_id: str, gone: Key) -> None:
        """The owner of an id went: a CR that was refused it (IdConflict) may now register."""
        for key in list(self.members):
            record = self.ctx.inference.get(key)
            if key != gone and record is not None and registry.node_id_of(key, record.body) == node_id:
                self.mark(key)

    async def _write_network(self, nn_key: Key, poll: dict[str, object]) -> None:
        nn = self.ctx.network.get(nn_key)
        if nn is not None:
            nn.poll = poll
            await network_node.write_status(self.ctx, nn)


async def report_problem(ctx: Context, record: InferenceRecord, problem: RegistryProblem) -> None:
    """Registration (or deregistration) did not happen: status, and a Warning when it is news."""
    previous, record.registration = record.registration, problem.facts
    news = (previous.reason, previous.message) != (problem.facts.reason, problem.facts.message)
    if news and problem.warn:
        await ctx.kube.post_event(record.body, "Warning", problem.facts.reason, problem.facts.message)
    await inference_node.write_status(ctx, record)


async def release(ctx: Context, record: InferenceRecord, reason: str, message: str) -> None:
    """Remove our finalizer: the InferenceNode may go. KubeError propagates (retried)."""
    meta = record.body["metadata"]
    await ctx.kube.set_finalizer(record.body, FINALIZER, present=False)
    # our own write, like the snapshot after a PUT: a poll before the DELETED event must not
    # deregister it again
    meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
    event_type = "Normal" if reason == "Deregistered" else "Warning"
    await ctx.kube.post_event(record.body, event_type, reason, message)
    logger.info("Released InferenceNode %s/%s (%s): %s", meta["namespace"], meta["name"], reason, message)


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
                if deleting and _holds_finalizer(record):
                    await release(ctx, record, "DeregistrationSkipped", "invalid spec and never registered")
                return
        except RegistryProblem as problem:
            url = record.admin_url if deleting else None
            if deleting and url is None:
                if _holds_finalizer(record):
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
        await inference_node.refresh_cache_progress(ctx)  # bytes/files of running preload Jobs
        members: dict[str, set[Key]] = defaultdict(set)
        networks: dict[str, set[Key]] = defaultdict(set)
        for key, record in list(ctx.inference.items()):
            url = self._url_of(key, record)
            if url:
                members[url].add(key)
            elif not record.registration.ok and not _deleting(record):
                await self.mark(key)  # e.g. its NetworkNode appeared meanwhile
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
            await inference_node.resync(ctx)

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
