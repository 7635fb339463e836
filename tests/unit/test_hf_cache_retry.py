"""A preload Job that failed for good is followed by a new Job (the next attempt) after a delay that
doubles per attempt; meanwhile status.cache is Failed with the Hub's message and a Warning Event says
so, once (builders/hf_cache.Retry/plan, preload_housekeeping.retry_due_preloads)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from fakekube import context, handled

from gonka_operator import drift, inference_node, preload_housekeeping
from gonka_operator.builders import hf_cache
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.status import Facts

HUB_ERROR = "LocalEntryNotFoundError: Got: ConnectError: [Errno 111] Connection refused"


def spec() -> InferenceNodeSpec:
    return InferenceNodeSpec.model_validate({"networkNodeRef": {"name": "gonka"}, "model": "Qwen/Qwen3-32B-FP8",
                                             "hfCache": {"size": "10Gi"}})


def body() -> dict[str, Any]:
    return {"apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode",
            "metadata": {"name": "gpu", "namespace": "ns", "uid": "uid-1", "generation": 1, "finalizers": []},
            "spec": {"networkNodeRef": {"name": "gonka"}, "model": "Qwen/Qwen3-32B-FP8", "hfCache": {"size": "10Gi"}}}


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def failed_job(attempt: int, at: float, delay: float) -> dict[str, Any]:
    """Attempt `attempt`'s Job as the watch delivers it once the Job controller gave up at `at`."""
    job = inference_node.desired_children(body(), preload_attempt=attempt,
                                          preload_retry=hf_cache.Retry(0, delay, 3600))
    (obj,) = [c for c in job if c["kind"] == "Job"]
    return {**obj, "status": {"failed": 1, "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": stamp(at)}]}}


def failed_pod(job: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{job}-x", "namespace": "ns", "creationTimestamp": "2026-12-01T00:00:00Z",
                         "labels": {"app.kubernetes.io/component": "hf-preload", "gonka.ai/inference-node": "gpu",
                                    "batch.kubernetes.io/job-name": job}},
            "status": {"phase": "Failed", "startTime": "2026-12-01T00:00:00Z", "containerStatuses": [
                {"name": "preload", "state": {"terminated": {"exitCode": 1, "message": json.dumps(
                    {"state": "Failed", "message": HUB_ERROR, "transient": True})}}}]}}


def test_the_delay_doubles_per_attempt_up_to_the_cap() -> None:
    retry = hf_cache.Retry(backoff_limit=6, base=60, cap=1800)
    assert [retry.delay(n) for n in range(1, 8)] == [60, 120, 240, 480, 960, 1800, 1800]
    assert retry.delay(10_000) == 1800


def test_each_attempt_is_a_job_of_its_own_name() -> None:
    s = spec()
    first = hf_cache.job_name("gpu", s)
    assert hf_cache.job_name("gpu", s, 1) == first and hf_cache.job_name("gpu", s, 2) == f"{first}-2"
    assert [hf_cache.attempt_of("gpu", s, hf_cache.job_name("gpu", s, n)) for n in (1, 2, 17)] == [1, 2, 17]
    assert hf_cache.attempt_of("gpu", s, f"{first}-x") is None and hf_cache.attempt_of("gpu", s, "other") is None
    assert hf_cache.attempt_of("gpu", s, f"{first}-1") is None  # attempt 1 has no suffix
    assert len(hf_cache.job_name("x" * 253, s, 999)) <= 63
    jobs = {hf_cache.job_name("gpu", s, n): {"status": {}} for n in (1, 3, 2)} | {"unrelated": {"status": {}}}
    assert hf_cache.current_job("gpu", s, jobs)[0] == 3


def test_plan_follows_a_failed_job_only_once_its_delay_has_passed() -> None:
    s = spec()
    t = 1_800_000_000.0
    job = failed_job(2, t, 5)  # attempt 2's delay: 2 * 5 s
    jobs = {job["metadata"]["name"]: hf_cache.job_facts(job)}
    assert job["metadata"]["annotations"][hf_cache.RETRY_ANNOTATION] == "10"
    assert job["spec"]["backoffLimit"] == 0
    assert hf_cache.plan("gpu", s, jobs, t + 9) == hf_cache.Plan(2, t + 10)
    assert hf_cache.plan("gpu", s, jobs, t + 10) == hf_cache.Plan(3)
    running = {hf_cache.job_name("gpu", s, 2): {"status": {"active": 1}}}
    assert hf_cache.plan("gpu", s, running, t + 1e6) == hf_cache.Plan(2)
    timeless = {hf_cache.job_name("gpu", s): {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}}
    assert hf_cache.plan("gpu", s, timeless, t + 1e6) == hf_cache.Plan(1)  # never a hot loop
    assert hf_cache.plan("gpu", s, {}, t) == hf_cache.Plan(1)


