"""poller.RegistryLoop / Registries against the real stand-in on loopback (both generations), with
the Kubernetes side recorded (tests/unit/fakekube.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fakekube import context, external_body, handled, network

from gonka_operator.admin import AdminClient, NodeEntry, create_http_client
from gonka_operator.poller import Registries, RegistryLoop, registry_block
from gonka_operator.registry import FINALIZER
from gonka_operator.simulator import Simulator, run_simulator
from procs import free_port

KEY = ("ns", "a")


@pytest.fixture
async def admin() -> AsyncIterator[AdminClient]:
    async with create_http_client(total_timeout=2) as http:
        yield AdminClient(http, total_timeout=2)


@pytest.fixture
async def legacy() -> AsyncIterator[Simulator]:
    async with run_simulator(generation="2025-08", state_delay=0.1) as s:
        yield s


@pytest.fixture
async def latest() -> AsyncIterator[Simulator]:
    async with run_simulator(generation="latest", state_delay=0.1) as s:
        yield s


async def by_hand(sim: Simulator, body: dict[str, object]) -> None:
    await call(sim, "POST", "/admin/v1/nodes", body)


async def call(sim: Simulator, method: str, path: str, body: dict[str, object] | None = None) -> None:
    """Someone else's request to the stand-in (it runs in this event loop: no blocking client)."""
    async with httpx.AsyncClient() as http:
        (await http.request(method, sim.base_url + path, json=body, timeout=5)).raise_for_status()


def entry_body(node_id: str, host: str) -> dict[str, object]:
    return {"id": node_id, "host": host, "inference_port": 5050, "poc_port": 8080, "max_concurrent": 500,
            "models": {"Qwen/Qwen3-32B-FP8": {"args": []}}, "hardware": [{"type": "H100", "count": 1}],
            "inference_segment": "", "poc_segment": ""}


async def test_a_write_on_2025_08_relies_on_a_fresh_get_not_an_old_snapshot(legacy: Simulator,
                                                                            admin: AdminClient) -> None:
    """Major 4: a sync that sent nothing must not switch the fresh-GET rule off. The poll's
    snapshot predates a POST by someone else; the next change must see that entry (DELETE+POST),
    never POST the id a second time (2025-08 would keep both in its saved config)."""
    ctx, _kube = context(admin)
    loop = RegistryLoop(ctx, legacy.base_url)
    await by_hand(legacy, entry_body("a", "a.example"))
    handled(ctx, external_body("a", legacy.base_url))
    loop.mark(KEY)
    await loop.poll()
    await loop.sync([KEY], fresh=True)  # the entry already equals the spec: nothing sent
    assert not loop.latest_confirmed
    await call(legacy, "DELETE", "/admin/v1/nodes/a")
    await loop.poll()  # snapshot: no "a"
    await by_hand(legacy, entry_body("a", "a.example"))  # a concurrent writer (another process)
    record = ctx.inference[KEY]
    record.body["spec"]["external"]["host"] = "moved.example"
    loop.mark(KEY)
    await loop.sync([KEY], fresh=False)
    saved = [c for c in legacy.saved_config() if c["id"] == "a"]
    assert [c["host"] for c in saved] == ["moved.example"], saved


async def test_latest_generation_is_confirmed_only_by_a_put_we_sent(latest: Simulator, admin: AdminClient) -> None:
    ctx, _ = context(admin)
    loop = RegistryLoop(ctx, latest.base_url)
    handled(ctx, external_body("a", latest.base_url))
    loop.mark(KEY)
    await loop.poll()
    await loop.sync([KEY], fresh=True)
    assert loop.latest_confirmed and latest.request_counts().get("PUT /admin/v1/nodes/{id}") == 1


async def test_one_bad_cr_does_not_stop_the_poll(latest: Simulator, admin: AdminClient) -> None:
    ctx, kube = context(admin)
    loop = RegistryLoop(ctx, latest.base_url)
    good = handled(ctx, external_body("good", latest.base_url))
    bad = handled(ctx, external_body("bad", latest.base_url))
    bad.body["spec"]["gpus"] = "many"  # fails model validation
    for r in (bad, good):
        r.registration = r.registration.__class__(True, "Registered")
        loop.members.add((r.body["metadata"]["namespace"], r.body["metadata"]["name"]))
    await by_hand(latest, entry_body("good", "good.example"))
    await by_hand(latest, entry_body("bad", "bad.example"))
    await loop.poll()
    assert "registry" in kube.statuses[("ns", "good")], kube.statuses


