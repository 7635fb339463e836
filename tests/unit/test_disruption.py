"""disruption.py: a change that restarts a serving ML pod is held during PoC, one ML node of a
NetworkNode is restarted at a time; everything else is applied as usual (Kubernetes side recorded
by tests/unit/fakekube.py, the PoC timing as the admin API reports it in `GET nodes`)."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from fakekube import INFERENCE, POC, URL, FakeKube, context, poll

from gonka_operator import disruption, inference_node
from gonka_operator.admin.models import NodeEntry, OnboardingTiming
from gonka_operator.context import Context, InferenceRecord
from gonka_operator.poller import Registries, RegistryLoop
from gonka_operator.registry import FINALIZER
from gonka_operator.status import Facts


def body(name: str, image_tag: str = "3.0.8", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1,
                     "finalizers": [FINALIZER], "resourceVersion": "1", **meta},
        "spec": {"networkNodeRef": {"name": "gonka"}, "model": "Qwen/Qwen3-32B-FP8", "gpus": 1,
                 "hardwareType": "H100", "image": f"ghcr.io/product-science/mlnode:{image_tag}",
                 "hfCache": {"size": "10Gi", "preload": False}},
    }


def setup(ctx: Context, kube: FakeKube, *names: str, timing: dict[str, Any] = INFERENCE) -> RegistryLoop:
    """Registered, serving nodes: each one's live Deployment is what its spec renders (1 replica)."""
    ctx.registries = Registries(ctx)
    loop = ctx.registries.loops[URL] = RegistryLoop(ctx, URL)
    for name in names:
        record = ctx.inference[("ns", name)] = InferenceRecord(body=body(name))
        record.handled = record.finalized = True
        record.admin_url = URL
        record.registration = Facts(True, "Registered", "registered")
        record.registry = {"currentStatus": "INFERENCE"}
        record.deployment = {"replicas": 1, "status": {"observedGeneration": 1, "replicas": 1,
                                                       "updatedReplicas": 1, "availableReplicas": 1}}
        live = copy.deepcopy(next(c for c in inference_node.desired_for(ctx, record) if c["kind"] == "Deployment"))
        live["metadata"]["generation"] = 1
        kube.objects[("Deployment", live["metadata"]["name"])] = live
    poll(loop, timing)
    return loop


def edit(ctx: Context, name: str, image_tag: str) -> InferenceRecord:
    record = ctx.inference[("ns", name)]
    record.body = body(name, image_tag, **{k: v for k, v in record.body["metadata"].items()
                                           if k in ("annotations",)})
    return record


def deployments(kube: FakeKube) -> list[str]:
    return [name for kind, name in kube.applied if kind == "Deployment"]


@pytest.mark.parametrize(("timing", "open_"), [
    (INFERENCE, False),
    (POC, True),
    ({**INFERENCE, "current_phase": "PoCValidateWindDown", "in_poc_window": None}, True),
    ({**INFERENCE, "confirmation_poc_active": True}, True),
    ({}, False),  # the api says nothing: nothing is held
])
def test_window_from_the_timing(timing: dict[str, Any], open_: bool) -> None:
    assert disruption.window_of(OnboardingTiming.model_validate(timing)).open is open_
    assert not disruption.window_of(None).open


async def test_a_pod_template_change_is_held_during_poc_and_applied_in_the_inference_phase() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    loop = setup(ctx, kube, "a", timing=POC)
    record = edit(ctx, "a", "3.0.9")
    await inference_node.apply_children(ctx, record)
    assert deployments(kube) == []  # the serving pod keeps its template
    assert ("Service", "a-mlnode") in kube.applied  # what does not restart the pod is applied
    assert record.disruption["held"]["reason"] == "PoCInProgress"
    assert "PoCInProgress" in kube.reasons("a")
    status = inference_node.compute_status(record)
    pending = next(c for c in status["conditions"] if c["type"] == "UpdatePending")
    assert (pending["status"], pending["reason"]) == ("True", "PoCInProgress")
    assert "PoCGenerate" in pending["message"]
    record.status_written = status

    await inference_node.apply_children(ctx, record)  # a drift repair meanwhile: still held
    assert deployments(kube) == []
    assert disruption.released(ctx, loop.members | {("ns", "a")}) == []

    poll(loop, INFERENCE)
    assert disruption.released(ctx, {("ns", "a")}) == [("ns", "a")]
    await inference_node.apply_children(ctx, record)
    assert deployments(kube) == ["a-mlnode"]
    assert "UpdateApplied" in kube.reasons("a")
    pending = next(c for c in inference_node.compute_status(record)["conditions"] if c["type"] == "UpdatePending")
    assert (pending["status"], pending["reason"]) == ("False", "UpToDate")


