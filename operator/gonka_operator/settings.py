"""Operator settings, read from the environment (the chart sets them) and overridable by CLI flags."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

# The chart's default operator image (values.yaml image.repository, tag = appVersion).
DEFAULT_PRELOAD_IMAGE = "gonka-operator:0.1.0"


def _parse_map(raw: str) -> dict[str, str]:
    """`ns/name=url,ns2/name2=url2` or a JSON object."""
    raw = raw.strip()
    if not raw:
        return {}
    if raw.startswith("{"):
        return {str(k): str(v) for k, v in json.loads(raw).items()}
    out = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected namespace/name=url, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _own_namespace() -> str | None:
    """The namespace of the pod this runs in (in a cluster), else None."""
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _parse_labels(raw: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in raw.split(",") if item)


@dataclass
class Settings:
    # How the operator reaches a NetworkNode's admin API when it runs outside the cluster (local
    # demo, tests, a laptop): in-cluster DNS names do not resolve there. Keys are
    # `namespace/networknode`, or `*` for every NetworkNode. Env: GONKA_ADMIN_URL_OVERRIDES.
    admin_url_overrides: dict[str, str] = field(default_factory=dict)
    # The same for the chain RPC (`:26657`, env GONKA_CHAIN_URL_OVERRIDES) and the public API
    # (`:9000`, env GONKA_PUBLIC_URL_OVERRIDES) the host status is read from (host_status.py).
    chain_url_overrides: dict[str, str] = field(default_factory=dict)
    public_url_overrides: dict[str, str] = field(default_factory=dict)
    registry_poll_seconds: float = 30.0
    cluster_domain: str = "cluster.local"
    # Labels of the operator's own pods: the NetworkPolicies open the admin port (9200) to them.
    operator_pod_labels: dict[str, str] = field(
        default_factory=lambda: {"app.kubernetes.io/name": "gonka-operator"}
    )
    # The operator's own namespace: the NetworkPolicies open the admin port (9200) to its pods in
    # this namespace only. None (running outside the cluster): no pod may reach 9200.
    # Env: GONKA_OPERATOR_NAMESPACE (the chart fills it from the downward API).
    operator_namespace: str | None = None
    metrics_port: int = 0  # 0 = no metrics server
    metrics_address: str = "0.0.0.0"  # the chart's default; tests and the local demo use 127.0.0.1
    admin_timeout_seconds: float = 10.0
    # Re-read the InferenceNodes this often, to catch an update event the watch lost (no writes
    # unless one was lost). Env: GONKA_RESYNC_SECONDS.
    resync_seconds: float = 300.0
    # An InferenceNode's status changes within this long after its last status write are written
    # together, once, when the window ends, carrying every fact known by then (issue 13: a new node's
    # WaitingForWorkload -> WorkloadAvailable -> Registered land within ~1 s). 0 = each at once.
    # Env: GONKA_STATUS_COALESCE_SECONDS.
    status_coalesce_seconds: float = 1.0
    # The Lease that lets one operator act at a time ("" = no leader election). The chart sets the
    # namespace to its own. Env: GONKA_LEASE_NAME, GONKA_LEASE_NAMESPACE.
    lease_name: str = "gonka-operator"
    lease_namespace: str = "default"
    lease_seconds: float = 15.0  # a standby takes over this long after the holder's last renewal
    # Image of the HF-cache preload Job (`gonka-operator preload-model`): the operator's own image,
    # which ships huggingface_hub. Env: GONKA_PRELOAD_IMAGE (the chart sets its image).
    preload_image: str = DEFAULT_PRELOAD_IMAGE
    # A failed preload: `preload_backoff_limit` more pods (the Job controller's 10 s doubling backoff),
    # then a new Job after `preload_retry_seconds`, doubling per failed Job, at most
    # `preload_retry_max_seconds` (builders/hf_cache.Retry). Env: GONKA_PRELOAD_BACKOFF_LIMIT,
    # GONKA_PRELOAD_RETRY_SECONDS, GONKA_PRELOAD_RETRY_MAX_SECONDS.
    preload_backoff_limit: int = 6
    preload_retry_seconds: float = 60.0
    preload_retry_max_seconds: float = 1800.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        s = cls()
        s.admin_url_overrides = _parse_map(env.get("GONKA_ADMIN_URL_OVERRIDES", ""))
        s.chain_url_overrides = _parse_map(env.get("GONKA_CHAIN_URL_OVERRIDES", ""))
        s.public_url_overrides = _parse_map(env.get("GONKA_PUBLIC_URL_OVERRIDES", ""))
        s.registry_poll_seconds = float(env.get("GONKA_REGISTRY_POLL_SECONDS", s.registry_poll_seconds))
        s.cluster_domain = env.get("GONKA_CLUSTER_DOMAIN", s.cluster_domain)
        if env.get("GONKA_OPERATOR_POD_LABELS"):
            s.operator_pod_labels = _parse_labels(env["GONKA_OPERATOR_POD_LABELS"])
        s.operator_namespace = env.get("GONKA_OPERATOR_NAMESPACE") or None
        s.metrics_port = int(env.get("GONKA_METRICS_PORT", s.metrics_port))
        s.metrics_address = env.get("GONKA_METRICS_ADDRESS", s.metrics_address)
        s.admin_timeout_seconds = float(env.get("GONKA_ADMIN_TIMEOUT_SECONDS", s.admin_timeout_seconds))
        s.resync_seconds = float(env.get("GONKA_RESYNC_SECONDS", s.resync_seconds))
        s.status_coalesce_seconds = float(env.get("GONKA_STATUS_COALESCE_SECONDS", s.status_coalesce_seconds))
        s.lease_name = env.get("GONKA_LEASE_NAME", s.lease_name)
        s.lease_seconds = float(env.get("GONKA_LEASE_SECONDS", s.lease_seconds))
        s.lease_namespace = env.get("GONKA_LEASE_NAMESPACE", "") or _own_namespace() or s.lease_namespace
        s.preload_image = env.get("GONKA_PRELOAD_IMAGE") or s.preload_image
        s.preload_backoff_limit = int(env.get("GONKA_PRELOAD_BACKOFF_LIMIT", s.preload_backoff_limit))
        s.preload_retry_seconds = float(env.get("GONKA_PRELOAD_RETRY_SECONDS", s.preload_retry_seconds))
        s.preload_retry_max_seconds = float(env.get("GONKA_PRELOAD_RETRY_MAX_SECONDS", s.preload_retry_max_seconds))
        return s

    def admin_url_for(self, namespace: str, network_node: str, in_cluster_url: str | None) -> str | None:
        return (self.admin_url_overrides.get(f"{namespace}/{network_node}")
                or self.admin_url_overrides.get("*")
                or in_cluster_url)

    def chain_url_for(self, namespace: str, network_node: str, in_cluster_url: str) -> str:
        return (self.chain_url_overrides.get(f"{namespace}/{network_node}")
                or self.chain_url_overrides.get("*") or in_cluster_url)

    def public_url_for(self, namespace: str, network_node: str, in_cluster_url: str) -> str:
        return (self.public_url_overrides.get(f"{namespace}/{network_node}")
                or self.public_url_overrides.get("*") or in_cluster_url)
