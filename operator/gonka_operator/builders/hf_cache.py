"""The HF-cache preload Job of an InferenceNode, and how to read it (pure: dicts in, dicts out).

Upstream's advice (REFERENCE.md §3, the seed guide's step 1.2): download the weights into HF_HOME
before the ML node needs them, or a cold vLLM start spends 10–60 min downloading (and meets the
Hub's rate limits at the epoch boundary). The Job runs `gonka-operator preload-model` (preload.py:
the real `huggingface_hub.snapshot_download`) from the operator's image on the ML pod's volume,
mounted at the same /root/.cache (HF_HOME), with mlnode's HF_* variables (HF_ENDPOINT for a mirror)
and HF_TOKEN (always as the Secret reference, never a value).

* One Job per (repository, revision, volume): its name carries a hash of the three (not of the image:
  a Job that exists is never replaced, and an upgrade re-runs nothing), so a model change creates a
  new Job while the old pod keeps serving; the old Job is pruned.
* Retries: the Job controller's own backoff (10 s, doubling, up to 6 min) for `backoffLimit`
  failed pods; exit code 2 (repository/revision not found) fails the Job at once (podFailurePolicy).
* Same node and volume as the ML pod: the same nodeSelector, tolerations and affinity (a GPU node of
  the right product), no GPU requested, and a preferred podAffinity to the ML pod itself (a
  ReadWriteOnce volume attaches to one node). A hostPath is per node: pin the node with
  spec.scheduling.nodeSelector (kubernetes.io/hostname) so the Job and the ML pod share it.
* Root, like mlnode (it writes into the same root-owned directory mlnode reads and writes), with a
  read-only root filesystem, no capabilities, no service-account token, no privilege escalation.

`read_job` turns the Job's status and its pods' termination messages (the JSON outcome preload.py
writes: bytes, files, or the Hub's message) into `status.cache` and the CacheReady facts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from gonka_operator.builders.common import (
    LABEL_COMPONENT,
    LABEL_INFERENCE_NODE,
    POD_SECURITY,
    Obj,
    Owner,
    labels,
    metadata,
    scheduling,
)
from gonka_operator.models.inference_node import InferenceNodeSpec

APP = "gonka-inference-node"
COMPONENT = "hf-preload"
CONTAINER = "preload"
BACKOFF_LIMIT = 6  # ≈ 10+20+40+80+160+320 s of Job-controller backoff before Failed
EXIT_PERMANENT = 2  # preload.py: repository/revision/file not found, gated
HF_HOME = "/root/.cache"
# Job labels the Job controller puts on its pods (both spellings: batch.kubernetes.io since 1.27)
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
DOWNLOADING, READY, FAILED = "Downloading", "Ready", "Failed"
JOB_SECURITY: Obj = {
    "runAsUser": 0, "runAsNonRoot": False, "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
}
DEFAULT_RESOURCES: Obj = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}


def target(spec: InferenceNodeSpec) -> tuple[str, str | None]:
    """(repository, revision) to preload: the model override's repo@commit, else the model at main."""
    if spec.model_override:
        return spec.model_override.hf_repo, spec.model_override.hf_commit
    return spec.model, None


def wanted(spec: InferenceNodeSpec) -> bool:
    return spec.external is None and spec.hf_cache is not None and spec.hf_cache.preload_enabled()


def pvc_name(name: str) -> str:
    """The claim the operator creates for `hfCache.size`."""
    return f"{name}-hf-cache"


def volume(name: str, spec: InferenceNodeSpec) -> Obj:
    """The HF cache volume of the ML pod and of its preload Job."""
    cache = spec.hf_cache
    assert cache is not None, "admission requires hfCache for in-cluster ML nodes"
    if cache.host_path:
        return {"name": "hf-cache", "hostPath": {"path": cache.host_path, "type": "DirectoryOrCreate"}}
    return {"name": "hf-cache", "persistentVolumeClaim": {"claimName": cache.existing_claim or pvc_name(name)}}