async def test_a_change_that_keeps_the_template_is_applied_during_poc() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    setup(ctx, kube, "a", timing=POC)
    record = ctx.inference[("ns", "a")]
    await inference_node.apply_children(ctx, record)
    assert deployments(kube) == ["a-mlnode"]
    assert "held" not in record.disruption
    assert not any(c["type"] == "UpdatePending" for c in inference_node.compute_status(record)["conditions"])


async def test_the_force_annotation_lets_it_through() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    setup(ctx, kube, "a", timing=POC)
    record = ctx.inference[("ns", "a")]
    record.body["metadata"]["annotations"] = {disruption.FORCE_UPDATE: "true"}
    record = edit(ctx, "a", "3.0.9")
    await inference_node.apply_children(ctx, record)
    assert deployments(kube) == ["a-mlnode"]


async def test_nothing_is_read_when_nothing_could_hold_it() -> None:
    """A lone node outside PoC: no GET of the live Deployment on each reconcile."""
    ctx, kube = context(None)  # type: ignore[arg-type]
    setup(ctx, kube, "a")
    record = edit(ctx, "a", "3.0.9")
    await inference_node.apply_children(ctx, record)
    assert deployments(kube) == ["a-mlnode"]
    assert ("Deployment", "a-mlnode") not in kube.gets


async def test_an_unregistered_node_is_not_held() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    setup(ctx, kube, "a", timing=POC)
    record = edit(ctx, "a", "3.0.9")
    record.registration = Facts(None, "Pending", "not registered yet")
    await inference_node.apply_children(ctx, record)
    assert deployments(kube) == ["a-mlnode"]


async def test_two_ml_nodes_of_one_network_node_restart_one_after_the_other() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    loop = setup(ctx, kube, "a", "b", timing=POC)
    a, b = edit(ctx, "a", "3.0.9"), edit(ctx, "b", "3.0.9")
    for record in (a, b):
        await inference_node.apply_children(ctx, record)
    assert deployments(kube) == []
    poll(loop, INFERENCE)
    assert sorted(disruption.released(ctx, {("ns", "a"), ("ns", "b")})) == [("ns", "a"), ("ns", "b")]
    for record in (a, b):
        await inference_node.apply_children(ctx, record)
    assert deployments(kube) == ["a-mlnode"]
    assert b.disruption["held"]["reason"] == "WaitingForSibling"
    assert "a" in b.disruption["held"]["message"]

    # a's rollout: new generation observed and available, but the network node has not seen it back yet
    a.deployment = {"replicas": 1, "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
                                              "availableReplicas": 1}}
    a.registry = {"currentStatus": "STOPPED"}
    assert disruption.released(ctx, {("ns", "b")}) == []
    a.registry["currentStatus"] = "INFERENCE"
    assert disruption.released(ctx, {("ns", "b")}) == [("ns", "b")]
    await inference_node.apply_children(ctx, b)
    assert deployments(kube) == ["a-mlnode", "b-mlnode"]


async def test_a_rollout_in_progress_blocks_the_sibling() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    setup(ctx, kube, "a", "b")
    a, b = edit(ctx, "a", "3.0.9"), edit(ctx, "b", "3.0.9")
    await inference_node.apply_children(ctx, a)
    a.deployment = {"replicas": 1, "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1,
                                              "availableReplicas": 1}}  # the old pod still terminates
    await inference_node.apply_children(ctx, b)
    assert deployments(kube) == ["a-mlnode"]
    a.deployment["status"]["replicas"] = 1
    assert disruption.released(ctx, {("ns", "b")}) == [("ns", "b")]


