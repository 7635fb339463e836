"""Write amplification of an InferenceNode's reconcile (issue 13): an unchanged child is not applied
again (an unchanged server-side apply is still a PATCH, counted as a write by the API server), a PoC
window flip creates or deletes only the PodDisruptionBudget, the cache gate's 0 -> 1 re-applies only the
Deployment; a child that drifted or was deleted is applied again. Kubernetes side recorded by
tests/unit/fakekube.py."""

from __future__ import annotations

import copy
from typing import Any

from fakekube import INFERENCE, POC, URL, FakeKube, context, poll

from gonka_operator import drift, inference_node
from gonka_operator.context import Context, InferenceRecord
from gonka_operator.kube import KubeError
from gonka_operator.poller import Registries, RegistryLoop
from gonka_operator.registry import FINALIZER
from gonka_operator.status import Facts


def body(name: str, hf_cache: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1,
                     "finalizers": [FINALIZER], "resourceVersion": "1"},
        "spec": {"networkNodeRef": {"name": "gonka"}, "model": "Qwen/Qwen3-32B-FP8", "gpus": 1,
                 "hardwareType": "H100", "hfCache": hf_cache or {"hostPath": "/mnt/shared"}},
    }


def setup(ctx: Context, name: str, **kw: Any) -> tuple[InferenceRecord, RegistryLoop]:
    ctx.registries = Registries(ctx)
    ctx.repairs = drift.Repairs(ctx)  # not started: marks are only recorded
    loop = ctx.registries.loops[URL] = RegistryLoop(ctx, URL)
    record = ctx.inference[("ns", name)] = InferenceRecord(body=body(name, **kw))
    record.handled = record.finalized = True
    record.admin_url = URL
    poll(loop, INFERENCE)
    return record, loop


def kinds(kube: FakeKube) -> list[str]:
    return sorted(kind for kind, _ in kube.applied)


async def test_a_reconcile_of_an_unchanged_node_sends_no_apply() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    record, _ = setup(ctx, "a")
    await inference_node.apply_children(ctx, record)
    assert kinds(kube) == ["Deployment", "NetworkPolicy", "Service"]  # the PDB only during PoC (disruption.py)
    kube.applied.clear()
    await inference_node.apply_children(ctx, record)  # e.g. kopf's update on a metadata-only change
    await inference_node.apply_children(ctx, record)
    assert kube.applied == []


async def test_a_poc_window_flip_creates_or_deletes_only_the_pdb() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    record, loop = setup(ctx, "a")
    record.registration = Facts(True, "Registered", "registered")  # only a registered node has a window
    await inference_node.apply_children(ctx, record)
    kube.applied.clear()
    poll(loop, POC)
    await inference_node.apply_children(ctx, record)
    assert kube.applied == [("PodDisruptionBudget", "a-mlnode")]
    kube.applied.clear()
    poll(loop, INFERENCE)
    await inference_node.apply_children(ctx, record)
    assert kube.applied == [] and kube.deleted == [("PodDisruptionBudget", "a-mlnode")]