def job_name(name: str, spec: InferenceNodeSpec) -> str:
    """One name per download: what is fetched (repository, revision) and where to (the volume), and
    nothing else. A Job that exists by name is never replaced, so the image or resources of the Job
    must not be in it: an operator upgrade re-runs no preload."""
    repo, revision = target(spec)
    where = json.dumps(volume(name, spec) if spec.hf_cache else None, sort_keys=True)
    digest = hashlib.sha256(f"{repo}@{revision or 'main'} {where}".encode()).hexdigest()[:10]
    return f"{name[:45].rstrip('-.')}-hf-{digest}"


def is_preload_pod(obj: Obj) -> bool:
    return bool((obj["metadata"].get("labels") or {}).get(LABEL_COMPONENT) == COMPONENT)


def job_of_pod(obj: Obj) -> str | None:
    pod_labels = obj["metadata"].get("labels") or {}
    return next((pod_labels[k] for k in JOB_NAME_LABELS if k in pod_labels), None)


def _token(spec: InferenceNodeSpec) -> Obj | None:
    """HF_TOKEN as a Secret reference: spec.hfTokenSecretRef, else an HF_TOKEN of spec.env given as a
    secretKeyRef (the same reference). A literal value in spec.env is never copied into the Job."""
    if spec.hf_token_secret_ref:
        ref = spec.hf_token_secret_ref
        return {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
    var = next((v for v in reversed(spec.env or []) if v.name == "HF_TOKEN"), None)
    if var is not None and var.value_from and "secretKeyRef" in var.value_from:
        return {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": dict(var.value_from["secretKeyRef"])}}
    return None


def _env(spec: InferenceNodeSpec) -> list[Obj]:
    env: list[Obj] = [{"name": "HF_HOME", "value": HF_HOME}, {"name": "HOME", "value": "/tmp"}]
    for var in spec.env or []:  # mlnode's Hub settings apply to the download too (HF_ENDPOINT: a mirror)
        if var.name.startswith("HF_") and var.name not in ("HF_HOME", "HF_HUB_OFFLINE", "HF_TOKEN"):
            env.append(var.wire())
    token = _token(spec)
    if token:
        env.append(token)
    return env


def build_preload_job(owner: Owner, spec: InferenceNodeSpec, image: str, hf_volume: Obj, node_selector: dict[str, str],
                      tolerations: list[Obj], ml_pod_selector: dict[str, str]) -> Obj:
    repo, revision = target(spec)
    command = ["gonka-operator", "preload-model", "--repo", repo]
    if revision:
        command += ["--revision", revision]
    pod_labels = labels(APP, owner.name, COMPONENT, **{LABEL_INFERENCE_NODE: owner.name})
    placement = scheduling(spec.scheduling, node_selector, tolerations)
    if "affinity" not in placement:
        placement["affinity"] = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": ml_pod_selector},
                                                "topologyKey": "kubernetes.io/hostname"}}]}}
    container = {
        "name": CONTAINER, "image": image, "command": command, "env": _env(spec),
        "resources": DEFAULT_RESOURCES,
        "volumeMounts": [{"name": "hf-cache", "mountPath": HF_HOME}, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": JOB_SECURITY,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": metadata(job_name(owner.name, spec), owner, pod_labels,
                             annotations={"gonka.ai/preload": f"{repo}@{revision or 'main'}"}),
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                                      "values": [EXIT_PERMANENT]}},
                # a node drain or preemption is not the download's fault
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,  # the Job never talks to the Kubernetes API
                    "enableServiceLinks": False,
                    "securityContext": POD_SECURITY,
                    "containers": [container],
                    "volumes": [hf_volume, {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
                    **placement,
                },
            },
        },
    }


# -- reading the Job ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CacheView:
    """status.cache and the CacheReady condition's facts: ok (None = not known yet), reason, message."""

    status: Obj
    ok: bool | None
    reason: str
    message: str

    @property
    def ready(self) -> bool:
        return self.ok is True


def _condition(job: Obj, ctype: str) -> Obj | None:
    return next((c for c in (job.get("status") or {}).get("conditions") or []
                 if c.get("type") == ctype and c.get("status") == "True"), None)