async def test_a_sibling_that_was_not_serving_blocks_only_until_its_rollout_is_done() -> None:
    """A FAILED node restarted (e.g. to repair it) must not hold the others for RESTART_BOUND."""
    ctx, kube = context(None)  # type: ignore[arg-type]
    setup(ctx, kube, "a", "b")
    a, b = edit(ctx, "a", "3.0.9"), edit(ctx, "b", "3.0.9")
    a.registry = {"currentStatus": "FAILED"}
    await inference_node.apply_children(ctx, a)
    await inference_node.apply_children(ctx, b)
    assert deployments(kube) == ["a-mlnode"]
    a.deployment = {"replicas": 1, "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
                                              "availableReplicas": 1}}
    assert disruption.released(ctx, {("ns", "b")}) == [("ns", "b")]


# -- drain, then deregister ------------------------------------------------------------------------

def entry(timing: dict[str, Any] | None, enabled: bool = True) -> NodeEntry:
    return NodeEntry.model_validate({
        "node": {"id": "a", "host": "a", "inference_port": 5050, "poc_port": 8080, "max_concurrent": 500,
                 "models": {}, "hardware": []},
        "state": {"current_status": "INFERENCE", "admin_state": {"enabled": enabled, "epoch": 3}},
        **({"onboarding": {"timing": timing}} if timing is not None else {})})


def deleted(stamp: str, **meta: Any) -> dict[str, Any]:
    b = body("a", **meta)
    b["metadata"]["deletionTimestamp"] = stamp
    b["spec"]["drainTimeout"] = "1h30m"
    return b


NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("timing", "enabled", "stamp", "meta", "expected"), [
    (POC, True, "2026-06-01T11:00:00Z", {}, (True, False)),  # disable first, then wait out the PoC
    (POC, False, "2026-06-01T11:00:00Z", {}, (False, False)),
    ({**INFERENCE, "should_be_online": True}, False, "2026-06-01T11:00:00Z", {}, (False, False)),
    ({**INFERENCE, "confirmation_poc_active": True}, False, "2026-06-01T11:00:00Z", {}, (False, False)),
    (INFERENCE, True, "2026-06-01T11:00:00Z", {}, (True, True)),  # not scheduled: disable, delete
    (POC, False, "2026-06-01T10:29:59Z", {}, (False, True)),  # drainTimeout 1h30m passed
    (POC, True, "2026-06-01T11:00:00Z", {"annotations": {"gonka.ai/force-delete": "true"}}, (False, True)),
    (None, True, "2026-06-01T11:00:00Z", {}, (False, True)),  # the api reports no schedule (2025-08)
])
def test_drain_step(timing: dict[str, Any] | None, enabled: bool, stamp: str, meta: dict[str, Any],
                    expected: tuple[bool, bool]) -> None:
    step = disruption.drain_step(entry(timing, enabled), deleted(stamp, **meta), NOW)
    assert (step.disable, step.done) == expected, step.why


def test_drain_of_an_entry_already_gone_and_the_duration_format() -> None:
    assert disruption.drain_step(None, deleted("2026-06-01T11:00:00Z"), NOW).done
    assert disruption.parse_duration("1h30m").total_seconds() == 5400
    assert disruption.parse_duration("45s").total_seconds() == 45
    with pytest.raises(ValueError):
        disruption.parse_duration("")


