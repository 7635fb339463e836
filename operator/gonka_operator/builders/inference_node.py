"""InferenceNode → GPU Deployment (mlnode + the routing nginx) + Service (+ a retained HF-cache
PVC, + the HF-cache preload Job (builders/hf_cache.py; the Deployment has 0 replicas until the cache
is Ready), + the nginx ConfigMap when no NetworkNode provides it), and the registry body.

The api calls the ML node at `http://<Service>:8080/<ml-node version>/…` and `:5050/…`
(REFERENCE.md §3). The Service sends both to the pod's nginx (builders/mlnode_proxy.py), which
strips the version prefix on the management port and forwards to mlnode's 8080; probes go to
mlnode's 8080 directly. The nginx config is the same for every ML node: an InferenceNode with a
networkNodeRef mounts its NetworkNode's ConfigMap (`<networknode>-ml-proxy`, owned by the
NetworkNode: no per-node write); one registered through adminURL has no NetworkNode and owns its
own (`<name>-mlnode-proxy`).
"""

from __future__ import annotations

from gonka_operator.admin.models import Hardware, InferenceNodeConfig, ModelArgs, ModelOverride
from gonka_operator.builders import hf_cache, mlnode_proxy
from gonka_operator.builders.common import (
    CONTAINER_SECURITY,
    LABEL_COMPONENT,
    LABEL_INFERENCE_NODE,
    LABEL_INSTANCE,
    LABEL_NETWORK_NODE,
    POD_SECURITY,
    Obj,
    Owner,
    env_list,
    http_probe,
    labels,
    metadata,
    resources,
    scheduling,
    service_port,
)
from gonka_operator.builders.network_node import mlnode_proxy_config_name
from gonka_operator.models.inference_node import DEFAULT_MLNODE_IMAGE, DEFAULT_PROXY_IMAGE, InferenceNodeSpec

APP = "gonka-inference-node"
MANAGEMENT_PORT = 8080  # mlnode's one port (management, PoC and, since 3.0.7, inference)
SERVICE_INFERENCE_PORT = 5050  # what upstream's nginx publishes; the registry gets this one
SERVICE_MANAGEMENT_PORT = 8080
DEFAULT_SHM = "16Gi"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


def workload_name(name: str) -> str:
    return f"{name}-mlnode"


def hf_cache_pvc_name(name: str) -> str:
    return hf_cache.pvc_name(name)


def shared_proxy_config_name(network_node: str) -> str:
    """The NetworkNode's ConfigMap that all its ML pods mount."""
    return mlnode_proxy_config_name(network_node)


def own_proxy_config_name(name: str) -> str:
    """The ConfigMap of an InferenceNode that has no NetworkNode (adminURL)."""
    return f"{name}-mlnode-proxy"


def proxy_config_name(name: str, network_node: str | None) -> str:
    return shared_proxy_config_name(network_node) if network_node else own_proxy_config_name(name)


def pod_labels(name: str, network_node: str | None) -> dict[str, str]:
    extra = {LABEL_INFERENCE_NODE: name}
    if network_node:
        extra[LABEL_NETWORK_NODE] = network_node
    return labels(APP, name, "mlnode", **extra)


def pod_selector(name: str) -> dict[str, str]:
    return {LABEL_INSTANCE: name, LABEL_COMPONENT: "mlnode", LABEL_INFERENCE_NODE: name}


def vllm_args(spec: InferenceNodeSpec) -> list[str]:
    """The user's args plus the structured parallelism (the admission rules keep them disjoint)."""
    args = list(spec.args)
    if spec.parallelism.tensor > 1:
        args += ["--tensor-parallel-size", str(spec.parallelism.tensor)]
    if spec.parallelism.pipeline > 1:
        args += ["--pipeline-parallel-size", str(spec.parallelism.pipeline)]
    return args


def service_host(name: str, namespace: str, cluster_domain: str) -> str:
    return f"{workload_name(name)}.{namespace}.svc.{cluster_domain}"


