"""Onboarding Jobs of a NetworkNode (REFERENCE.md §7): the warm key, and optionally the
participant's registration. Pure builders, and `read_onboarding` (Jobs + their pods → status).

* `<nn>-warm-key` runs the api image (which ships `inferenced`) with the node pod's
  `/root/.inference` volume. It runs `inferenced keys show "$KEY_NAME" --keyring-backend file`
  first and creates the key only when that finds none
  (`printf '%s\\n%s\\n' "$KEYRING_PASSWORD" "$KEYRING_PASSWORD" | inferenced keys add ...`), so it
  never creates a key twice; `keys add` never overwrites a name it finds (it asks, and the answer it
  reads is not "y"). The password comes from the referenced Secret through `valueFrom.secretKeyRef`
  only: never an argument, never echoed; the output of `keys add` (it holds the mnemonic) is
  discarded. The address (public) is the container's termination message, JSON
  `{"warmKeyAddress", "created"}`, which the operator reads from the pod status it watches.
* The volume is the ReadWriteOnce PVC of the StatefulSet's pod. ReadWriteOnce is per *node*, not
  per pod: a second pod on the same node mounts it. The Job prefers (podAffinity) the node of the
  node pod, and has the same nodeSelector/tolerations/affinity as the StatefulSet. (An initContainer
  would have been the alternative; a Job keeps its outcome readable, runs once for the lifetime of
  the NetworkNode, and never holds the node pod's start.)
* `<nn>-register` (`spec.onboarding.registerParticipant: true`), after the warm-key Job completed:
  `inferenced register-new-participant $DAPI_API__PUBLIC_URL $ACCOUNT_PUBKEY --node-address
  $DAPI_CHAIN_NODE__SEED_API_URL` (upstream's join docs; no cold key needed). `node` (the chain RPC
  the command reads the validator key from) is mapped to the chain Service's IP, like the proxy's
  hostAliases.

Both are Jobs with a stable name: once created (and completed) they are never created again while
the NetworkNode exists (`backoffLimit` retries a failure).
"""

from __future__ import annotations

import json
from typing import Any

from gonka_operator.builders.common import (
    CONTAINER_SECURITY,
    LABEL_COMPONENT,
    LABEL_NETWORK_NODE,
    POD_SECURITY,
    Owner,
    labels,
    metadata,
    scheduling,
)
from gonka_operator.models.network_node import NetworkNodeSpec

Obj = dict[str, Any]
APP = "gonka-network-node"
COMPONENT = "onboarding"
CONTAINER = "onboarding"
BACKOFF_LIMIT = 6
RESOURCES: Obj = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}

# POSIX sh; the password only ever goes to inferenced's stdin.
WARM_KEY_SCRIPT = """set -u
show() { printf '%s\\n' "$KEYRING_PASSWORD" | inferenced keys show "$KEY_NAME" --keyring-backend file -a 2>/dev/null; }
if address=$(show) && [ -n "$address" ]; then
  created=false
else
  if ! printf '%s\\n%s\\n' "$KEYRING_PASSWORD" "$KEYRING_PASSWORD" \\
      | inferenced keys add "$KEY_NAME" --keyring-backend file >/dev/null 2>&1; then
    echo "inferenced keys add $KEY_NAME failed" | tee /dev/termination-log >&2
    exit 1
  fi
  address=$(show) || { echo "key $KEY_NAME created but not readable" | tee /dev/termination-log >&2; exit 1; }
  created=true
fi
printf '{"warmKeyAddress": "%s", "created": %s}' "$address" "$created" > /dev/termination-log
echo "warm key $KEY_NAME: $address (created: $created)"
"""

REGISTER_SCRIPT = """set -u
printf '%s\\n' "$KEYRING_PASSWORD" | inferenced register-new-participant "$DAPI_API__PUBLIC_URL" \\
  "$ACCOUNT_PUBKEY" --node-address "$DAPI_CHAIN_NODE__SEED_API_URL" > /tmp/out 2>&1
code=$?
tail -c 1000 /tmp/out | tee /dev/termination-log
exit $code
"""


def warm_key_job_name(nn: str) -> str:
    return f"{nn}-warm-key"


def register_job_name(nn: str) -> str:
    return f"{nn}-register"


def pod_labels(nn: str, step: str) -> dict[str, str]:
    return labels(APP, nn, COMPONENT, **{LABEL_NETWORK_NODE: nn, "gonka.ai/onboarding": step})


def is_onboarding_pod(obj: Obj) -> bool:
    meta_labels = (obj.get("metadata") or {}).get("labels") or {}
    return meta_labels.get(LABEL_COMPONENT) == COMPONENT and bool(meta_labels.get(LABEL_NETWORK_NODE))


