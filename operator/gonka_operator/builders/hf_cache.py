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
* Retries (`Retry`, `plan`): the Job controller's own backoff (10 s, doubling, up to 6 min) for
  `backoffLimit` failed pods; exit code 2 (repository/revision not found) fails the Job at once
  (podFailurePolicy). A Job failed for good is followed by a new Job, the next attempt, after a delay
  that doubles with each attempt (written on the Job); status.cache shows Failed with the Hub's
  message meanwhile. The attempt lives in the Job's name, so a restarted operator carries on.
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
from datetime import UTC, datetime

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
# on each Job: how long after its failure the next attempt starts (so a restarted operator, or one
# with other settings, keeps the backoff this attempt was created with)
RETRY_ANNOTATION = "gonka.ai/preload-retry-seconds"
ATTEMPT_ANNOTATION = "gonka.ai/preload-attempt"


@dataclass(frozen=True)
class Retry:
    """How a failed preload is retried. First by the Job controller: `backoff_limit` more pods, after
    10 s, 20 s, 40 s... Once the Job has failed for good, by the operator: a new Job (the next
    attempt) after `base` seconds, doubling with each failed attempt, at most `cap` seconds, for as
    long as the download is wanted (a Hub outage, a token fixed later, a gated repository accepted)."""

    backoff_limit: int = BACKOFF_LIMIT
    base: float = 60.0
    cap: float = 1800.0

    def delay(self, attempt: int) -> float:
        """Seconds from the failure of attempt `attempt` (1, 2, ...) to the start of the next one."""
        return float(min(self.cap, self.base * 2 ** min(max(attempt, 1) - 1, 32)))


DEFAULT_RETRY = Retry()


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


def job_name(name: str, spec: InferenceNodeSpec, attempt: int = 1) -> str:
    """One name per download: what is fetched (repository, revision) and where to (the volume), and
    nothing else. A Job that exists by name is never replaced, so the image or resources of the Job
    must not be in it: an operator upgrade re-runs no preload. The operator's retries of a failed
    download are new Jobs: `<name>-hf-<hash>-<attempt>` from attempt 2 on (at most 63 characters)."""
    repo, revision = target(spec)
    cache = spec.hf_cache
    # the default PVC adds nothing, so the names of Jobs made before the volume counted stay: a
    # new name would run the Job again and hold the ML pod back until it is Ready
    custom = cache is not None and bool(cache.host_path or cache.existing_claim)
    where = f" {json.dumps(volume(name, spec), sort_keys=True)}" if custom else ""
    digest = hashlib.sha256(f"{repo}@{revision or 'main'}{where}".encode()).hexdigest()[:10]
    base = f"{name[:45].rstrip('-.')}-hf-{digest}"  # 45 + 14 + "-<attempt>" fits in 63
    return base if attempt <= 1 else f"{base}-{attempt}"


def attempt_of(name: str, spec: InferenceNodeSpec, job: str) -> int | None:
    """The attempt number of Job `job` if it is a preload Job of this download, else None."""
    base = job_name(name, spec)
    if job == base:
        return 1
    suffix = job[len(base) + 1:] if job.startswith(base + "-") else ""
    return int(suffix) if suffix.isdigit() and int(suffix) >= 2 else None


def current_job(name: str, spec: InferenceNodeSpec, jobs: dict[str, Obj]) -> tuple[int, Obj | None]:
    """The latest attempt among `jobs` (by name) of this download: (its number, the Job), or (1, None)."""
    mine = [(n, job) for jname, job in jobs.items() if (n := attempt_of(name, spec, jname)) is not None]
    return max(mine, key=lambda item: item[0]) if mine else (1, None)


def job_facts(job: Obj) -> Obj:
    """What the operator keeps of a preload Job it sees: its status and annotations (the retry delay)."""
    return {"status": job.get("status") or {}, "annotations": (job.get("metadata") or {}).get("annotations") or {}}