def registry_config(name: str, namespace: str, spec: InferenceNodeSpec, cluster_domain: str) -> InferenceNodeConfig:
    """The admin-API body for this ML node. host is bare (no scheme): the api builds http://host:port."""
    if spec.external:
        host, inference_port, poc_port = spec.external.host, spec.external.inference_port, spec.external.poc_port
    else:
        host, inference_port, poc_port = (service_host(name, namespace, cluster_domain),
                                          SERVICE_INFERENCE_PORT, SERVICE_MANAGEMENT_PORT)
    hardware_type = spec.hardware_type or spec.gpu_product
    override = (ModelOverride(hf_repo=spec.model_override.hf_repo, hf_commit=spec.model_override.hf_commit)
                if spec.model_override else None)
    return InferenceNodeConfig(
        id=spec.node_id or name, host=host, inference_port=inference_port, poc_port=poc_port,
        max_concurrent=spec.max_concurrent,
        models={spec.model: ModelArgs(args=vllm_args(spec), model_override=override)},
        hardware=[Hardware(type=hardware_type, count=spec.gpus)] if hardware_type else [],
    )


def build_hf_cache_pvc(owner: Owner, spec: InferenceNodeSpec) -> Obj | None:
    cache = spec.hf_cache
    if cache is None or cache.size is None:
        return None
    pvc_spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": str(cache.size)}}}
    if cache.storage_class_name:
        pvc_spec["storageClassName"] = cache.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": metadata(hf_cache_pvc_name(owner.name), owner,
                                 labels(APP, owner.name, "hf-cache", **{LABEL_INFERENCE_NODE: owner.name}),
                                 owned=False),
            "spec": pvc_spec}


def hf_volume(owner: Owner, spec: InferenceNodeSpec) -> Obj:
    return hf_cache.volume(owner.name, spec)  # the preload Job's name hashes it too


def _env(spec: InferenceNodeSpec) -> list[Obj]:
    # v0.2.14's docker-compose.mlnode.yml; HF_HUB_OFFLINE is gone there (mlnode >= 3.0.10 may download
    # weights itself). Pre-downloading into the cache is still advised (REFERENCE.md §3).
    fixed = {"HF_HOME": "/root/.cache", "VLLM_ATTENTION_BACKEND": "FLASHINFER"}
    if spec.hf_cache and spec.hf_cache.offline:  # the host's choice: never contact the Hub
        fixed["HF_HUB_OFFLINE"] = "1"
    env = env_list(fixed, spec.env)
    if spec.hf_token_secret_ref:
        ref = spec.hf_token_secret_ref
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return env


def _proxy_resources(spec: InferenceNodeSpec) -> Obj:
    res = spec.proxy.resources if spec.proxy else None
    if res is None:
        return {"requests": dict(mlnode_proxy.DEFAULT_REQUESTS), "limits": dict(mlnode_proxy.DEFAULT_LIMITS)}
    return resources(res)


def build_proxy_config(owner: Owner) -> Obj:
    """The nginx ConfigMap of an InferenceNode without NetworkNode (see the module docstring)."""
    return mlnode_proxy.config_map(own_proxy_config_name(owner.name), owner,
                                   labels(APP, owner.name, "mlnode-proxy", **{LABEL_INFERENCE_NODE: owner.name}))


def _placement(spec: InferenceNodeSpec) -> tuple[dict[str, str], list[Obj]]:
    node_selector = {GPU_PRODUCT_LABEL: spec.gpu_product} if spec.gpu_product else {}
    return node_selector, [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]


