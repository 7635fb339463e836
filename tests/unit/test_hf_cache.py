"""The HF-cache preload Job (builders/hf_cache.py), offline mode, and the gate: the ML pod starts only
once the cache is Ready, registration only once the pod is up, a model change downloads first."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fakekube import context, handled

from gonka_operator import drift, inference_node
from gonka_operator.builders import hf_cache
from gonka_operator.builders.common import Owner
from gonka_operator.builders.inference_node import build_deployment, build_preload_job, hf_volume
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.poller import RegistryLoop

OWNER = Owner("InferenceNode", "gpu", "ns", "uid-1")
COMMIT = "a" * 40


def spec(**extra: Any) -> InferenceNodeSpec:
    body = {"networkNodeRef": {"name": "gonka"}, "model": "Qwen/Qwen3-32B-FP8", "gpus": 1,
            "gpuProduct": "NVIDIA-H100-80GB-HBM3", "hfCache": {"size": "10Gi"}, **extra}
    return InferenceNodeSpec.model_validate(body)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def ml_body(**extra: Any) -> dict[str, Any]:
    return {"apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode",
            "metadata": {"name": "gpu", "namespace": "ns", "uid": "uid-1", "generation": 1, "finalizers": []},
            "spec": {"networkNodeRef": {"name": "gonka"}, "model": "Qwen/Qwen3-32B-FP8", "gpus": 1,
                     "hfCache": {"size": "10Gi"}, **extra}}


# -- the Job ----------------------------------------------------------------------------------------

def test_preload_job_runs_the_entry_point_on_the_ml_pods_volume_and_node() -> None:
    s = spec(env=[{"name": "HF_ENDPOINT", "value": "http://mirror.internal"}, {"name": "OTHER", "value": "x"}],
             hfTokenSecretRef={"name": "hf", "key": "token"})
    job = build_preload_job(OWNER, s, "registry.example/gonka-operator:1")
    assert job is not None and job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/gonka-operator:1"
    assert container["command"] == ["gonka-operator", "preload-model", "--repo", "Qwen/Qwen3-32B-FP8"]
    env = env_of(container)
    assert env["HF_HOME"] == "/root/.cache" and env["HF_ENDPOINT"] == "http://mirror.internal"
    assert env["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert "HF_HUB_OFFLINE" not in env and "OTHER" not in env
    assert {"name": "hf-cache", "mountPath": "/root/.cache"} in container["volumeMounts"]
    assert hf_volume(OWNER, s) in pod["volumes"]
    deployment = build_deployment(OWNER, s, "gonka")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == deployment["nodeSelector"] and pod["tolerations"] == deployment["tolerations"]
    assert "nvidia.com/gpu" not in str(container["resources"])  # no GPU held while downloading
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["spec"]["backoffLimit"] == hf_cache.BACKOFF_LIMIT
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [hf_cache.EXIT_PERMANENT]
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "hf-preload"


def test_the_override_commit_is_the_revision_and_names_a_new_job() -> None:
    plain = spec()
    pinned = spec(modelOverride={"hfRepo": "my-org/custom", "hfCommit": COMMIT})
    job = build_preload_job(OWNER, pinned, "img")
    assert job is not None
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-4:] == ["--repo", "my-org/custom",
                                                                               "--revision", COMMIT]
    assert hf_cache.job_name("gpu", plain) == hf_cache.job_name("gpu", spec())
    assert hf_cache.job_name("gpu", plain) != hf_cache.job_name("gpu", pinned)
    assert hf_cache.job_name("gpu", plain) != hf_cache.job_name("gpu", spec(model="Qwen/Qwen3-235B-A22B"))
    assert len(hf_cache.job_name("x" * 253, plain)) <= 63


def test_the_job_name_covers_model_revision_and_volume_but_not_the_image() -> None:
    """A Job that exists by name is never replaced: the name changes exactly when the download's
    inputs do (so an operator upgrade with a new image re-runs no preload)."""
    names = {hf_cache.job_name("gpu", s) for s in (
        spec(), spec(hfCache={"existingClaim": "weights", "preload": True}),
        spec(hfCache={"hostPath": "/mnt/hf", "preload": True}),
        spec(hfCache={"hostPath": "/mnt/other", "preload": True}))}
    assert len(names) == 4
    jobs = [build_preload_job(OWNER, spec(), image) for image in ("op:1", "op:2")]
    assert jobs[0] and jobs[1] and jobs[0]["metadata"]["name"] == jobs[1]["metadata"]["name"]
    assert hf_cache.job_name("gpu", spec()) == jobs[0]["metadata"]["name"]
    assert hf_cache.job_name("gpu", spec(hfCache={"size": "20Gi"})) == hf_cache.job_name("gpu", spec())


def test_an_hf_token_from_spec_env_reaches_the_job_as_the_same_secret_ref_never_a_value() -> None:
    ref = {"secretKeyRef": {"name": "hf-secret", "key": "token"}}
    s = spec(env=[{"name": "HF_TOKEN", "valueFrom": ref}, {"name": "HF_ENDPOINT", "value": "http://mirror"}])
    job = build_preload_job(OWNER, s, "img")
    assert job is not None
    (container,) = job["spec"]["template"]["spec"]["containers"]
    tokens = [e for e in container["env"] if e["name"] == "HF_TOKEN"]
    assert tokens == [{"name": "HF_TOKEN", "valueFrom": ref}]
    # hfTokenSecretRef wins over spec.env (one HF_TOKEN only); a literal value is never copied
    both = spec(env=[{"name": "HF_TOKEN", "valueFrom": ref}], hfTokenSecretRef={"name": "hf", "key": "t"})
    job = build_preload_job(OWNER, both, "img")
    assert job is not None
    assert [e for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "HF_TOKEN"] == [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}}]
    literal = build_preload_job(OWNER, spec(env=[{"name": "HF_TOKEN", "value": "hf_plain"}]), "img")
    assert literal is not None and "hf_plain" not in str(literal)


@pytest.mark.parametrize(("cache", "preloaded"), [
    ({"size": "10Gi"}, True),
    ({"size": "10Gi", "preload": False}, False),
    ({"hostPath": "/mnt/shared"}, False),  # the host's own directory: declared filled unless asked
    ({"hostPath": "/mnt/shared", "preload": True}, True),
    ({"existingClaim": "shared"}, False),
    ({"existingClaim": "shared", "preload": True}, True),
])
def test_preload_default_and_choice(cache: dict[str, Any], preloaded: bool) -> None:
    children = inference_node.desired_children(ml_body(hfCache=cache))
    jobs = [c for c in children if c["kind"] == "Job"]
    deployment = next(c for c in children if c["kind"] == "Deployment")
    assert bool(jobs) == preloaded
    assert deployment["spec"]["replicas"] == (0 if preloaded else 1)
    if jobs:
        volume = jobs[0]["spec"]["template"]["spec"]["volumes"][0]
        assert volume == deployment["spec"]["template"]["spec"]["volumes"][0]


def test_offline_mode_is_a_choice() -> None:
    online = env_of(build_deployment(OWNER, spec(), "gonka")["spec"]["template"]["spec"]["containers"][0])
    assert "HF_HUB_OFFLINE" not in online  # upstream since mlnode 3.0.10 / v0.2.14's compose
    offline = build_deployment(OWNER, spec(hfCache={"hostPath": "/mnt/shared", "offline": True}), "gonka")
    assert env_of(offline["spec"]["template"]["spec"]["containers"][0])["HF_HUB_OFFLINE"] == "1"


# -- reading the Job ----------------------------------------------------------------------------------

def test_read_job_states() -> None:
    s = spec()
    name = hf_cache.job_name("gpu", s)
    assert hf_cache.read_job(s, "gpu", None, []).status["state"] == "Downloading"
    running = hf_cache.read_job(s, "gpu", {"status": {"active": 1}}, [])
    assert (running.status["state"], running.ok, running.status["job"]) == ("Downloading", False, name)
    done = hf_cache.read_job(s, "gpu", {"status": {"succeeded": 1, "conditions": [
        {"type": "Complete", "status": "True"}]}}, [])
    assert done.ready and done.status["state"] == "Ready"  # kwok's pods leave no termination message
    failed = hf_cache.read_job(s, "gpu", {"status": {"failed": 7, "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
         "message": "Job has reached the specified backoff limit"}]}}, [])
    assert failed.status["state"] == "Failed" and "backoff limit" in failed.message
    declared = hf_cache.read_job(spec(hfCache={"hostPath": "/mnt/shared"}), "gpu", None, [])
    assert declared.ready and declared.reason == "Declared"


def test_a_log_tail_is_the_message_when_the_entry_point_could_not_write_one() -> None:
    s = spec()
    pod = {"job": hf_cache.job_name("gpu", s), "status": {"phase": "Failed", "containerStatuses": [
        {"name": "preload", "state": {"terminated": {"exitCode": 127, "message": "line1\nexec: gonka-operator: "
                                                     "not found\n"}}}]}}
    view = hf_cache.read_job(s, "gpu", {"status": {"failed": 1, "active": 1}}, [pod])
    assert "exec: gonka-operator: not found" in view.message


# -- the gate ----------------------------------------------------------------------------------------

def job_event(name: str, **status: Any) -> dict[str, Any]:
    """The Job as the watch delivers it: what the operator applied for the model `name` belongs to, with
    a status."""
    specs = [ml_body(), ml_body(modelOverride={"hfRepo": "my-org/custom", "hfCommit": COMMIT})]
    jobs = [c for body in specs for c in inference_node.desired_children(body) if c["kind"] == "Job"]
    return {**next(j for j in jobs if j["metadata"]["name"] == name), "status": status}


def deployment_event(replicas: int, available: bool) -> dict[str, Any]:
    status: dict[str, Any] = {"replicas": replicas}
    if available:
        status |= {"availableReplicas": 1, "conditions": [{"type": "Available", "status": "True"}]}
    desired = next(c for c in inference_node.desired_children(ml_body(), replicas=replicas)
                   if c["kind"] == "Deployment")
    return {**desired, "status": status}


class Marks:
    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []

    async def mark(self, key: tuple[str, str]) -> None:
        self.keys.append(key)


async def test_ml_pod_not_started_before_the_cache_is_ready_then_registered_once_up() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    record = handled(ctx, ml_body())
    ctx.repairs = drift.Repairs(ctx)
    ctx.registries = marks = Marks()  # type: ignore[assignment]
    await inference_node.apply_children(ctx, record)
    jname = hf_cache.job_name("gpu", spec(gpuProduct=None))
    assert ("Job", jname) in kube.applied
    assert record.deployment is not None and record.deployment["replicas"] == 0  # no ML pod yet
    assert inference_node.registration_hold(record) is not None
    assert inference_node.registration_hold(record).reason == "WaitingForCache"  # type: ignore[union-attr]
    status = inference_node.compute_status(record)
    assert status["cache"]["state"] == "Downloading"
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["CacheReady"]["status"] == "False" and conds["Ready"]["reason"] == "WaitingForCache"
    await drift.on_child_event(ctx, "MODIFIED", job_event(jname, active=1))
    assert inference_node.ml_replicas(record) == 0 and not ctx.repairs.pending
    await drift.on_child_event(ctx, "MODIFIED", job_event(jname, succeeded=1, conditions=[
        {"type": "Complete", "status": "True"}]))
    assert list(ctx.repairs.pending) == [("InferenceNode", ("ns", "gpu"))]  # scale up now
    assert marks.keys == [("ns", "gpu")]
    kube.applied.clear()
    await inference_node.apply_children(ctx, record)
    deployment = next(c for c in inference_node.desired_for(ctx, record) if c["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1 and ("Deployment", "gpu-mlnode") in kube.applied
    hold = inference_node.registration_hold(record)
    assert hold is not None and hold.reason == "WaitingForWorkload"  # the pod is not up yet
    await drift.on_child_event(ctx, "MODIFIED", deployment_event(1, available=True))
    assert inference_node.registration_hold(record) is None
    assert marks.keys == [("ns", "gpu"), ("ns", "gpu")]  # the loop registers it now
    assert {c["type"]: c for c in inference_node.compute_status(record)["conditions"]}["CacheReady"]["status"] \
        == "True"


async def test_the_registry_loop_holds_registration_and_says_why() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    record = handled(ctx, ml_body())
    loop = RegistryLoop(ctx, "http://admin:9200")
    loop.snapshot = {}
    await loop._register(("ns", "gpu"), record, {}, None)  # no admin client: it must not be called
    assert record.registration.reason == "WaitingForCache" and record.registration.ok is None
    assert kube.patches and kube.patches[-1][2]["cache"]["state"] == "Downloading"


async def test_a_model_change_downloads_first_and_keeps_the_serving_pod() -> None:
    ctx, kube = context(None)  # type: ignore[arg-type]
    record = handled(ctx, ml_body())
    ctx.repairs = drift.Repairs(ctx)
    ctx.registries = Marks()  # type: ignore[assignment]
    old_job = hf_cache.job_name("gpu", spec(gpuProduct=None))
    await drift.on_child_event(ctx, "ADDED", job_event(old_job, succeeded=1, conditions=[
        {"type": "Complete", "status": "True"}]))
    await drift.on_child_event(ctx, "ADDED", deployment_event(1, available=True))
    assert inference_node.registration_hold(record) is None
    record.registration = inference_node.Facts(True, "Registered", "registered")
    record.body = copy.deepcopy(record.body)
    record.body["spec"]["modelOverride"] = {"hfRepo": "my-org/custom", "hfCommit": COMMIT}
    new_job = hf_cache.job_name("gpu", InferenceNodeSpec.model_validate(record.body["spec"]))
    assert new_job != old_job
    kube.applied.clear()
    await inference_node.apply_children(ctx, record)
    desired = inference_node.desired_for(ctx, record)
    assert ("Job", new_job) in kube.applied
    assert next(c for c in desired if c["kind"] == "Deployment")["spec"]["replicas"] == 1  # keeps serving
    assert ("Job", old_job) in kube.deleted  # the old Job is pruned (its weights stay in the cache)
    hold = inference_node.registration_hold(record)
    assert hold is not None and hold.reason == "WaitingForCache"  # the entry keeps the old model meanwhile
    loop = RegistryLoop(ctx, "http://admin:9200")
    loop.snapshot = {}
    await loop._register(("ns", "gpu"), record, {}, None)
    assert record.registration.ok is True  # still registered (old model): no write to the admin API


async def test_a_restart_never_scales_a_serving_pod_down() -> None:
    """Right after a restart the watch may not have delivered the Job and the Deployment yet."""
    ctx, kube = context(None)  # type: ignore[arg-type]
    record = handled(ctx, ml_body(modelOverride={"hfRepo": "my-org/custom", "hfCommit": COMMIT}))
    kube.objects[("Deployment", "gpu-mlnode")] = deployment_event(1, available=True)
    await inference_node.apply_children(ctx, record)
    assert record.jobs, "the preload Job (just applied) is known"
    assert record.deployment is not None and record.deployment["replicas"] == 1
    assert next(c for c in inference_node.desired_for(ctx, record) if c["kind"] == "Deployment")["spec"][
        "replicas"] == 1
