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

DEFAULT_MLNODE_IMAGE = "ghcr.io/product-science/mlnode:3.0.9"
PARALLELISM_FLAGS = ("--tensor-parallel-size", "--pipeline-parallel-size")


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
                }
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


_WORKLOAD_FIELDS = ("image", "hfCache", "shmSize", "env", "resources", "scheduling", "hfTokenSecretRef")

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


class RegistryStatus(CRDModel):
    current_status: str | None = Field(default=None, description="current_status in the registry.")
    intended_status: str | None = Field(default=None, description="intended_status in the registry.")
    poc_status: str | None = Field(default=None, description="poc_current_status in the registry.")
    failure_reason: str | None = Field(default=None, description="failure_reason in the registry.")
    enabled: bool | None = Field(default=None, description="admin_state.enabled in the registry.")
    last_seen: str | None = Field(default=None, description="Last poll that saw the entry (RFC 3339).")


class InferenceNodeStatus(CRDModel):
    observed_generation: int | None = Field(default=None, description="Last generation reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, WorkloadAvailable, Registered."
    )
    node_id: str | None = Field(default=None, description="Id used in the admin registry.")
    admin_url: str | None = Field(default=None, alias="adminURL", description="Admin API in use.")
    registry: RegistryStatus | None = Field(default=None, description="Registry state from the last poll.")
