"""children.py and the reconciles that use it: what is applied, created once, and pruned (issue #11
review items 3-5)."""

from __future__ import annotations

from typing import Any

from fakekube import FakeKube, context

from gonka_operator import children, network_node
from gonka_operator.context import NetworkRecord
from gonka_operator.kube import KubeError

Obj = dict[str, Any]
SPEC = {"keyName": "warm", "accountPubKey": "Apub", "keyringPasswordSecretRef": {"name": "kr", "key": "password"},
        "publicHost": "host.example", "onboarding": {"registerParticipant": True}}


class ClusterIPKube(FakeKube):
    """FakeKube whose Services get a cluster IP, as the API server assigns one on create, and
    which keeps what was applied (get() answers it)."""

    async def apply(self, obj: Obj) -> Obj:
        live = await super().apply(obj)
        if obj["kind"] == "Service":
            live["spec"] = {**live["spec"], "clusterIP": f"10.0.0.{len(self.applied)}"}
        self.objects[(obj["kind"], obj["metadata"]["name"])] = live
        return live


def nn_body() -> Obj:
    return {"apiVersion": "gonka.ai/v1alpha1", "kind": "NetworkNode",
            "metadata": {"name": "gonka", "namespace": "hosts", "uid": "uid-nn", "generation": 1},
            "spec": SPEC, "status": {"onboarding": {"warmKeyJob": "Complete", "registrationJob": "Complete"}}}


async def test_a_restarted_operator_does_not_prune_the_register_job() -> None:
    """Item 4: after a restart the chain Service's IP is known only once the Services were applied;
    the register Job (which needs it) is desired then, and must not be pruned for the moment before."""
    ctx, _ = context(None)  # type: ignore[arg-type]
    ctx.kube = kube = ClusterIPKube()  # type: ignore[assignment]
    body = nn_body()
    record = ctx.network[("hosts", "gonka")] = NetworkRecord(body=body, status_written=body["status"])
    record.children = {("Job", "gonka-register"), ("Job", "gonka-warm-key")}  # seen by the watch
    await network_node.reconcile(ctx, body)
    assert ("Job", "gonka-register") not in kube.deleted, kube.deleted
    assert kube.deleted == []


async def test_pdbs_and_config_maps_no_longer_desired_are_pruned() -> None:
    """Item 5: a PodDisruptionBudget or ConfigMap this CR owns that the desired set lost is deleted."""
    ctx, kube = context(None)  # type: ignore[arg-type]
    record = NetworkRecord(body={"kind": "InferenceNode", "metadata": {"name": "gpu", "namespace": "ns"}})
    record.children = {("PodDisruptionBudget", "gpu-mlnode"), ("ConfigMap", "gpu-ml-proxy"),
                       ("PersistentVolumeClaim", "gpu-hf-cache")}
    assert sorted(await children.prune(ctx, record, [])) == [("ConfigMap", "gpu-ml-proxy"),
                                                              ("PodDisruptionBudget", "gpu-mlnode")]
    assert sorted(kube.deleted) == [("ConfigMap", "gpu-ml-proxy"), ("PodDisruptionBudget", "gpu-mlnode")]


def job(image: str, name: str = "gpu-hf-abc") -> Obj:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "ns"},
            "spec": {"template": {"spec": {"containers": [{"name": "preload", "image": image}]}}}}


async def test_a_job_is_created_once_and_never_patched_or_replaced() -> None:
    """Item 3: the preload Job runs the operator image; a chart upgrade (new image) must not re-run it.
    A Job that exists by name is left as it is (its name hashes what matters)."""
    ctx, _ = context(None)  # type: ignore[arg-type]
    ctx.kube = kube = ClusterIPKube()  # type: ignore[assignment]
    first = await children.apply_child(ctx, job("operator:1.0"))
    assert kube.created == [("Job", "gpu-hf-abc")]
    kube.refuse[("Job", "gpu-hf-abc")] = KubeError(422, "spec.template: field is immutable")
    again = await children.apply_child(ctx, job("operator:1.1"))  # the upgraded operator
    assert kube.deleted == [] and kube.applied == [("Job", "gpu-hf-abc")]  # never replaced, never patched
    assert again["spec"] == first["spec"]  # what the cluster holds, as it was


