"""InferenceNode: one ML node (mlnode + vLLM on GPUs), registered with its network node."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

from gonka_operator.models.common import (
    Condition,
    CRDModel,
    EnvVar,
    Quantity,
    Resources,
    Scheduling,
    SecretKeyRef,
)

# Newest ghcr.io/gonka-ai/mlnode release named in REFERENCE.md §3 (PoC v2 needs 3.0.12-post3 or later).
DEFAULT_MLNODE_IMAGE = "ghcr.io/gonka-ai/mlnode:3.0.16"
# The ML node's nginx in upstream's v0.2.14 deploy/join/docker-compose.mlnode.yml (REFERENCE.md §1).
DEFAULT_PROXY_IMAGE = "nginx:1.28.0"
PARALLELISM_FLAGS = ("--tensor-parallel-size", "--pipeline-parallel-size")
# vLLM args the current api forbids inside a model's args (decentralized-api apiconfig
# `reservedModelOverrideArgs`): the api sets them itself.
RESERVED_ARGS = ("--model", "--revision", "--served-model-name")


def _arg_is(flag: str) -> str:
    """CEL: `a` is `flag`, `flag=value` or `flag value` (one list item)."""
    return f"a == '{flag}' || a.startsWith('{flag}=') || a.startsWith('{flag} ')"


class NetworkNodeRef(CRDModel):
    name: str = Field(min_length=1, description="Name of a NetworkNode in the same namespace.")


class Parallelism(CRDModel):
    tensor: int = Field(default=1, ge=1, le=64, description="vLLM --tensor-parallel-size.")
    pipeline: int = Field(default=1, ge=1, le=64, description="vLLM --pipeline-parallel-size.")


class HFCache(CRDModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.existingClaim), has(self.hostPath), has(self.size)]"
                    ".filter(x, x).size() == 1",
                    "message": "set exactly one of existingClaim, hostPath or size",
                },
                {
                    "rule": "!has(self.hostPath) || !self.hostPath.matches('^[/.]+$')",
                    "message": "spec.hfCache.hostPath must not be / (that would mount the GPU server's whole "
                    "filesystem into the ML pod): use a directory such as /mnt/shared",
                    "fieldPath": ".hostPath",
                },
            ]
        }
    )

    existing_claim: str | None = Field(default=None, description="Use this existing PVC as the HF cache.")
    host_path: str | None = Field(
        default=None, pattern=r"^/", description="Use this directory of the GPU server (upstream: /mnt/shared)."
    )
    size: Quantity | None = Field(
        default=None, description="Create a PVC of this size (retained when the InferenceNode is deleted)."
    )
    storage_class_name: str | None = Field(default=None, description="StorageClass of a new PVC.")
    preload: bool | None = Field(
        default=None,
        description="Download the model's snapshot into the cache with a Job before the ML pod starts (the "
        "revision is spec.modelOverride.hfCommit when set, else main). Default: true for a cache the operator "
        "creates (size), false for hostPath/existingClaim (declared already filled; set true to preload them too).",
    )
    offline: bool = Field(
        default=False,
        description="Set HF_HUB_OFFLINE=1 on mlnode (it never contacts the Hub; the cache must hold the weights). "
        "Default false, as upstream since mlnode 3.0.10 (models may auto-download).",
    )

    def preload_enabled(self) -> bool:
        return self.preload if self.preload is not None else self.size is not None


class ExternalMLNode(CRDModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.host.contains('://')",
                    "message": "spec.external.host must be a bare DNS name or IP without scheme "
                    "(the api builds http://host:port itself)",
                    "fieldPath": ".host",
                }
            ]
        }
    )

    host: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$",
        description="DNS name or IP of the ML node, without scheme or port (the api builds http://host:port).",
    )
    inference_port: int = Field(default=5050, ge=1, le=65535, description="Inference port (nginx 5050→5000).")
    poc_port: int = Field(default=8080, ge=1, le=65535, description="Management / PoC port.")


class ModelOverrideSpec(CRDModel):
    """Serve these weights for the model (the api's `model_override`, after v0.2.14)."""

    hf_repo: str = Field(
        min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][-_.A-Za-z0-9]*(/[-_.A-Za-z0-9]+)?$",
        description="Hugging Face repository, e.g. my-org/Qwen3-32B-FP8-custom.",
    )
    hf_commit: str = Field(
        pattern=r"^[0-9a-f]{40}$",
        description="Commit of that repository: 40 lowercase hexadecimal characters (no branch or tag).",
    )


class MLNodeProxy(CRDModel):
    """The nginx in front of mlnode (it strips the api's ML-node version prefix, REFERENCE.md §3)."""

    image: str | None = Field(default=None, min_length=1, description=f"nginx image; default {DEFAULT_PROXY_IMAGE}.")
    resources: Resources | None = Field(
        default=None, description="CPU/memory of the proxy; default requests 50m/32Mi, memory limit 256Mi."
    )