async def test_second_cr_with_the_same_id_gets_id_conflict_and_never_writes(latest: Simulator,
                                                                           admin: AdminClient) -> None:
    """Major 8."""
    ctx, kube = context(admin)
    loop = RegistryLoop(ctx, latest.base_url)
    first = handled(ctx, external_body("gpu-1", latest.base_url, namespace="team-a", created="2026-01-01T00:00:00Z"))
    second = handled(ctx, external_body("gpu-1", latest.base_url, namespace="team-b", created="2026-01-02T00:00:00Z"))
    second.body["spec"]["external"]["host"] = "other.example"
    await loop.poll()
    for key in (("team-a", "gpu-1"), ("team-b", "gpu-1")):
        loop.mark(key)
    await loop.sync([("team-b", "gpu-1"), ("team-a", "gpu-1")], fresh=True)
    assert first.registration.reason == "Registered"
    assert second.registration.reason == "IdConflict" and "team-a/gpu-1" in second.registration.message
    assert latest.request_counts().get("PUT /admin/v1/nodes/{id}") == 1
    assert (await admin.list_nodes(latest.base_url))[0].node.host == "gpu-1.example"
    assert "IdConflict" in kube.reasons("gpu-1")


async def test_content_drift_is_repaired_with_an_event(latest: Simulator, admin: AdminClient) -> None:
    """Major 9: an entry edited and disabled by hand is put back at the next poll."""
    ctx, kube = context(admin)
    loop = RegistryLoop(ctx, latest.base_url)
    handled(ctx, external_body("a", latest.base_url))
    loop.mark(KEY)
    await loop.poll()
    await loop.sync([KEY], fresh=True)
    assert kube.reasons("a") == ["Registered"]
    body = {**entry_body("a", "a.example"), "max_concurrent": 3}
    await call(latest, "PUT", "/admin/v1/nodes/a", body)
    await call(latest, "POST", "/admin/v1/nodes/a/disable")
    await loop.poll()
    assert KEY in loop.dirty
    await loop.sync([KEY], fresh=True)
    entry = (await admin.list_nodes(latest.base_url))[0]
    assert entry.node.max_concurrent == 500 and entry.state.admin_state and entry.state.admin_state.enabled
    assert kube.reasons("a")[-1] == "Repaired"


async def test_deregistration_is_retried_with_backoff_and_holds_the_finalizer(admin: AdminClient) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    ctx, kube = context(admin)
    loop = RegistryLoop(ctx, dead)
    record = handled(ctx, external_body("a", dead))
    record.body["metadata"]["deletionTimestamp"] = "2026-01-03T00:00:00Z"
    loop.mark(KEY)
    loop.snapshot = {}
    loop.latest_confirmed = True  # skip the fresh GET: the DELETE itself meets the dead API
    await loop.sync([KEY], fresh=False)
    assert record.registration.reason == "DeregistrationPending"
    assert FINALIZER in record.body["metadata"]["finalizers"] and kube.finalizers == []
    assert loop.retry_at[KEY] > time.monotonic() + 1  # not a hot loop
    assert kube.statuses[KEY]["conditions"][2]["reason"] == "DeregistrationPending"


async def test_deregistration_is_moot_when_the_network_node_goes_with_its_registry(admin: AdminClient) -> None:
    """Major 3: the NetworkNode (and its api) is being deleted, e.g. with the namespace: one
    attempt, and the finalizer goes although the api does not answer."""
    dead = f"http://127.0.0.1:{free_port()}"
    ctx, kube = context(admin, admin_url_overrides={"*": dead})
    nn = network(ctx, "gonka")
    body = external_body("a", dead)
    del body["spec"]["adminURL"]
    body["spec"]["networkNodeRef"] = {"name": "gonka"}
    record = handled(ctx, body)
    record.body["metadata"]["deletionTimestamp"] = "2026-01-03T00:00:00Z"
    nn.body["metadata"]["deletionTimestamp"] = "2026-01-03T00:00:00Z"
    loop = RegistryLoop(ctx, dead)
    loop.snapshot, loop.latest_confirmed = {}, True
    loop.mark(KEY)
    await loop.sync([KEY], fresh=False)
    assert kube.finalizers == [("a", False)] and "DeregistrationSkipped" in kube.reasons("a")