async def test_a_deleted_node_is_disabled_drained_through_poc_then_deregistered() -> None:
    """The RegistryLoop against the real stand-in (frozen clock, PoC opened on demand)."""
    from fakekube import external_body, handled

    from gonka_operator.admin import AdminClient, create_http_client
    from gonka_operator.conditions import now_rfc3339
    from gonka_operator.simulator import run_simulator

    async with run_simulator(generation="latest", state_delay=0.1, block_time=0) as sim, \
            create_http_client(total_timeout=2) as http:
        ctx, kube = context(AdminClient(http, total_timeout=2))
        loop = RegistryLoop(ctx, sim.base_url)
        record = handled(ctx, external_body("a", sim.base_url))
        loop.mark(("ns", "a"))
        await loop.poll()
        await loop.sync([("ns", "a")], fresh=True)
        assert record.registration.ok and "a" in {n["node"]["id"] for n in sim.nodes()}
        sim.poc("open")
        record.body["metadata"]["deletionTimestamp"] = now_rfc3339()
        await loop.poll()
        await loop.sync([("ns", "a")], fresh=True)
        assert record.registration.reason == "Draining", record.registration
        assert FINALIZER in record.body["metadata"]["finalizers"] and kube.finalizers == []
        gone = {n["node"]["id"]: n for n in sim.nodes()}
        assert gone["a"]["state"]["admin_state"]["enabled"] is False
        assert kube.reasons("a").count("Draining") == 2  # disabled; waiting (each said once)
        assert loop.retry_at[("ns", "a")] > time.monotonic() + 0.5  # retried at the poll interval
        await loop.poll()
        await loop.sync([("ns", "a")], fresh=True)  # still PoC: still there, no new Event
        assert kube.finalizers == [] and kube.reasons("a").count("Draining") == 2
        sim.poc("close")
        await loop.poll()
        await loop.sync([("ns", "a")], fresh=True)
        assert kube.finalizers == [("a", False)]
        assert "a" not in {n["node"]["id"] for n in sim.nodes()}
        assert kube.reasons("a")[-1] == "Deregistered"


# -- the PodDisruptionBudget -----------------------------------------------------------------------

async def test_the_pdb_exists_only_during_poc_and_a_flip_marks_a_reconcile() -> None:
    """Issue 13's budget (create, finalizer, 3 children, 1 status): the PDB is a 4th child only while
    it protects something. Absent outside PoC = "loosened" for a one-replica Deployment."""
    from gonka_operator.drift import Repairs

    ctx, kube = context(None)  # type: ignore[arg-type]
    ctx.repairs = Repairs(ctx)
    loop = setup(ctx, kube, "a")
    record = ctx.inference[("ns", "a")]

    def pdbs() -> list[dict[str, Any]]:
        return [c for c in inference_node.desired_for(ctx, record) if c["kind"] == "PodDisruptionBudget"]

    assert pdbs() == []
    await inference_node.apply_children(ctx, record)
    assert ("PodDisruptionBudget", "a-mlnode") not in kube.applied + kube.deleted
    assert ("PodDisruptionBudget", "a-mlnode") in kube.gets  # it ran before: one read for a PDB left behind
    kube.gets.clear()
    await inference_node.apply_children(ctx, record)  # an idle reconcile: no read, no write
    assert kube.gets == [] and kube.deleted == []
    assert disruption.released(ctx, {("ns", "a")}) == [] and ctx.repairs.pending == {}  # nothing changed

    poll(loop, POC)
    [pdb] = pdbs()
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {
        "app.kubernetes.io/instance": "a", "app.kubernetes.io/component": "mlnode", "gonka.ai/inference-node": "a"}}}
    assert pdb["metadata"]["ownerReferences"][0]["uid"] == "uid-a"
    disruption.released(ctx, {("ns", "a")})
    assert list(ctx.repairs.pending) == [("InferenceNode", ("ns", "a"))]  # create it now
    ctx.repairs.pending.clear()
    await inference_node.apply_children(ctx, record)
    assert kube.applied[-1] == ("PodDisruptionBudget", "a-mlnode")
    disruption.released(ctx, {("ns", "a")})
    assert ctx.repairs.pending == {}  # applied: no further mark while the window stays open
    await inference_node.apply_children(ctx, record)
    assert kube.applied.count(("PodDisruptionBudget", "a-mlnode")) == 1  # idle inside the window: no write

    poll(loop, INFERENCE)
    disruption.released(ctx, {("ns", "a")})
    assert list(ctx.repairs.pending) == [("InferenceNode", ("ns", "a"))]  # delete it now
    await inference_node.apply_children(ctx, record)
    assert kube.deleted == [("PodDisruptionBudget", "a-mlnode")]
    poll(loop, POC)  # the next window creates it again (the digest of the last apply was dropped)
    await inference_node.apply_children(ctx, record)
    assert kube.applied.count(("PodDisruptionBudget", "a-mlnode")) == 2