def termination(pod: Obj) -> Obj | None:
    """The preload container's termination message: preload.py's JSON outcome, or (FallbackToLogsOnError)
    the tail of its log as {"message": ...}."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") != CONTAINER:
            continue
        text = ((cs.get("state") or {}).get("terminated") or {}).get("message")
        if not text:
            return None
        try:
            parsed = json.loads(text)
        except ValueError:
            lines = [line for line in text.strip().splitlines() if line.strip()]
            return {"message": lines[-1][:1000] if lines else text[:1000]}
        return parsed if isinstance(parsed, dict) else {"message": str(parsed)[:1000]}
    return None


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _started(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("startTime") or pod.get("created") or "")


def parse_progress(log: str) -> Obj | None:
    """The last progress line of the preload container's log: {fetchedBytes, fetchedFiles} or None."""
    for line in reversed(log.strip().splitlines()):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "progress":
            return {"fetchedBytes": int(event.get("fetchedBytes") or 0),
                    "fetchedFiles": int(event.get("fetchedFiles") or 0)}
    return None


def running_pod(spec: InferenceNodeSpec, name: str, pods: dict[str, Obj]) -> str | None:
    """The name of the current Job's pod that is running (whose log shows the progress), if any."""
    jname = job_name(name, spec)
    return next((n for n, p in sorted(pods.items()) if p.get("job") == jname and _phase(p) == "Running"), None)


def read_job(spec: InferenceNodeSpec, name: str, job: Obj | None, pods: list[Obj],
             progress: Obj | None = None) -> CacheView:
    """What the cache is, from the Job of the current (repository, revision), its pods and the last
    progress line of the running pod (bytes/files fetched so far)."""
    repo, revision = target(spec)
    if not wanted(spec):
        if spec.external is not None or spec.hf_cache is None:
            return CacheView({}, True, "External", "no cache here")
        return CacheView({"state": READY, "repo": repo, "message": "preload is off: the cache is declared filled"},
                         True, "Declared", "spec.hfCache.preload is false: the cache is declared filled")
    jname = job_name(name, spec)
    base: Obj = {"repo": repo, "revision": revision or "main", "job": jname}
    mine = sorted((p for p in pods if p.get("job") == jname), key=_started)
    if job is None:
        message = f"preload Job {jname} created; waiting for its pod"
        return CacheView({**base, "state": DOWNLOADING, "message": message}, False, DOWNLOADING, message)
    status = job.get("status") or {}
    if _condition(job, "Complete") or (status.get("succeeded") or 0) >= 1:
        done = next((t for p in reversed(mine) if _phase(p) == "Succeeded" and (t := termination(p))), None)
        out = {**base, "state": READY}
        if done and done.get("state") == READY:
            out |= {k: done[k] for k in ("commit", "files", "bytes") if k in done}
            if "fetchedBytes" in done:
                out["fetchedBytes"] = done["fetchedBytes"]
            message = (f"{done.get('files')} files, {done.get('bytes')} bytes of {repo}@"
                       f"{str(done.get('commit', revision or 'main'))[:12]} in the cache "
                       f"({done.get('fetchedBytes', 0)} bytes fetched)")
        else:
            message = f"preload Job {jname} succeeded"
        return CacheView({**out, "message": message}, True, READY, message)
    failures = [t for p in mine if _phase(p) == "Failed" and (t := termination(p))]
    last_error = str(failures[-1].get("message") or "") if failures else ""
    failed = _condition(job, "Failed")
    if failed:
        message = last_error or str(failed.get("message") or failed.get("reason") or "the preload Job failed")
        message = (f"{message} (preload Job {jname} failed after {status.get('failed', 0)} attempt(s); "
                   "fix the spec, or delete the Job to try again)")
        return CacheView({**base, "state": FAILED, "message": message}, False, "PreloadFailed", message)
    attempts = status.get("failed") or 0
    if attempts:
        message = (f"attempt {attempts + 1} of {BACKOFF_LIMIT + 1}; the last one failed: "
                   f"{last_error or 'no message'} (retried with the Job's backoff)")
    elif progress:
        message = (f"downloading {repo}@{revision or 'main'}: {progress['fetchedBytes']} bytes, "
                   f"{progress['fetchedFiles']} files so far")
        base |= {"bytes": progress["fetchedBytes"], "files": progress["fetchedFiles"]}
    else:
        message = f"downloading {repo}@{revision or 'main'} (progress in the log of Job {jname})"
    return CacheView({**base, "state": DOWNLOADING, "message": message}, False, DOWNLOADING, message)