async def test_a_sick_admin_api_does_not_delay_another(latest: Simulator, admin: AdminClient) -> None:
    """Critical 1 at the unit level: each admin API has its own loop; 120 failing nodes retrying at
    one of them leave the other's registration immediate."""
    dead = f"http://127.0.0.1:{free_port()}"
    ctx, _kube = context(admin, registry_poll_seconds=30)
    registries = Registries(ctx)
    ctx.registries = registries
    for i in range(120):
        handled(ctx, external_body(f"sick-{i}", dead))
        await registries.mark(("ns", f"sick-{i}"))
    await asyncio.sleep(0.5)
    handled(ctx, external_body("healthy", latest.base_url))
    started = time.monotonic()
    await registries.mark(("ns", "healthy"))
    while ctx.inference[("ns", "healthy")].registration.reason != "Registered":
        assert time.monotonic() - started < 5, ctx.inference[("ns", "healthy")].registration
        await asyncio.sleep(0.05)
    sick = ctx.inference[("ns", "sick-0")].registration
    assert sick.reason == "AdminUnreachable"
    await registries.stop()


async def test_loops_of_unused_admin_apis_are_dropped(latest: Simulator, admin: AdminClient) -> None:
    """Memory: nothing is kept for an admin API no CR uses any more."""
    ctx, _ = context(admin, registry_poll_seconds=30)
    registries = Registries(ctx)
    ctx.registries = registries
    handled(ctx, external_body("a", latest.base_url))
    await registries.mark(KEY)
    assert list(registries.loops) == [latest.base_url]
    del ctx.inference[KEY]
    registries.forget(KEY)
    await registries.tick()
    assert registries.loops == {}
    await registries.stop()


async def test_restart_shows_pending_deregistration(admin: AdminClient) -> None:
    """A fresh process (no observedGeneration yet) still reports a pending deletion."""
    dead = f"http://127.0.0.1:{free_port()}"
    ctx, kube = context(admin)
    record = handled(ctx, external_body("a", dead))
    record.observed_generation = None
    record.body["metadata"]["deletionTimestamp"] = "2026-01-03T00:00:00Z"
    loop = RegistryLoop(ctx, dead)
    loop.mark(KEY)
    await loop.sync([KEY], fresh=False)
    assert kube.statuses[KEY]["conditions"][2]["reason"] in ("DeregistrationPending", "AdminUnreachable")


async def test_resync_rehandles_a_node_whose_update_event_was_lost(admin: AdminClient) -> None:
    """Major 9: the periodic re-list touches an InferenceNode whose newer generation never reached
    the operator (kopf then runs the update handler); an up-to-date one costs no write."""
    from gonka_operator import inference_node

    ctx, kube = context(admin)
    current, stale = external_body("current", "u"), external_body("stale", "u")
    handled(ctx, current)
    handled(ctx, stale)
    kube.listing = [current, {**stale, "metadata": {**stale["metadata"], "generation": 2}}]
    assert await inference_node.resync(ctx) == [("ns", "stale")]
    assert kube.touched == [("ns", "stale")]


def _entry_with_countdown(seconds: int) -> NodeEntry:
    return NodeEntry.model_validate({
        "node": {"id": "a", "host": "h", "inference_port": 5050, "poc_port": 8080, "max_concurrent": 500,
                 "models": {"m": {"args": []}}},
        "state": {"current_status": "INFERENCE", "intended_status": "INFERENCE"},
        "onboarding": {"timing": {"current_phase": "Inference", "seconds_until_next_poc": seconds}}})


def test_a_countdown_that_keeps_its_pace_within_tolerance_rewrites_nothing() -> None:
    """The api's seconds-until-PoC becomes a moment; a halted or uneven chain makes that moment drift
    with wall time. A drift within tolerance keeps the block as it was (no write every minute), a
    real change of the estimate shows."""
    now = datetime.now(UTC)
    first = registry_block(_entry_with_countdown(3600), None, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    # the same countdown read 90 s later: the moment moved by 90 s
    later = now + timedelta(seconds=90)
    again = registry_block(_entry_with_countdown(3600), first, later.strftime("%Y-%m-%dT%H:%M:%SZ"), at=later)
    assert again == first
    # the estimate moved by half an hour: that is news
    moved = registry_block(_entry_with_countdown(5400), first, later.strftime("%Y-%m-%dT%H:%M:%SZ"), at=later)
    assert moved["onboarding"]["nextPoCAt"] != first["onboarding"]["nextPoCAt"]  # type: ignore[index]