class AllowedPeer(CRDModel):
    """Who may reach the ML node's ports (a NetworkPolicy peer)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.cidr) != (has(self.podSelector) || has(self.namespaceSelector))",
                    "message": "set either cidr, or podSelector and/or namespaceSelector",
                }
            ]
        }
    )

    cidr: str | None = Field(
        default=None, pattern=r"^[0-9a-fA-F:.]+/[0-9]{1,3}$",
        description="An address range, e.g. 192.168.10.0/24 (where the network node's api runs).",
    )
    pod_selector: dict[str, str] | None = Field(
        default=None, description="matchLabels of the pods allowed (in this namespace unless namespaceSelector)."
    )
    namespace_selector: dict[str, str] | None = Field(
        default=None, description="matchLabels of the namespaces allowed, e.g. {kubernetes.io/metadata.name: x}."
    )


_WORKLOAD_FIELDS = ("image", "hfCache", "shmSize", "env", "resources", "scheduling", "hfTokenSecretRef", "proxy",
                    "allowedFrom")

_RULES: Any = [
    {
        "rule": "has(self.networkNodeRef) != has(self.adminURL)",
        "message": "set exactly one of spec.networkNodeRef and spec.adminURL",
        "fieldPath": ".networkNodeRef",
    },
    {
        "rule": "self.gpus % (self.parallelism.tensor * self.parallelism.pipeline) == 0",
        "message": "spec.gpus must be a multiple of parallelism.tensor × parallelism.pipeline "
        "(vLLM runs gpus/(tensor×pipeline) instances)",
        "fieldPath": ".gpus",
    },
    {
        "rule": "!has(self.external) || (" + " && ".join(f"!has(self.{f})" for f in _WORKLOAD_FIELDS) + ")",
        "message": "spec.external describes an ML node outside the cluster: it excludes the workload fields "
        + ", ".join(_WORKLOAD_FIELDS),
        "fieldPath": ".external",
    },
    {
        "rule": "has(self.external) || has(self.hfCache)",
        "message": "spec.hfCache is required for an in-cluster ML node (weights must be pre-downloaded: "
        "set existingClaim, hostPath or size)",
        "fieldPath": ".hfCache",
    },
    {
        "rule": "!has(self.args) || !self.args.exists(a, a.startsWith('--tensor-parallel-size') || "
        "a.startsWith('--pipeline-parallel-size'))",
        "message": "spec.args must not set --tensor-parallel-size/--pipeline-parallel-size: use spec.parallelism",
        "fieldPath": ".args",
    },
    {
        "rule": "!has(self.args) || !self.args.exists(a, " + " || ".join(_arg_is(f) for f in RESERVED_ARGS) + ")",
        "message": "spec.args must not set " + ", ".join(RESERVED_ARGS) + ": the api sets them itself "
        "(use spec.model, and spec.modelOverride for other weights)",
        "fieldPath": ".args",
    },
    {
        "rule": "!has(self.adminURL) || has(self.external) || has(self.allowedFrom)",
        "message": "spec.allowedFrom is required for an in-cluster ML node registered through spec.adminURL: "
        "it says who may reach its ports (the network node's api); use [{cidr: 0.0.0.0/0}] to allow everyone",
        "fieldPath": ".allowedFrom",
    },
]


class InferenceNodeSpec(CRDModel):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _RULES})

    network_node_ref: NetworkNodeRef | None = Field(
        default=None, description="The NetworkNode (same namespace) whose admin API registers this ML node."
    )
    admin_url: str | None = Field(
        default=None,
        alias="adminURL",
        pattern=r"^https?://[^/\s]+(/.*)?$",
        description="Admin API of a network node this operator does not run, e.g. http://10.0.0.5:9200.",
    )
    node_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$",
        description="Id in the admin registry; defaults to the object's name; immutable.",
    )
    model: str = Field(min_length=1, description="Model served, e.g. Qwen/Qwen3-32B-FP8 (the admin API judges it).")
    model_override: ModelOverrideSpec | None = Field(
        default=None, description="Serve other weights for spec.model (the registry's model_override)."
    )
    args: list[Annotated[str, Field(max_length=512)]] = Field(
        default_factory=list, max_length=64, description="Extra vLLM args (parallelism excluded)."
    )
    parallelism: Parallelism = Field(default_factory=Parallelism, description="vLLM parallelism.")
    gpus: int = Field(default=1, ge=1, le=64, description="GPUs (nvidia.com/gpu); a multiple of tensor×pipeline.")
    gpu_product: str | None = Field(
        default=None,
        description="Schedule on nodes labelled nvidia.com/gpu.product=<this>, e.g. NVIDIA-H100-80GB-HBM3.",
    )
    hardware_type: str | None = Field(
        default=None, description="Hardware type reported to the registry, e.g. H100; default gpuProduct."
    )
    max_concurrent: int = Field(default=500, ge=1, le=100000, description="max_concurrent in the registry.")
    enabled: bool = Field(default=True, description="false disables the node in the registry (next epoch).")
    drain_timeout: str = Field(
        default="2h", alias="drainTimeout", min_length=2, pattern=r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
        description="On delete, how long the disabled entry and the pod may stay while the network node still "
                    "schedules the node (PoC window, should_be_online), e.g. 2h, 90m; then it is deregistered "
                    "anyway. Annotation gonka.ai/force-delete=true skips the drain.",
    )
    image: str | None = Field(default=None, description=f"mlnode image; default {DEFAULT_MLNODE_IMAGE}.")
    hf_cache: HFCache | None = Field(
        default=None, alias="hfCache", description="Hugging Face cache mounted at /root/.cache."
    )
    hf_token_secret_ref: SecretKeyRef | None = Field(
        default=None, alias="hfTokenSecretRef", description="Secret key holding HF_TOKEN."
    )
    shm_size: Quantity | None = Field(default=None, description="Memory-backed /dev/shm size; default 16Gi.")
    env: list[EnvVar] | None = Field(default=None, description="Extra environment variables of mlnode.")
    resources: Resources | None = Field(
        default=None, description="CPU/memory; nvidia.com/gpu is set from spec.gpus."
    )
    scheduling: Scheduling | None = Field(default=None, description="Extra scheduling constraints.")
    external: ExternalMLNode | None = Field(
        default=None, description="An ML node outside the cluster: no workload, only registration."
    )
    proxy: MLNodeProxy | None = Field(
        default=None, description="The nginx in front of mlnode (strips the api's ML-node version prefix)."
    )
    allowed_from: list[AllowedPeer] | None = Field(
        default=None, max_length=16,
        description="Who else may reach the ML node's ports. Required with adminURL (in-cluster ML node); with "
        "networkNodeRef its api pod is always allowed.",
    )


class RegistryOnboarding(CRDModel):
    """The api's `onboarding` of this entry (after v0.2.14)."""

    participant_state: str | None = Field(
        default=None, description="ACTIVE_PARTICIPATING, INACTIVE_WAITING or UNKNOWN (the host, this epoch)."
    )
    mlnode_state: str | None = Field(default=None, description="WAITING_FOR_POC, TESTING or TEST_FAILED.")
    phase: str | None = Field(
        default=None, description="Epoch phase: PoCGenerate, PoCGenerateWindDown, PoCValidate, "
        "PoCValidateWindDown or Inference."
    )
    next_poc_at: str | None = Field(
        default=None, alias="nextPoCAt", description="When the next PoC starts (RFC 3339, to the minute)."
    )
    should_be_online: bool | None = Field(default=None, description="The api says the node must be up now.")
    user_message: str | None = Field(default=None, description="The api's message for the host.")
    guidance: str | None = Field(default=None, description="The api's advice on what to do next.")