async def test_failed_then_the_next_attempt_after_its_delay_with_one_event() -> None:
    ctx, kube = context(None, preload_retry_seconds=30, preload_backoff_limit=0)  # type: ignore[arg-type]
    record = handled(ctx, body())
    record.registration = Facts(None, "WaitingForCache", "registered once the HF cache is Ready")
    ctx.repairs = drift.Repairs(ctx)
    first = failed_job(1, time.time(), 30)
    # the kubelet reports the pod failed, then the Job controller gives up (backoffLimit 0)
    await drift.on_child_event(ctx, "ADDED", {**first, "status": {"active": 1}})
    await drift.on_child_event(ctx, "ADDED", failed_pod(first["metadata"]["name"]))
    await drift.on_child_event(ctx, "MODIFIED", first)
    cache = kube.statuses[("ns", "gpu")]["cache"]
    assert cache["state"] == "Failed" and HUB_ERROR in cache["message"]
    assert "attempt 2 starts at" in cache["message"]
    assert kube.reasons("gpu").count("PreloadFailed") == 1
    assert HUB_ERROR in next(m for n, _, r, m in kube.events if r == "PreloadFailed")
    await drift.on_child_event(ctx, "MODIFIED", failed_pod(first["metadata"]["name"]))
    await inference_node.write_status(ctx, record)
    assert kube.reasons("gpu").count("PreloadFailed") == 1, "one Event per failed attempt"
    assert await preload_housekeeping.retry_due_preloads(ctx) == []  # not yet: 30 s
    assert inference_node.ml_replicas(record) == 0

    old = failed_job(1, time.time() - 31, 30)  # the delay has passed
    await drift.on_child_event(ctx, "MODIFIED", old)
    assert await preload_housekeeping.retry_due_preloads(ctx) == [("ns", "gpu")]
    kube.applied.clear()
    await inference_node.apply_children(ctx, record)
    second = hf_cache.job_name("gpu", spec(), 2)
    assert ("Job", second) in kube.applied and ("Job", first["metadata"]["name"]) in kube.deleted
    (job,) = [c for c in inference_node.desired_for(ctx, record) if c["kind"] == "Job"]
    assert job["metadata"]["name"] == second and job["metadata"]["annotations"][hf_cache.RETRY_ANNOTATION] == "60"
    view = inference_node.cache_view(record)
    assert view.status["state"] == "Downloading" and view.status["job"] == second and view.status["attempt"] == 2
    await drift.on_child_event(ctx, "DELETED", old)
    assert inference_node.cache_view(record).status["job"] == second, "the pruned attempt does not come back"
    assert await preload_housekeeping.retry_due_preloads(ctx) == []

    # attempt 2 fails too: Failed again, a second Event
    await drift.on_child_event(ctx, "MODIFIED", failed_job(2, time.time(), 30))
    assert kube.statuses[("ns", "gpu")]["cache"]["state"] == "Failed"
    assert kube.reasons("gpu").count("PreloadFailed") == 2


async def test_a_restart_carries_on_with_the_latest_attempt() -> None:
    """Right after a restart no Job event has come yet: the operator lists the Jobs and keeps the
    latest attempt (and its backoff), never starting over at attempt 1."""
    ctx, kube = context(None, preload_retry_seconds=30)  # type: ignore[arg-type]
    record = handled(ctx, body())
    third = failed_job(3, time.time(), 30)
    kube.listing = [third]
    await inference_node.apply_children(ctx, record)
    assert ("Job", hf_cache.job_name("gpu", spec())) not in kube.applied
    (job,) = [c for c in inference_node.desired_for(ctx, record) if c["kind"] == "Job"]
    assert job["metadata"]["name"] == third["metadata"]["name"]
    assert inference_node.cache_view(record).status["state"] == "Failed"
