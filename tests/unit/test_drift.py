"""drift.py and children.py: what a child event marks, and how a child the API refuses is handled."""

from __future__ import annotations

import asyncio

import pytest
from fakekube import context, handled

from gonka_operator import drift, inference_node
from gonka_operator.builders import hf_cache
from gonka_operator.children import ApplyRefused, apply_child
from gonka_operator.kube import KubeError
from gonka_operator.models.inference_node import InferenceNodeSpec

UID = "uid-ns-gpu"


def ml_body() -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode",
            "metadata": {"name": "gpu", "namespace": "ns", "uid": UID, "generation": 1, "finalizers": []},
            "spec": {"networkNodeRef": {"name": "gonka"}, "model": "Qwen/Qwen3-32B-FP8", "gpus": 1,
                     "hfCache": {"size": "10Gi"}}}


def child(kind: str, name: str, owner_uid: str = UID) -> dict:  # type: ignore[type-arg]
    return {"kind": kind, "metadata": {"name": name, "namespace": "ns", "labels": {"gonka.ai/inference-node": "gpu"},
                                       "ownerReferences": [{"apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode",
                                                            "name": "gpu", "uid": owner_uid}]}}


def test_what_needs_a_reconcile() -> None:
    desired = inference_node.desired_children(ml_body())
    deployment = next(c for c in desired if c["kind"] == "Deployment")
    assert not drift.needs_reconcile(desired, {**deployment, "status": {"replicas": 1}}, False, UID)  # status only
    assert drift.needs_reconcile(desired, deployment, True, UID)  # deleted
    edited = {**deployment, "spec": {**deployment["spec"], "strategy": {"type": "RollingUpdate"}}}
    assert drift.needs_reconcile(desired, edited, False, UID)
    assert drift.needs_reconcile(desired, child("Deployment", "gpu-explorer"), False, UID)  # to prune
    assert not drift.needs_reconcile(desired, child("Deployment", "other", owner_uid="someone"), False, UID)
    assert not drift.needs_reconcile(desired, child("PersistentVolumeClaim", "old-cache"), False, UID)  # never


async def test_a_desired_object_the_api_refuses_is_never_a_deletion() -> None:
    """Critical 2: the live object is fine, the desired one is invalid (requests above limits)."""
    ctx, kube = context(None)  # type: ignore[arg-type]
    desired = next(c for c in inference_node.desired_children(ml_body()) if c["kind"] == "Deployment")
    refusal = KubeError(422, "Deployment.apps \"gpu-mlnode\" is invalid: must be less than or equal to memory limit")
    kube.refuse[("Deployment", "gpu-mlnode")] = refusal
    kube.refuse_dry_run[("Deployment", "gpu-mlnode")] = refusal
    with pytest.raises(ApplyRefused, match="memory limit"):
        await apply_child(ctx, desired)
    assert kube.deleted == []


async def test_a_live_edit_the_apply_cannot_merge_into_is_replaced() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    desired = next(c for c in inference_node.desired_children(ml_body()) if c["kind"] == "Deployment")
    kube.refuse[("Deployment", "gpu-mlnode")] = KubeError(422, "spec.strategy.rollingUpdate: Forbidden")
    await apply_child(ctx, desired)
    assert kube.deleted == [("Deployment", "gpu-mlnode")] and kube.applied == [("Deployment", "gpu-mlnode")]


async def test_child_events_only_mark_and_a_burst_is_one_reconcile() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    record = handled(ctx, ml_body())
    ctx.repairs = repairs = drift.Repairs(ctx)
    desired = inference_node.desired_children(ml_body())
    for obj in desired:
        await drift.on_child_event(ctx, "DELETED", obj)
    assert kube.applied == []  # the event handler applies nothing itself
    assert list(repairs.pending) == [("InferenceNode", ("ns", "gpu"))]
    repairs.start()
    for _ in range(50):
        await asyncio.sleep(0.02)
        if repairs.pending == {} and kube.applied:
            break
    await repairs.stop()
    # what reconcile applies: the children plus the ML Deployment's PodDisruptionBudget (desired_for)
    assert sorted(kube.applied) == sorted((c["kind"], c["metadata"]["name"])
                                          for c in inference_node.desired_for(ctx, record))
    assert record.apply_error is None


async def test_unwanted_children_are_pruned_never_pvcs() -> None:
    """Major 7: the node switched to spec.external: its Deployment, Service, NetworkPolicy go."""
    ctx, kube = context(None)  # type: ignore[arg-type]
    body = ml_body()
    record = handled(ctx, body)
    ctx.repairs = drift.Repairs(ctx)
    for obj in inference_node.desired_children(body):
        await drift.on_child_event(ctx, "ADDED", obj)
    assert ("Deployment", "gpu-mlnode") in record.children
    job = hf_cache.job_name("gpu", InferenceNodeSpec.model_validate(body["spec"]))  # the preload Job goes too
    body["spec"] = {"networkNodeRef": {"name": "gonka"}, "model": "Qwen/Qwen3-32B-FP8",
                    "external": {"host": "10.0.0.9"}}
    await inference_node.apply_children(ctx, record)
    assert sorted(kube.deleted) == [("Deployment", "gpu-mlnode"), ("Job", job),
                                    ("NetworkPolicy", "gpu-mlnode"), ("Service", "gpu-mlnode")]


def test_a_job_differing_from_the_desired_one_is_no_drift_a_deleted_one_is() -> None:
    """Jobs are created once (children.create_once): after an operator upgrade the desired preload
    Job carries the new image, the live one the old: nothing to repair. Deleted, it is created again."""
    desired = inference_node.desired_children(ml_body())
    job = next(c for c in desired if c["kind"] == "Job")
    container = {**job["spec"]["template"]["spec"]["containers"][0], "image": "operator:previous"}
    live = {**job, "spec": {**job["spec"], "template": {**job["spec"]["template"], "spec": {
        **job["spec"]["template"]["spec"], "containers": [container]}}}}
    assert not drift.needs_reconcile(desired, live, False, UID)
    assert drift.needs_reconcile(desired, live, True, UID)