async def test_registration_after_the_cache_gate_applies_the_deployment_once() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    record, _ = setup(ctx, "a", hf_cache={"size": "10Gi"})  # preload Job: replicas 0 until the cache is Ready
    await inference_node.apply_children(ctx, record)
    deployment = next(c for c in inference_node.desired_for(ctx, record) if c["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 0
    job = next(name for kind, name in kube.applied if kind == "Job")
    kube.applied.clear()
    record.jobs[job] = {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    assert inference_node.cache_view(record).ready
    await inference_node.apply_children(ctx, record)  # the cache became Ready: scale the ML pod up
    assert kube.applied == [("Deployment", "a-mlnode")]
    kube.applied.clear()
    record.deployment = {"replicas": 1, "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                                                   "availableReplicas": 1}}  # the pod is up: registered next
    await inference_node.apply_children(ctx, record)
    assert kube.applied == []


async def test_a_child_edited_or_deleted_behind_our_back_is_applied_again() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    record, _ = setup(ctx, "a")
    await inference_node.apply_children(ctx, record)
    desired = {c["kind"]: c for c in inference_node.desired_for(ctx, record)}
    kube.applied.clear()

    service = copy.deepcopy(desired["Service"])  # its own event, unchanged: nothing to do
    await drift.on_child_event(ctx, "MODIFIED", service)
    await inference_node.apply_children(ctx, record)
    assert kube.applied == []

    edited = copy.deepcopy(desired["NetworkPolicy"])  # someone edits a field we own
    edited["spec"]["ingress"] = []
    await drift.on_child_event(ctx, "MODIFIED", edited)
    assert ("InferenceNode", ("ns", "a")) in ctx.repairs.pending  # type: ignore[union-attr]
    await inference_node.apply_children(ctx, record)
    assert kube.applied == [("NetworkPolicy", "a-mlnode")]
    kube.applied.clear()

    await drift.on_child_event(ctx, "DELETED", copy.deepcopy(desired["Service"]))
    await inference_node.apply_children(ctx, record)
    assert kube.applied == [("Service", "a-mlnode")]


async def test_a_refused_child_is_sent_again_by_the_retry() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    record, _ = setup(ctx, "a")
    kube.refuse[("Service", "a-mlnode")] = KubeError(422, "refused")
    kube.refuse_dry_run[("Service", "a-mlnode")] = KubeError(422, "refused")
    await inference_node.apply_children(ctx, record)
    assert record.apply_error
    kube.refuse.clear()
    kube.refuse_dry_run.clear()
    kube.applied.clear()
    await inference_node.apply_children(ctx, record)
    assert kube.applied == [("Service", "a-mlnode")]
    assert record.apply_error is None


POD_UP = {"replicas": 1, "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                                    "availableReplicas": 1,
                                    "conditions": [{"type": "Available", "status": "True"}]}}


async def test_a_new_nodes_facts_each_within_the_window_of_the_last_are_one_status_write() -> None:
    """Waiting for the pod, the pod up, registered: 0.2 s apart with a 0.3 s window (0.4 s from the
    first to the last, more than one window) -> one write, after the last fact, carrying all."""
    import asyncio

    from gonka_operator.context import PENDING

    ctx, kube = context(None, status_coalesce_seconds=0.3)  # type: ignore[arg-type]
    record, _ = setup(ctx, "a")
    record.observed_generation = 1
    assert record.registration.reason == PENDING
    record.registration = Facts(None, "WaitingForWorkload", "registered once the mlnode pod is up")
    await inference_node.write_status(ctx, record)
    await asyncio.sleep(0.2)
    record.deployment = POD_UP
    await inference_node.write_status(ctx, record)  # the pod is up ...
    await asyncio.sleep(0.2)
    record.registration = Facts(True, "Registered", "registered")
    await inference_node.write_status(ctx, record)  # ... and registered
    await asyncio.sleep(0.2)
    assert kube.patches == []  # still within the window of the last fact
    await asyncio.sleep(0.3)
    assert len(kube.patches) == 1
    conditions = {c["type"]: c["status"] for c in kube.statuses[("ns", "a")]["conditions"]}
    assert conditions["Registered"] == conditions["WorkloadAvailable"] == conditions["Ready"] == "True"


async def test_a_new_nodes_first_status_waits_a_few_windows_for_its_pod() -> None:
    """Never written yet: the first status waits up to MAX_WINDOWS windows, so a pod that is up (and
    the node registered) 0.6 s after the first fact, with a 0.2 s window, still makes one write."""
    import asyncio

    ctx, kube = context(None, status_coalesce_seconds=0.2)  # type: ignore[arg-type]
    record, _ = setup(ctx, "a")
    record.observed_generation = 1
    record.registration = Facts(None, "WaitingForWorkload", "registered once the mlnode pod is up")
    await inference_node.write_status(ctx, record)
    await asyncio.sleep(0.6)
    assert kube.patches == []
    record.deployment = POD_UP
    record.registration = Facts(True, "Registered", "registered")
    await inference_node.write_status(ctx, record)
    await asyncio.sleep(0.3)
    assert len(kube.patches) == 1
    assert {c["type"]: c["status"] for c in kube.statuses[("ns", "a")]["conditions"]}["Ready"] == "True"
    record.registry = {"currentStatus": "INFERENCE"}  # written before: a later fact waits one window only
    await inference_node.write_status(ctx, record)
    await asyncio.sleep(0.3)
    assert len(kube.patches) == 2


async def test_a_fact_after_the_window_gets_its_own_write() -> None:
    import asyncio

    ctx, kube = context(None, status_coalesce_seconds=0.2)  # type: ignore[arg-type]
    record, _ = setup(ctx, "a")
    record.observed_generation = 1
    record.deployment = POD_UP
    record.registration = Facts(True, "Registered", "registered")
    await inference_node.write_status(ctx, record)
    await asyncio.sleep(0.2 * inference_node.MAX_WINDOWS + 0.2)  # a first status: up to MAX_WINDOWS windows
    assert len(kube.patches) == 1
    await inference_node.write_status(ctx, record)  # nothing new: nothing written, nothing scheduled
    assert record.status_task is None
    record.registry = {"currentStatus": "INFERENCE"}  # e.g. the first poll, 10 s later
    await inference_node.write_status(ctx, record)
    await asyncio.sleep(0.4)
    assert len(kube.patches) == 2
    assert kube.patches[1][2] == {"registry": {"currentStatus": "INFERENCE"}}


async def test_facts_that_never_pause_are_written_at_least_every_few_windows() -> None:
    """The window restarts with each fact, but a change waits at most MAX_WINDOWS windows."""
    import asyncio

    ctx, kube = context(None, status_coalesce_seconds=0.1)  # type: ignore[arg-type]
    record, _ = setup(ctx, "a")
    record.observed_generation = 1
    for i in range(2 * inference_node.MAX_WINDOWS * 2):  # a new fact every 0.05 s for 2 x the bound
        record.registration = Facts(None, "WaitingForWorkload", f"fact {i}")
        await inference_node.write_status(ctx, record)
        await asyncio.sleep(0.05)
    assert 1 <= len(kube.patches) <= 3


async def test_a_fact_that_arrives_while_the_coalesced_write_is_sent_gets_written() -> None:
    import asyncio

    ctx, kube = context(None, status_coalesce_seconds=0.2)  # type: ignore[arg-type]
    record, _ = setup(ctx, "a")
    record.observed_generation = 1
    record.registration = Facts(None, "WaitingForWorkload", "registered once the mlnode pod is up")
    await inference_node.write_status(ctx, record)
    record.registration = Facts(None, "WaitingForCache", "registered once the HF cache is Ready")
    await inference_node.write_status(ctx, record)  # deferred
    sent = asyncio.Event()
    patch_status = kube.patch_status

    async def slow_patch(*args: Any) -> None:
        await patch_status(*args)
        sent.set()
        await asyncio.sleep(0.1)  # the API server takes its time to answer

    kube.patch_status = slow_patch  # type: ignore[method-assign]
    await sent.wait()  # the coalesced write is on the wire ...
    record.registration = Facts(True, "Registered", "registered")
    await inference_node.write_status(ctx, record)  # ... when the next fact arrives
    await asyncio.sleep(0.6)
    assert {c["type"]: c["reason"] for c in kube.statuses[("ns", "a")]["conditions"]}["Registered"] == "Registered"


async def test_the_cr_shows_the_cache_ready_before_the_ml_pod_it_gates_is_scaled_up() -> None:
    """Coalescing must not let the workload run ahead of what the CR says: a cache the CR shows as
    Downloading is written Ready before the Deployment goes 0 -> 1 (found by the e2e preload test:
    the ML pod started while status.cache still said Downloading)."""
    ctx, kube = context(None)  # type: ignore[arg-type]
    record, _ = setup(ctx, "a", hf_cache={"size": "10Gi"})
    await inference_node.apply_children(ctx, record)
    record.observed_generation = 1
    hold = inference_node.registration_hold(record)  # what the registry loop records: waiting for the cache
    assert hold is not None
    record.registration = hold
    await inference_node._write_now(ctx, record)  # the CR shows Downloading
    assert kube.statuses[("ns", "a")]["cache"]["state"] == "Downloading"
    order: list[str] = []
    apply, patch_status = kube.apply, kube.patch_status

    async def recorded_apply(obj: dict[str, Any]) -> dict[str, Any]:
        order.append(f"apply {obj['kind']} replicas={obj.get('spec', {}).get('replicas')}")
        return await apply(obj)

    async def recorded_status(*args: Any) -> None:
        order.append(f"status cache={(args[-1].get('cache') or {}).get('state')}")
        await patch_status(*args)

    kube.apply, kube.patch_status = recorded_apply, recorded_status  # type: ignore[method-assign]
    job = next(name for kind, name in kube.applied if kind == "Job")
    record.jobs[job] = {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    await inference_node.apply_children(ctx, record)
    assert order[:2] == ["status cache=Ready", "apply Deployment replicas=1"], order