def _epoch(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    try:
        return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Plan:
    """The attempt whose Job is wanted now, and (while its predecessor's failure is fresh) when the
    next one starts."""

    attempt: int
    retry_at: float | None = None


def plan(name: str, spec: InferenceNodeSpec, jobs: dict[str, Obj], now: float) -> Plan:
    """Attempt n's Job failed for good: attempt n+1 is wanted once the delay written on the Job has
    passed since its Failed condition (the Job controller's time). Until then attempt n stays (and
    status.cache says Failed). A failed Job without a failure time is never followed: no hot loop."""
    attempt, job = current_job(name, spec, jobs)
    failed = _condition(job, "Failed") if job else None
    if job is None or failed is None:
        return Plan(attempt)
    at = _epoch(failed.get("lastTransitionTime"))
    if at is None:
        return Plan(attempt)
    try:
        delay = float((job.get("annotations") or {})[RETRY_ANNOTATION])
    except (KeyError, ValueError):
        delay = DEFAULT_RETRY.delay(attempt)
    return Plan(attempt + 1) if now >= at + delay else Plan(attempt, at + delay)


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
                      tolerations: list[Obj], ml_pod_selector: dict[str, str], attempt: int = 1,
                      retry: Retry = DEFAULT_RETRY) -> Obj:
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
        "metadata": metadata(job_name(owner.name, spec, attempt), owner, pod_labels,
                             annotations={"gonka.ai/preload": f"{repo}@{revision or 'main'}",
                                          ATTEMPT_ANNOTATION: str(attempt),
                                          RETRY_ANNOTATION: f"{retry.delay(attempt):g}"}),
        "spec": {
            "backoffLimit": retry.backoff_limit,
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


def running_pod(spec: InferenceNodeSpec, name: str, pods: dict[str, Obj], attempt: int = 1) -> str | None:
    """The name of the current Job's pod that is running (whose log shows the progress), if any."""
    jname = job_name(name, spec, attempt)
    return next((n for n, p in sorted(pods.items()) if p.get("job") == jname and _phase(p) == "Running"), None)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_job(spec: InferenceNodeSpec, name: str, job: Obj | None, pods: list[Obj],
             progress: Obj | None = None, current: Plan = Plan(1)) -> CacheView:
    """What the cache is, from the Job of the current (repository, revision) and attempt (`current`,
    see `plan`), its pods and the last progress line of the running pod (bytes/files fetched so far)."""
    repo, revision = target(spec)
    if not wanted(spec):
        if spec.external is not None or spec.hf_cache is None:
            return CacheView({}, True, "External", "no cache here")
        return CacheView({"state": READY, "repo": repo, "message": "preload is off: the cache is declared filled"},
                         True, "Declared", "spec.hfCache.preload is false: the cache is declared filled")
    jname = job_name(name, spec, current.attempt)
    base: Obj = {"repo": repo, "revision": revision or "main", "job": jname}
    if current.attempt > 1:
        base["attempt"] = current.attempt
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
        then = (f"attempt {current.attempt + 1} starts at {_iso(current.retry_at)}, or delete the Job to try now"
                if current.retry_at is not None else "fix the spec, or delete the Job to try again")
        message = (f"{message} (preload Job {jname} failed after {status.get('failed', 0)} pod(s); {then})")
        return CacheView({**base, "state": FAILED, "message": message}, False, "PreloadFailed", message)
    pods_failed = status.get("failed") or 0
    if pods_failed:
        message = (f"pod {pods_failed + 1} of Job {jname}; the last one failed: "
                   f"{last_error or 'no message'} (retried with the Job's backoff)")
    elif progress:
        message = (f"downloading {repo}@{revision or 'main'}: {progress['fetchedBytes']} bytes, "
                   f"{progress['fetchedFiles']} files so far")
        base |= {"bytes": progress["fetchedBytes"], "files": progress["fetchedFiles"]}
    else:
        message = f"downloading {repo}@{revision or 'main'} (progress in the log of Job {jname})"
    return CacheView({**base, "state": DOWNLOADING, "message": message}, False, DOWNLOADING, message)