class RegistryStatus(CRDModel):
    current_status: str | None = Field(default=None, description="current_status in the registry.")
    intended_status: str | None = Field(default=None, description="intended_status in the registry.")
    poc_status: str | None = Field(default=None, description="poc_current_status in the registry.")
    failure_reason: str | None = Field(default=None, description="failure_reason in the registry.")
    enabled: bool | None = Field(default=None, description="admin_state.enabled in the registry.")
    ml_node_version: str | None = Field(
        default=None, description="ML-node version the network has set (the api's path prefix)."
    )
    poc_weight: float | None = Field(
        default=None, description="PoC weight in the current epoch, summed over the node's models."
    )
    onboarding: RegistryOnboarding | None = Field(default=None, description="The api's onboarding view.")
    last_seen: str | None = Field(default=None, description="Last poll that saw the entry (RFC 3339).")


class CacheStatus(CRDModel):
    """The HF cache of this ML node (the preload Job's outcome)."""

    state: str | None = Field(default=None, description="Downloading, Ready or Failed.")
    repo: str | None = Field(default=None, description="Repository preloaded.")
    revision: str | None = Field(default=None, description="Revision asked for (a commit, or main).")
    commit: str | None = Field(default=None, description="Commit of the snapshot in the cache.")
    files: int | None = Field(default=None, description="Files of the snapshot.")
    bytes: int | None = Field(default=None, description="Bytes of the snapshot.")
    fetched_bytes: int | None = Field(default=None, description="Bytes fetched from the Hub by the last run.")
    job: str | None = Field(default=None, description="The preload Job.")
    attempt: int | None = Field(default=None, description="The operator's attempt (new Job) after failed ones.")
    message: str | None = Field(default=None, description="What happened (the Hub's message on failure).")


class InferenceNodeStatus(CRDModel):
    observed_generation: int | None = Field(default=None, description="Last generation reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, WorkloadAvailable, Registered."
    )
    node_id: str | None = Field(default=None, description="Id used in the admin registry.")
    admin_url: str | None = Field(default=None, alias="adminURL", description="Admin API in use.")
    registry: RegistryStatus | None = Field(default=None, description="Registry state from the last poll.")
    cache: CacheStatus | None = Field(default=None, description="HF cache preload (spec.hfCache.preload).")