def build_preload_job(owner: Owner, spec: InferenceNodeSpec, image: str, attempt: int = 1,
                      retry: hf_cache.Retry = hf_cache.DEFAULT_RETRY) -> Obj | None:
    """The Job that fills the HF cache before the ML pod starts (builders/hf_cache.py), or None."""
    if not hf_cache.wanted(spec):
        return None
    node_selector, tolerations = _placement(spec)
    return hf_cache.build_preload_job(owner, spec, image, hf_volume(owner, spec), node_selector, tolerations,
                                      pod_selector(owner.name), attempt, retry)


def build_deployment(owner: Owner, spec: InferenceNodeSpec, network_node: str | None, replicas: int = 1) -> Obj:
    """One mlnode pod on `gpus` GPUs, with the routing nginx beside it. Recreate: a new pod never
    starts before the old one released its GPUs (two pods of one ML node would fight over them and
    over the registry id).

    `replicas` is 0 while the HF cache is not Ready yet (the preload Job runs first) and the ML node
    has never served: the gate is the Deployment's replica count, not an initContainer, because a
    changed pod template would restart (Recreate) a serving pod, while a replica count that stays 1
    once the pod runs never does (a model change downloads the new weights beside the serving pod)."""
    state = http_probe(MANAGEMENT_PORT, "/api/v1/state", period=10, failures=3)
    container = {
        "name": "mlnode", "image": spec.image or DEFAULT_MLNODE_IMAGE,
        "command": ["uvicorn", "api.app:app", "--host=0.0.0.0", f"--port={MANAGEMENT_PORT}"],
        "env": _env(spec),
        "ports": [{"name": "management", "containerPort": MANAGEMENT_PORT, "protocol": "TCP"}],
        "resources": resources(spec.resources, **{GPU_RESOURCE: str(spec.gpus)}),
        "volumeMounts": [{"name": "hf-cache", "mountPath": "/root/.cache"},
                         {"name": "dshm", "mountPath": "/dev/shm"}],
        # Probes go to mlnode itself, never through the proxy, and never to inference (it answers only
        # while vLLM runs, and the network node starts/stops vLLM). Model loading takes 10–60 min cold:
        # the startupProbe allows 60 min before liveness applies.
        "startupProbe": http_probe(MANAGEMENT_PORT, "/api/v1/state", period=10, failures=360),
        "livenessProbe": http_probe(MANAGEMENT_PORT, "/api/v1/state", period=30, failures=5),
        "readinessProbe": state,
        "securityContext": CONTAINER_SECURITY,
    }
    node_selector, gpu_toleration = _placement(spec)
    proxy_image = (spec.proxy.image if spec.proxy else None) or DEFAULT_PROXY_IMAGE
    pod_spec: Obj = {
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,  # neither mlnode nor nginx talks to the Kubernetes API
        "securityContext": POD_SECURITY,
        "terminationGracePeriodSeconds": 60,
        "containers": [container, mlnode_proxy.container(proxy_image, _proxy_resources(spec))],
        "volumes": [hf_volume(owner, spec),
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": str(spec.shm_size or DEFAULT_SHM)}},
                    *mlnode_proxy.volumes(proxy_config_name(owner.name, network_node))],
        **scheduling(spec.scheduling, node_selector, gpu_toleration),
    }
    template_labels = pod_labels(owner.name, network_node)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(workload_name(owner.name), owner, template_labels),
        "spec": {"replicas": replicas, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": pod_selector(owner.name)},
                 "template": {"metadata": {"labels": template_labels}, "spec": pod_spec}},
    }


def build_service(owner: Owner, network_node: str | None) -> Obj:
    """The ports the api calls, both onto the pod's nginx (upstream's compose publishes the same pair)."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata(workload_name(owner.name), owner, pod_labels(owner.name, network_node)),
        "spec": {"type": "ClusterIP", "selector": pod_selector(owner.name),
                 "ports": [service_port("inference", SERVICE_INFERENCE_PORT, mlnode_proxy.INFERENCE_PORT_NAME),
                           service_port("management", SERVICE_MANAGEMENT_PORT, mlnode_proxy.MANAGEMENT_PORT_NAME)]},
    }
