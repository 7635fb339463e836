"""Issue 10 on the real control plane: the preload Job runs before the ML pod, the ML pod starts only
once the cache is Ready, the node registers only once the pod is up, and a model change downloads
first while the serving pod stays.

kwok's pods are fake: a Job's pod is completed by the kwok stage `pod-complete` (devcluster) once it
is Running, so the Job controller marks the Job Complete; the real download is shown by the preload
entry point run as a process against the Hub stand-in (tests/unit/test_hf_cache_preload.py)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

import manifests
from conditions import PRELOAD_RETRY_SECONDS, condition, wait_condition
from helpers import holds_for, wait_for
from hubproc import REPO, HubStandIn
from manifests import NETWORK_NODE as NN
from preload_runner import NODE, PreloadRunner
from procs import Kubectl, Operator, StandIn

pytestmark = pytest.mark.integration
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def ml_node(name: str, cache: str, extra: str = "", model: str = "Qwen/Qwen3-32B-FP8") -> str:
    return manifests.ml_node(name, model=model, cache=cache, extra=extra)


PVC = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: weights}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"""


def jobs(kubectl: Kubectl, ns: str, node: str) -> list[dict[str, Any]]:
    return list(kubectl.json("get", "jobs", "-n", ns, "-l", f"gonka.ai/inference-node={node}")["items"])


def ml_pods(kubectl: Kubectl, ns: str, node: str) -> list[dict[str, Any]]:
    return list(kubectl.json("get", "pods", "-n", ns, "-l",
                             f"gonka.ai/inference-node={node},app.kubernetes.io/component=mlnode")["items"])


def cache(kubectl: Kubectl, ns: str, node: str) -> dict[str, Any]:
    return dict(((kubectl.get("inferencenode", node, ns) or {}).get("status") or {}).get("cache") or {})


def test_ml_pod_waits_for_the_preload_then_registers(operator: Operator, kubectl: Kubectl, standin: StandIn,
                                                     namespace: str) -> None:
    """The preload Job of an existing claim that does not exist yet cannot run: no ML pod, no
    registration, CACHE Downloading. Once the claim is there the Job completes, the ML pod starts,
    then the node registers."""
    kubectl.run("apply", "-n", namespace, "-f", "-",
                input=NN + "---" + ml_node("gated", "{existingClaim: weights, preload: true}"))
    job = wait_for(lambda: jobs(kubectl, namespace, "gated"), 60, "the preload Job")[0]
    assert job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "weights"
    wait_condition(kubectl, "inferencenode", "gated", namespace, "Registered", "Unknown", "WaitingForCache", 60)
    wait_condition(kubectl, "inferencenode", "gated", namespace, "CacheReady", "False", "Downloading", 30)
    assert cache(kubectl, namespace, "gated")["state"] == "Downloading"
    holds_for(lambda: not ml_pods(kubectl, namespace, "gated")
              and kubectl.get("deployment", "gated-mlnode", namespace)["spec"]["replicas"] == 0
              and "gated" not in standin.nodes(), 5, "no ML pod and no registration before the cache is Ready")
    printed = kubectl.run("get", "inferencenode", "gated", "-n", namespace).stdout
    assert "CACHE" in printed.splitlines()[0] and "Downloading" in printed

    kubectl.run("apply", "-n", namespace, "-f", "-", input=PVC)
    wait_condition(kubectl, "inferencenode", "gated", namespace, "CacheReady", "True", "Ready", 90)
    wait_condition(kubectl, "inferencenode", "gated", namespace, "Registered", "True", timeout=90)
    done = jobs(kubectl, namespace, "gated")[0]
    pod = ml_pods(kubectl, namespace, "gated")[0]
    # the ML pod was created after the Job completed (both to the second)
    assert pod["metadata"]["creationTimestamp"] >= done["status"]["completionTime"]
    assert cache(kubectl, namespace, "gated")["state"] == "Ready"
    assert "gated" in standin.nodes()
    assert "Ready" in kubectl.run("get", "inferencenode", "gated", "-n", namespace).stdout


