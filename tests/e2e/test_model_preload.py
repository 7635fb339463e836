"""Issue 10 on the real node: the HF-cache preload Job runs as a real pod on real-0, from the operator's
own image (the chart's GONKA_PRELOAD_IMAGE), with the real huggingface_hub download code, against the
Hub stand-in running as a pod behind a Service (HF_ENDPOINT in spec.env names it by its cluster DNS
name: the traffic stays inside the cluster), and writes into a real PVC (the cluster's default
StorageClass, a hostPath volume on this machine).

Checked: status.cache goes Downloading (with bytes) -> Ready (the snapshot's files and bytes), the files
are in the volume (read by another pod), the ML pod starts only once the cache is Ready and the node
registers after, HF_TOKEN from spec.env reaches the Hub as the Secret reference and no log shows it,
and a second preload (the Job deleted, so the operator runs it again) fetches nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import textwrap
import time
from typing import Any

import pytest
from deploy import MODEL, OPERATOR_NS, RELEASE, SCHEDULING, Host
from pods import api, run_to_completion, start_service

from gonka_operator.hubsim import make_repo
from helpers import wait_for

NAME = "ml-cache"
HUB = "hf-hub"
HUB_PORT, CDN_PORT = 8090, 8091
WEIGHTS = 32 * 1024 * 1024  # at 1 MB/s: ~33 s; huggingface_hub writes 10 MiB chunks, so the CR shows progress
THROTTLE = 1_000_000
TOKEN = "hf_e2e" + "Xy9" * 8

# What the stand-in serves (deterministic content): the snapshot main resolves to.
MAIN = make_repo(MODEL, WEIGHTS).commits[-1]

READ_SNAPSHOT = textwrap.dedent("""\
    import hashlib, json, os, sys
    snap = sys.argv[1]
    out = {}
    for name in sorted(os.listdir(snap)):
        with open(os.path.join(snap, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    print(json.dumps(out))
""")

HUB_REQUESTS = textwrap.dedent("""\
    import sys, urllib.request
    req = urllib.request.Request("http://127.0.0.1:%s/stand-in/v1/requests" % sys.argv[1], method=sys.argv[2])
    print(urllib.request.urlopen(req, timeout=10).read().decode())
""")


def _hub(host: Host, ns: str, method: str = "GET") -> Any:
    """The stand-in's request list (or DELETE: cleared), asked from inside its own pod (loopback)."""
    return json.loads(host.exec_python(ns, HUB, "main", HUB_REQUESTS, str(HUB_PORT), method))


def _downloads(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in requests if r["method"] == "GET" and r["status"] in (200, 206)
            and ("/resolve/" in r["path"] or r["path"].startswith("/cdn/"))]


def _node(host: Host, hub_ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode", "metadata": {"name": NAME},
        "spec": {"networkNodeRef": {"name": host.network_node}, "model": MODEL, "gpus": 1, "hardwareType": "H100",
                 "hfCache": {"size": "1Gi"},  # a claim the operator creates: preloaded by default
                 "env": [{"name": "HF_ENDPOINT", "value": f"http://{HUB}.{hub_ns}.svc.cluster.local:{HUB_PORT}"},
                         {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}],
                 "image": host.images["mlnode"].ref, "proxy": {"image": host.images["nginx"].ref},
                 "scheduling": SCHEDULING},
    }


def _watch_until_ready(host: Host, timeout: float = 300) -> list[dict[str, Any]]:
    """status.cache, the ML Deployment's replicas and the ML pods, once a second until the cache is Ready."""
    ns = host.namespace
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node = host.json("get", "inferencenode", "-n", ns, NAME)
        cache = (node.get("status") or {}).get("cache") or {}
        dep = host.run("get", "deployment", "-n", ns, f"{NAME}-mlnode", "-o", "json", check=False)
        replicas = json.loads(dep.stdout)["spec"]["replicas"] if dep.returncode == 0 else None
        pods = host.json("get", "pods", "-n", ns, "-l",
                         f"gonka.ai/inference-node={NAME},app.kubernetes.io/component=mlnode")["items"]
        seen.append({"cache": cache, "replicas": replicas, "ml_pods": len(pods)})
        if cache.get("state") == "Ready":
            return seen
        if cache.get("state") == "Failed":
            raise AssertionError(f"the preload failed: {cache}")
        time.sleep(1)
    raise AssertionError(f"status.cache not Ready in {timeout} s; last seen {seen[-3:]}")


@pytest.fixture
def hub(host: Host, e2e_namespace: str) -> str:
    """The Hub stand-in as a pod (it ships in the operator image) behind the Service hf-hub; LFS files
    redirect to its "CDN" port, named by the same Service."""
    core, _ = api(host.cluster.api_client())
    cdn = f"http://{HUB}.{e2e_namespace}.svc.cluster.local:{CDN_PORT}"
    start_service(core, e2e_namespace, HUB, host.images["operator"].ref,
                  ["gonka-operator", "simulate-hf-hub", "--host", "0.0.0.0", "--port", str(HUB_PORT),
                   "--cdn-port", str(CDN_PORT), "--cdn-url", cdn, "--repo", MODEL, "--weights-size", str(WEIGHTS),
                   "--throttle", str(THROTTLE)],
                  [HUB_PORT, CDN_PORT], {"app": HUB})
    return e2e_namespace


def test_preload_job_fills_a_real_pvc_before_the_ml_pod_starts(host: Host, hub: str) -> None:
    ns = host.namespace
    core, _ = api(host.cluster.api_client())
    core.create_namespaced_secret(ns, {"metadata": {"name": "hf-token"}, "stringData": {"token": TOKEN}})
    try:
        _apply(host, _node(host, hub))
        seen = _watch_until_ready(host)
        downloading = [s for s in seen if s["cache"].get("state") == "Downloading"]
        assert downloading, f"never saw Downloading: {seen}"
        assert all(s["replicas"] in (0, None) and s["ml_pods"] == 0 for s in seen[:-1]), \
            f"an ML pod before the cache was Ready: {seen}"
        assert any((s["cache"].get("bytes") or 0) > 0 for s in downloading), \
            f"no progress (bytes) on the CR while downloading: {downloading}"
        ready = seen[-1]["cache"]
        sizes = {p: len(f.content) for p, f in MAIN.files.items()}
        assert ready["commit"] == MAIN.sha and ready["files"] == len(sizes), ready
        assert ready["bytes"] == sum(sizes.values()) == ready["fetchedBytes"], ready

        job = host.json("get", "job", "-n", ns, ready["job"])
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["image"] == host.images["operator"].ref  # the chart's GONKA_PRELOAD_IMAGE
        assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}} \
            in container["env"]
        (job_pod,) = host.json("get", "pods", "-n", ns, "-l", f"batch.kubernetes.io/job-name={ready['job']}")["items"]
        assert job_pod["spec"]["nodeName"] == "real-0"

        # the ML pod came after the Job completed, on the same node, and then the node registered
        def ml_pod() -> dict[str, Any] | None:
            pods = host.json("get", "pods", "-n", ns, "-l",
                             f"gonka.ai/inference-node={NAME},app.kubernetes.io/component=mlnode")["items"]
            return pods[0] if pods else None

        pod = wait_for(ml_pod, 60, "the ML pod once the cache is Ready", interval=1)
        assert pod["metadata"]["creationTimestamp"] >= job["status"]["completionTime"]
        assert pod["spec"]["nodeName"] == "real-0"
        wait_for(lambda: any(c["type"] == "Registered" and c["status"] == "True" for c in
                             host.json("get", "inferencenode", "-n", ns, NAME)["status"]["conditions"]),
                 300, "the node registered once its pod is up", interval=2)

        # the files are in the claim, in huggingface_hub's layout, as the Hub serves them (read as root,
        # as mlnode reads them: huggingface_hub makes some of the cache's directories owner-only)
        claim = {"persistentVolumeClaim": {"claimName": f"{NAME}-hf-cache", "readOnly": True}}
        snapshot = f"/cache/hub/models--{MODEL.replace('/', '--')}/snapshots/{MAIN.sha}"
        log = run_to_completion(core, ns, host.images["operator"].ref, ["python3", "-c", READ_SNAPSHOT, snapshot],
                                mounts={"/cache": claim}, user=0)
        assert json.loads(log.strip().splitlines()[-1]) == {
            p: hashlib.sha256(f.content).hexdigest() for p, f in MAIN.files.items()}

        # the token went to the Hub (never to the CDN), and no log shows it
        requests = _hub(host, hub)
        assert {(r["path"].startswith("/cdn/"), r["authorized"]) for r in requests} == {(False, True), (True, False)}
        job_log = host.logs(ns, job_pod["metadata"]["name"], "preload")
        operator_log = host.run("logs", "-n", OPERATOR_NS, f"deploy/{RELEASE}", "--tail=-1").stdout
        assert '"event": "done"' in job_log
        assert TOKEN not in job_log and TOKEN not in operator_log

        # a second preload finds the snapshot complete: nothing fetched, and the serving pod stays
        _hub(host, hub, "DELETE")
        host.run("delete", "job", "-n", ns, ready["job"], "--wait=true", timeout=120)

        def again() -> dict[str, Any] | None:
            """The new Job's outcome on the CR: Ready with nothing fetched (the first run's Ready
            fetched everything, so only the second run can show 0)."""
            j = host.run("get", "job", "-n", ns, ready["job"], "-o", "json", check=False)
            if j.returncode != 0 or json.loads(j.stdout)["metadata"]["uid"] == job["metadata"]["uid"]:
                return None
            cache = host.json("get", "inferencenode", "-n", ns, NAME)["status"].get("cache") or {}
            return cache if cache.get("state") == "Ready" and cache.get("fetchedBytes") == 0 else None

        second = wait_for(again, 240, lambda: "the second preload Ready with 0 bytes fetched: "
                          + json.dumps(host.json("get", "inferencenode", "-n", ns, NAME)["status"].get("cache")))
        assert second["bytes"] == ready["bytes"] and second["commit"] == MAIN.sha, second
        assert _downloads(_hub(host, hub)) == []
        still = ml_pod()
        assert still is not None and still["metadata"]["uid"] == pod["metadata"]["uid"]
    finally:
        host.run("delete", "inferencenode", "-n", ns, NAME, "--wait=true", check=False, timeout=180)
        host.run("delete", "pvc", "-n", ns, f"{NAME}-hf-cache", "--wait=false", check=False)
        host.run("delete", "secret", "-n", ns, "hf-token", check=False)


def _apply(host: Host, obj: dict[str, Any]) -> None:
    subprocess.run([*host.kubectl, "apply", "-n", host.namespace, "-f", "-"], input=json.dumps(obj), text=True,
                   check=True, capture_output=True, timeout=60)