# -- the network node's own pod (StatefulSet) ------------------------------------------------------

def statefulset(image: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "gonka-node", "namespace": "ns"},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "api", "image": image}]}}}}


def epoch_read(phase: str, height: int, index: int = 2, end: int = 160) -> dict[str, Any]:
    """`GET /v1/epochs/latest` as the stand-in (and upstream's public API) answers it."""
    return {"block_height": height, "latest_epoch": {"index": index, "poc_start_block_height": 100},
            "phase": phase, "is_confirmation_poc_active": False,
            "epoch_stages": {"epoch_index": index, "poc_start": 100, "poc_validation_end": end}}


def host_node(ctx: Context) -> Any:
    from fakekube import network
    nn = network(ctx, "gonka")
    nn.body["metadata"]["annotations"] = {}
    return nn


def test_the_window_end_is_fixed_once_per_window_rounded_to_the_minute() -> None:
    from fakekube import network
    ctx, _ = context(None)  # type: ignore[arg-type]
    nn = network(ctx, "gonka")
    t0 = datetime(2026, 6, 1, 12, 0, 10, tzinfo=UTC)
    disruption.observe_epoch(nn, epoch_read("Inference", 90), at=0.0, now=t0)
    disruption.observe_epoch(nn, epoch_read("Inference", 95), at=10.0, now=t0)  # 2 s per block, measured
    assert "window" not in nn.disruption
    disruption.observe_epoch(nn, epoch_read("PoCGenerate", 100), at=20.0, now=t0)
    assert nn.disruption["window"]["end"] == "2026-06-01T12:02Z"  # 60 blocks × 2 s = 120 s, to the minute
    # later reads within the same window never move it (no status write per poll), whatever the rate
    disruption.observe_epoch(nn, epoch_read("PoCValidate", 150), at=21.0, now=t0)
    assert nn.disruption["window"]["end"] == "2026-06-01T12:02Z"
    disruption.observe_epoch(nn, epoch_read("Inference", 161), at=40.0, now=t0)
    assert "window" not in nn.disruption
    # frozen clock (no block moved yet): the mainnet's ~5 s per block
    fresh = network(ctx, "other")
    disruption.observe_epoch(fresh, epoch_read("PoCGenerate", 100), at=0.0, now=t0)
    assert fresh.disruption["window"]["end"] == "2026-06-01T12:05Z"