def test_a_model_change_downloads_first_and_keeps_the_serving_pod(operator: Operator, kubectl: Kubectl,
                                                                   standin: StandIn, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN + "---" + ml_node("swap", "{size: 10Gi}"))
    wait_condition(kubectl, "inferencenode", "swap", namespace, "Ready", "True", timeout=120)
    (old_job,) = jobs(kubectl, namespace, "swap")
    (pod,) = ml_pods(kubectl, namespace, "swap")
    kubectl.run("patch", "inferencenode", "swap", "-n", namespace, "--type=merge", "-p",
                json.dumps({"spec": {"modelOverride": {"hfRepo": "my-org/qwen3-32b-custom", "hfCommit": COMMIT}}}))

    def new_cache_ready() -> dict[str, Any] | None:
        c = cache(kubectl, namespace, "swap")
        return c if c.get("revision") == COMMIT and c.get("state") == "Ready" else None

    ready = wait_for(new_cache_ready, 90, lambda: f"cache now {cache(kubectl, namespace, 'swap')}")
    assert ready["repo"] == "my-org/qwen3-32b-custom"
    new_job = wait_for(lambda: [j for j in jobs(kubectl, namespace, "swap")
                                if j["metadata"]["name"] != old_job["metadata"]["name"]], 30, "the new Job")[0]
    assert new_job["spec"]["template"]["spec"]["containers"][0]["command"][-2:] == ["--revision", COMMIT]
    wait_for(lambda: (standin.nodes()["swap"]["node"]["models"]["Qwen/Qwen3-32B-FP8"].get("model_override")
                      or {}).get("hf_commit") == COMMIT, 60, lambda: f"registry entry {standin.nodes().get('swap')}")
    wait_for(lambda: len(jobs(kubectl, namespace, "swap")) == 1, 30, "the old Job pruned")
    (still,) = ml_pods(kubectl, namespace, "swap")
    assert still["metadata"]["uid"] == pod["metadata"]["uid"], "the serving pod was restarted for the download"
    ready_cond = condition(kubectl.get("inferencenode", "swap", namespace), "Ready")
    assert ready_cond and ready_cond["status"] == "True"


def test_a_cache_declared_filled_has_no_job(operator: Operator, kubectl: Kubectl, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-",
                input=NN + "---" + ml_node("declared", "{hostPath: /mnt/shared}"))
    wait_condition(kubectl, "inferencenode", "declared", namespace, "Registered", "True", timeout=90)
    assert jobs(kubectl, namespace, "declared") == []
    assert cache(kubectl, namespace, "declared")["state"] == "Ready"
    env = {e["name"] for e in kubectl.get("deployment", "declared-mlnode", namespace)["spec"]["template"]["spec"][
        "containers"][0]["env"]}
    assert "HF_HUB_OFFLINE" not in env


def events(kubectl: Kubectl, ns: str, node: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in kubectl.json("get", "events", "-n", ns)["items"]
            if e["involvedObject"].get("name") == node and e.get("reason") == reason]