def test_the_preload_job_name_hashes_model_revision_and_volume_not_the_image() -> None:
    """The name decides when a preload runs again (Jobs are created once): a new model, revision or
    volume (the weights are not on the new one) does; a new operator image does not."""
    from gonka_operator.builders import hf_cache
    from gonka_operator.builders import inference_node as build
    from gonka_operator.models.inference_node import InferenceNodeSpec

    base = {"networkNodeRef": {"name": "gonka"}, "model": "Qwen/Qwen3-32B-FP8", "gpus": 1, "hfCache": {"size": "10Gi"}}

    def name(**spec: Any) -> str:
        return hf_cache.job_name("gpu", InferenceNodeSpec.model_validate({**base, **spec}))

    default = name()
    assert default == "gpu-hf-7eb3551b1b"  # unchanged for the default volume: an upgrade re-runs nothing
    assert name(model="Qwen/Qwen2.5-7B-Instruct") != default
    assert name(modelOverride={"hfRepo": "Qwen/Qwen3-32B-FP8", "hfCommit": "a" * 40}) != default
    assert len({default, name(hfCache={"size": "10Gi", "hostPath": "/data/hf"}),
                name(hfCache={"size": "10Gi", "hostPath": "/other/hf"}),
                name(hfCache={"existingClaim": "shared-hf"})}) == 4
    assert name(hfCache={"size": "20Gi"}) == default  # the same volume, grown
    owner = build.Owner("InferenceNode", "gpu", "ns", "uid")
    spec = InferenceNodeSpec.model_validate(base)
    jobs = [build.build_preload_job(owner, spec, image) for image in ("operator:1.0", "operator:1.1")]
    assert jobs[0] and jobs[1] and jobs[0]["metadata"]["name"] == jobs[1]["metadata"]["name"] == default


def test_every_prunable_kind_is_watched_for_drift() -> None:
    """Pruning knows a child from its watch events (record.children), and drift repair needs them
    too: each kind children.prune may delete must be watched by the child-event handler."""
    import kopf

    from gonka_operator import handlers

    watched = {(h.selector.group, h.selector.any_name) for h in kopf.get_default_registry()._watching.get_all_handlers()
               if h.fn is handlers.child_changed}
    plural = {"NetworkPolicy": "networkpolicies"}
    for kind, api_version in children.API_VERSIONS.items():
        group = api_version.rpartition("/")[0]
        assert (group, plural.get(kind, kind.lower() + "s")) in watched, kind


async def test_a_replaced_deployment_orphans_its_pods_and_waits_until_it_is_gone() -> None:
    """Item 6: the replacement of a Deployment never deletes the pod it runs (the new Deployment
    adopts it); other kinds are deleted as before."""
    ctx, kube = context(None)  # type: ignore[arg-type]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gpu-mlnode", "namespace": "ns"},
                  "spec": {"strategy": {"type": "Recreate"}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gpu-mlnode", "namespace": "ns"}}
    for obj in (deployment, service):
        kube.objects[(obj["kind"], "gpu-mlnode")] = obj  # live, with an edit the apply cannot merge into
        kube.refuse[(obj["kind"], "gpu-mlnode")] = KubeError(422, "Forbidden: may not be specified")
        await children.apply_child(ctx, obj)
    assert kube.propagation == {("Deployment", "gpu-mlnode"): "Orphan", ("Service", "gpu-mlnode"): "Background"}
    assert kube.applied == [("Deployment", "gpu-mlnode"), ("Service", "gpu-mlnode")]