async def test_a_network_node_pod_change_is_held_during_poc_with_the_time_until_it_ends() -> None:
    from gonka_operator.drift import Repairs
    ctx, kube = context(None)  # type: ignore[arg-type]
    ctx.repairs = Repairs(ctx)
    nn = host_node(ctx)
    kube.objects[("StatefulSet", "gonka-node")] = statefulset("api:0.2.14")
    service = {"kind": "Service", "metadata": {"name": "gonka-api"}}
    nn.host["epoch"] = {"id": 2, "phase": "Inference"}
    assert await disruption.hold_network(ctx, nn, [service, statefulset("api:0.2.15")]) == [
        service, statefulset("api:0.2.15")]
    assert kube.gets == []  # no window: nothing read

    nn.host["epoch"] = {"id": 2, "phase": "PoCGenerate"}
    disruption.observe_epoch(nn, epoch_read("PoCGenerate", 100), at=0.0,
                             now=datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    assert await disruption.hold_network(ctx, nn, [service, statefulset("api:0.2.15")]) == [service]
    held = nn.disruption["held"]
    assert held["reason"] == "PoCInProgress" and "until ~2026-06-01T12:05Z" in held["message"]
    assert "PoCGenerate" in held["message"] and "gonka.ai/force-update" in held["message"]
    assert kube.reasons("gonka") == ["PoCInProgress"]
    cond = disruption.condition(nn, [])
    assert cond is not None and (cond.type, cond.ok, cond.reason) == ("UpdatePending", True, "PoCInProgress")
    # the same template during PoC is not a restart: applied
    assert len(await disruption.hold_network(ctx, nn, [statefulset("api:0.2.14")])) == 1
    assert "held" not in nn.disruption
    await disruption.hold_network(ctx, nn, [statefulset("api:0.2.15")])
    assert disruption.release_network(ctx, ("ns", "gonka"), nn) is False and ctx.repairs.pending == {}

    nn.host["epoch"] = {"id": 2, "phase": "Inference"}  # the window closed: marked, then applied
    assert disruption.release_network(ctx, ("ns", "gonka"), nn) is True
    assert list(ctx.repairs.pending) == [("NetworkNode", ("ns", "gonka"))]
    assert len(await disruption.hold_network(ctx, nn, [statefulset("api:0.2.15")])) == 1
    assert kube.reasons("gonka")[-1] == "UpdateApplied" and "held" not in nn.disruption
    cond = disruption.condition(nn, [{"type": "UpdatePending"}])
    assert cond is not None and (cond.ok, cond.reason) == (False, "UpToDate")


async def test_confirmation_poc_holds_the_network_node_and_the_force_annotation_lets_it_through() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    nn = host_node(ctx)
    kube.objects[("StatefulSet", "gonka-node")] = statefulset("api:0.2.14")
    nn.host["epoch"] = {"id": 2, "phase": "Inference", "confirmationPoC": True}
    assert await disruption.hold_network(ctx, nn, [statefulset("api:0.2.15")]) == []
    assert "confirmation PoC" in nn.disruption["held"]["message"]
    nn.body["metadata"]["annotations"] = {"gonka.ai/force-update": "true"}
    assert len(await disruption.hold_network(ctx, nn, [statefulset("api:0.2.15")])) == 1


async def test_the_ml_hold_message_says_until_when() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    setup(ctx, kube, "a", timing=POC)
    nn = host_node(ctx)
    disruption.observe_epoch(nn, epoch_read("PoCGenerate", 100), at=0.0, now=datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    record = edit(ctx, "a", "3.0.9")
    await inference_node.apply_children(ctx, record)
    assert "until ~2026-06-01T12:05Z" in record.disruption["held"]["message"]


# -- drain: the epoch has turned --------------------------------------------------------------------

def test_the_drain_ends_when_the_epoch_has_turned_even_if_still_online() -> None:
    online = {**INFERENCE, "should_be_online": True}
    b = deleted("2026-06-01T11:00:00Z")
    assert not disruption.drain_step(entry(online, False), b, NOW, epoch=3, disabled_in=3).done
    step = disruption.drain_step(entry(online, False), b, NOW, epoch=4, disabled_in=3)
    assert step.done and "epoch" in step.why
    # unknown current epoch: should_be_online alone decides, as before
    assert not disruption.drain_step(entry(online, False), b, NOW, epoch=None, disabled_in=3).done


def test_the_drain_records_the_epoch_it_disabled_the_entry_in() -> None:
    from fakekube import network
    ctx, _ = context(None)  # type: ignore[arg-type]
    nn = network(ctx, "gonka")
    nn.host["epoch"] = {"id": 7, "phase": "Inference"}
    record = InferenceRecord(body=deleted("2026-06-01T11:00:00Z"))
    online = {**INFERENCE, "should_be_online": True}
    step = disruption.drain_for(ctx, record, entry(online, True), NOW)
    assert step.disable and not step.done and record.disruption["drain_epoch"] == 7
    nn.host["epoch"] = {"id": 8, "phase": "PoCGenerate"}  # the epoch turned (its PoC is open: not ours)
    assert disruption.drain_for(ctx, record, entry(POC, False), NOW).done
    # after a restart (nothing recorded), the entry's admin_state.epoch (3 here) is the disable epoch
    fresh = InferenceRecord(body=deleted("2026-06-01T11:00:00Z"))
    assert disruption.drain_for(ctx, fresh, entry(online, False), NOW).done