def test_a_failed_preload_is_retried_with_backoff_until_the_hub_is_back(
        operator: Operator, kubectl: Kubectl, namespace: str, tmp_path: Any) -> None:
    """The Hub is down: each preload Job fails (its backoffLimit spent), status.cache is Failed with the
    Hub's message and a Warning Event says so; the operator starts a new Job attempt after 2 s, 4 s,
    8 s... (never a hot loop). The Hub back: the next attempt downloads, the cache is Ready, the ML pod
    may start, and only the last attempt's Job is left. The preload pods run for real (PreloadRunner)."""
    hub = HubStandIn(tmp_path, "hf-hub-retry")
    hub.start()
    hub.stop()  # down: nothing listens on its address
    retry = float(PRELOAD_RETRY_SECONDS)
    extra = (f"\n  env: [{{name: HF_ENDPOINT, value: '{hub.url}'}}]"
             f"\n  scheduling: {{nodeSelector: {{kubernetes.io/hostname: {NODE}}}}}")
    with PreloadRunner(kubectl, namespace, tmp_path / "volume") as runner:
        try:
            kubectl.run("apply", "-n", namespace, "-f", "-",
                        input=NN + "---" + ml_node("retry", "{size: 1Gi}", extra, model=REPO))
            failed = wait_for(lambda: (c := cache(kubectl, namespace, "retry")).get("state") == "Failed" and c,
                              90, lambda: f"status.cache Failed; now {cache(kubectl, namespace, 'retry')}, "
                              f"runs {runner.attempts}, runner errors {runner.errors[-3:]}")
            first = runner.finished()[0]
            assert first.code == 1 and first.termination is not None  # transient: the Hub unreachable
            hub_message = first.termination["message"]
            assert hub_message[:80] in failed["message"], failed
            wait_condition(kubectl, "inferencenode", "retry", namespace, "CacheReady", "False", "PreloadFailed", 30)
            warning = wait_for(lambda: events(kubectl, namespace, "retry", "PreloadFailed"), 30, "the Event")[0]
            assert warning["type"] == "Warning" and hub_message[:80] in warning["message"]

            # while the Hub is down: attempt after attempt, each after a longer delay
            wait_for(lambda: len(runner.finished()) >= 3, 120,
                     lambda: f"3 attempts; {runner.attempts}; cache {cache(kubectl, namespace, 'retry')}")
            runs = runner.finished()
            assert len({a.job for a in runs}) == len(runs), "each attempt is a new Job"
            gaps = [later.seen - earlier.finished for earlier, later in itertools.pairwise(runs)]
            print(f"seconds from a failed attempt to the next (retry base {retry:g} s): {[round(g, 1) for g in gaps]}")
            # the Job's failure time has 1 s resolution: a delay may look up to 1 s shorter
            assert gaps[0] >= retry - 1 and gaps[1] >= 2 * retry - 1 and gaps[1] > gaps[0], gaps
            assert ml_pods(kubectl, namespace, "retry") == []
            assert kubectl.get("deployment", "retry-mlnode", namespace)["spec"]["replicas"] == 0

            hub.start()  # back, on the same address
            ready = wait_for(lambda: (c := cache(kubectl, namespace, "retry")).get("state") == "Ready" and c, 120,
                             lambda: f"Ready; now {cache(kubectl, namespace, 'retry')}, runs {runner.attempts}")
            last = runner.finished()[-1]
            assert last.code == 0 and ready["job"] == last.job
            assert ready["bytes"] == sum(hub.repo()["commits"][-1]["files"].values())
            wait_for(lambda: kubectl.get("deployment", "retry-mlnode", namespace)["spec"]["replicas"] == 1, 30,
                     "the ML Deployment scaled up once the cache is Ready")
            def job_names() -> list[str]:
                return [j["metadata"]["name"] for j in jobs(kubectl, namespace, "retry")]

            wait_for(lambda: job_names() == [last.job], 30, lambda: f"only the last attempt's Job; {job_names()}")
            wait_condition(kubectl, "inferencenode", "retry", namespace, "CacheReady", "True", "Ready", 30)
        finally:
            hub.stop()


async def test_the_api_server_accepts_the_operators_pod_log_request(cluster: Any, kubectl: Kubectl,
                                                                   namespace: str) -> None:
    """The running preload pod's progress comes from its log (kube.pod_log). The API server refused the
    operator's request (Accept: text/plain) with 406 before it asked any kubelet; now it gets as far as
    the node (kwok's nodes have no kubelet to answer: 500 "no preferred addresses")."""
    from kubernetes.aio import client, config

    from gonka_operator.kube import Kube, KubeError

    kubectl.run("run", "-n", namespace, "logs", "--image=busybox", "--restart=Never",
                "--overrides", json.dumps({"spec": {"tolerations": [{"operator": "Exists"}]}}))
    wait_for(lambda: (kubectl.get("pod", "logs", namespace) or {}).get("status", {}).get("phase") == "Running", 60,
             "the pod Running on a kwok node")
    await config.load_kube_config(config_file=str(cluster.kubeconfig))
    async with client.ApiClient() as api:
        with pytest.raises(KubeError) as refused:
            await Kube(api).pod_log(namespace, "logs", "logs")
    assert refused.value.status != 406, str(refused.value)