def _password_env(spec: NetworkNodeSpec) -> Obj:
    ref = spec.keyring_password_secret_ref
    return {"name": "KEYRING_PASSWORD", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _job(owner: Owner, spec: NetworkNodeSpec, name: str, step: str, script: str, env: list[Obj],
         volumes: list[Obj], mounts: list[Obj], extra_pod: Obj) -> Obj:
    nn = owner.name
    placement = scheduling(spec.scheduling)
    if "affinity" not in placement:  # the RWO volume is attached to the node pod's node: go there
        placement["affinity"] = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {
                "labelSelector": {"matchLabels": {LABEL_COMPONENT: "node", LABEL_NETWORK_NODE: nn}},
                "topologyKey": "kubernetes.io/hostname"}}]}}
    container = {
        "name": CONTAINER, "image": spec.images.api, "command": ["sh", "-c", script], "env": env,
        "resources": RESOURCES, "volumeMounts": mounts, "securityContext": CONTAINER_SECURITY,
        "terminationMessagePolicy": "File",  # never the log as fallback
    }
    pod_meta = pod_labels(nn, step)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": metadata(name, owner, pod_meta),
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "template": {
                "metadata": {"labels": pod_meta},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": POD_SECURITY,
                    "containers": [container],
                    "volumes": volumes,
                    **extra_pod,
                    **placement,
                },
            },
        },
    }


def build_warm_key_job(owner: Owner, spec: NetworkNodeSpec, inference_pvc: str) -> Obj:
    env = [{"name": "KEY_NAME", "value": spec.key_name}, _password_env(spec)]
    return _job(owner, spec, warm_key_job_name(owner.name), "warm-key", WARM_KEY_SCRIPT, env,
                [{"name": "inference", "persistentVolumeClaim": {"claimName": inference_pvc}}],
                [{"name": "inference", "mountPath": "/root/.inference"}], {})


def build_register_job(owner: Owner, spec: NetworkNodeSpec, inference_pvc: str, public_url: str,
                       chain_ip: str | None) -> Obj:
    env = [{"name": "KEY_NAME", "value": spec.key_name}, {"name": "KEYRING_BACKEND", "value": "file"},
           {"name": "ACCOUNT_PUBKEY", "value": spec.account_pub_key},
           {"name": "DAPI_API__PUBLIC_URL", "value": public_url},
           {"name": "DAPI_CHAIN_NODE__SEED_API_URL", "value": spec.chain.seed_api_url},
           _password_env(spec)]
    extra: Obj = {"hostAliases": [{"ip": chain_ip, "hostnames": ["node"]}]} if chain_ip else {}
    return _job(owner, spec, register_job_name(owner.name), "register", REGISTER_SCRIPT, env,
                [{"name": "inference", "persistentVolumeClaim": {"claimName": inference_pvc}},
                 {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
                [{"name": "inference", "mountPath": "/root/.inference"}, {"name": "tmp", "mountPath": "/tmp"}],
                extra)


# -- reading the outcome --------------------------------------------------------------------------

def _job_state(job: Obj | None) -> str | None:
    if job is None:
        return None
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return str(cond["type"])
    return "Running"


def termination(pod: Obj) -> str | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == CONTAINER:
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message")
            return str(message) if message else None
    return None


def _warm_address(pods: list[Obj]) -> str | None:
    for pod in pods:
        text = termination(pod)
        if not text:
            continue
        try:
            parsed = json.loads(text)
        except ValueError:
            continue
        address = parsed.get("warmKeyAddress") if isinstance(parsed, dict) else None
        if isinstance(address, str) and address and not any(c.isspace() for c in address):
            return address
    return None


def read_onboarding(nn: str, jobs: dict[str, Obj], pods: dict[str, Obj], previous: Obj | None) -> Obj:
    """status.onboarding: the Jobs' states, the warm key's address (kept once known: the Job's pod
    may be garbage-collected later)."""
    previous = previous or {}
    out: Obj = {}
    warm_pods = [p for p in pods.values() if ((p.get("metadata") or {}).get("labels") or {})
                 .get("gonka.ai/onboarding") == "warm-key"]
    address = _warm_address(warm_pods) or previous.get("warmKeyAddress")
    if address:
        out["warmKeyAddress"] = address
    if (state := _job_state(jobs.get(warm_key_job_name(nn)))) is not None:
        out["warmKeyJob"] = state
    if (state := _job_state(jobs.get(register_job_name(nn)))) is not None:
        out["registrationJob"] = state
    return out
