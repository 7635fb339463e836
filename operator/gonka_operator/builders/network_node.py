"""NetworkNode → PVCs, the node StatefulSet, the proxy Deployment, Services, NetworkPolicies.

Shape: node + api + tmkms share one pod (node and api share /root/.inference; tmkms dials the node
on 26658). It is a 1-replica StatefulSet rather than a Deployment: a StatefulSet never starts the
replacement pod before the old one is confirmed gone, even when its node stops answering, so two
tmkms (= two signers = double-sign) can never run. The PVCs are created by us, not by
volumeClaimTemplates, so they carry no owner reference (they survive a mistaken delete of the CR)
and can be resized.
"""

from __future__ import annotations

from dataclasses import dataclass

from gonka_operator.builders import mlnode_proxy
from gonka_operator.builders.common import (
    CONTAINER_SECURITY,
    LABEL_COMPONENT,
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
from gonka_operator.models.network_node import ExposedPort, NetworkNodeSpec

APP = "gonka-network-node"
P2P_PORT, RPC_PORT, TMKMS_PORT, REST_PORT, GRPC_PORT = 26656, 26657, 26658, 1317, 9090
# 9300 (the api's ML gRPC port in the 2025-08 files) is neither published by upstream's compose nor
# used by any ML node: not declared, not in the Service, closed by the NetworkPolicy.
PUBLIC_API_PORT, CALLBACK_PORT, ADMIN_PORT = 9000, 9100, 9200
PROXY_PORT, EXPLORER_PORT = 80, 5173
DEFAULT_P2P_SERVICE_PORT, DEFAULT_PROXY_SERVICE_PORT = 5000, 8000


@dataclass(frozen=True)
class Names:
    """Names of a NetworkNode's children, derived from the CR's name."""

    nn: str

    @property
    def statefulset(self) -> str:
        return f"{self.nn}-node"

    @property
    def api_service(self) -> str:
        return f"{self.nn}-api"

    @property
    def chain_service(self) -> str:
        return f"{self.nn}-chain"

    @property
    def p2p_service(self) -> str:
        return f"{self.nn}-p2p"

    @property
    def proxy(self) -> str:
        return f"{self.nn}-proxy"

    @property
    def explorer(self) -> str:
        return f"{self.nn}-explorer"

    def pvc(self, volume: str) -> str:
        return f"{self.nn}-{volume}"


@dataclass(frozen=True)
class Endpoints:
    admin_url: str
    callback_url: str
    public_url: str
    p2p_external_address: str

    def wire(self) -> dict[str, str]:
        return {"adminURL": self.admin_url, "callbackURL": self.callback_url, "publicURL": self.public_url,
                "p2pExternalAddress": self.p2p_external_address}


def node_labels(nn: str) -> dict[str, str]:
    return labels(APP, nn, "node", **{LABEL_NETWORK_NODE: nn})


def node_selector(nn: str) -> dict[str, str]:
    """Selects the node+api+tmkms pod of a NetworkNode (used by Services and NetworkPolicies)."""
    return {LABEL_INSTANCE: nn, LABEL_COMPONENT: "node", LABEL_NETWORK_NODE: nn}


def proxy_selector(nn: str) -> dict[str, str]:
    return {LABEL_INSTANCE: nn, LABEL_COMPONENT: "proxy", LABEL_NETWORK_NODE: nn}


def _public_port(exposed: ExposedPort, default: int) -> int:
    """The port the outside world uses: the nodePort for NodePort Services, else the Service port."""
    if exposed.type == "NodePort" and exposed.node_port is not None:
        return exposed.node_port
    return exposed.port or default


def endpoints(name: str, namespace: str, spec: NetworkNodeSpec, cluster_domain: str) -> Endpoints:
    """The URLs everyone needs. The PoC callback URL comes from the private api Service's DNS name:
    the pitfall it prevents is `http://api:9100`, which no ML node outside the pod can reach."""
    api_host = f"{Names(name).api_service}.{namespace}.svc.{cluster_domain}"
    public_url = spec.public_url or (
        f"http://{spec.public_host}:{_public_port(spec.exposure.proxy, DEFAULT_PROXY_SERVICE_PORT)}"
    )
    p2p = spec.p2p_external_address or (
        f"tcp://{spec.public_host}:{_public_port(spec.exposure.p2p, DEFAULT_P2P_SERVICE_PORT)}"
    )
    return Endpoints(f"http://{api_host}:{ADMIN_PORT}", f"http://{api_host}:{CALLBACK_PORT}", public_url, p2p)


def build_pvcs(owner: Owner, spec: NetworkNodeSpec) -> list[Obj]:
    out = []
    for volume, storage in (("inference", spec.storage.inference), ("dapi", spec.storage.dapi),
                            ("tmkms", spec.storage.tmkms)):
        pvc_spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": str(storage.size)}}}
        if storage.storage_class_name:
            pvc_spec["storageClassName"] = storage.storage_class_name
        out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": metadata(Names(owner.name).pvc(volume), owner,
                                         labels(APP, owner.name, volume, **{LABEL_NETWORK_NODE: owner.name}),
                                         owned=False),
                    "spec": pvc_spec})
    return out


def _service(name: str, owner: Owner, component: str, selector: dict[str, str], ports: list[Obj],
             exposed: ExposedPort | None = None) -> Obj:
    spec: Obj = {"type": exposed.type if exposed else "ClusterIP", "selector": selector, "ports": ports}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": metadata(name, owner, labels(APP, owner.name, component,
                                                     **{LABEL_NETWORK_NODE: owner.name}),
                                 annotations=exposed.annotations if exposed else None),
            "spec": spec}


def build_services(owner: Owner, spec: NetworkNodeSpec) -> list[Obj]:
    """Public: P2P and proxy. Private (ClusterIP): api (9000/9100/9200) and chain (for the proxy)."""
    names, nn = Names(owner.name), owner.name
    p2p, proxy = spec.exposure.p2p, spec.exposure.proxy
    services = [
        _service(names.p2p_service, owner, "p2p", node_selector(nn),
                 [service_port("p2p", p2p.port or DEFAULT_P2P_SERVICE_PORT, P2P_PORT, p2p.node_port)], p2p),
        _service(names.proxy, owner, "proxy", proxy_selector(nn),
                 [service_port("http", proxy.port or DEFAULT_PROXY_SERVICE_PORT, PROXY_PORT, proxy.node_port)],
                 proxy),
        _service(names.api_service, owner, "api", node_selector(nn),
                 [service_port("public-api", PUBLIC_API_PORT, PUBLIC_API_PORT),
                  service_port("ml-callback", CALLBACK_PORT, CALLBACK_PORT),
                  service_port("admin", ADMIN_PORT, ADMIN_PORT)]),
        _service(names.chain_service, owner, "chain", node_selector(nn),
                 [service_port("rpc", RPC_PORT, RPC_PORT), service_port("rest", REST_PORT, REST_PORT),
                  service_port("grpc", GRPC_PORT, GRPC_PORT)]),
    ]
    if spec.explorer.enabled:
        selector = {LABEL_INSTANCE: nn, LABEL_COMPONENT: "explorer", LABEL_NETWORK_NODE: nn}
        services.append(_service(names.explorer, owner, "explorer", selector,
                                 [service_port("http", EXPLORER_PORT, EXPLORER_PORT)]))
    return services


def _node_env(spec: NetworkNodeSpec, ep: Endpoints) -> dict[str, str]:
    chain = spec.chain
    env = {
        "KEY_NAME": spec.key_name, "SEED_NODE_RPC_URL": chain.seed_node_rpc_url,
        "SEED_NODE_P2P_URL": chain.seed_node_p2p_url, "P2P_EXTERNAL_ADDRESS": ep.p2p_external_address,
        "SYNC_WITH_SNAPSHOTS": str(chain.sync_with_snapshots).lower(),
        "TRUSTED_BLOCK_PERIOD": str(chain.trusted_block_period), "SNAPSHOT_INTERVAL": "1000",
        "SNAPSHOT_KEEP_RECENT": "5", "TMKMS_PORT": str(TMKMS_PORT), "REST_API_ACTIVE": "true",
        "INIT_ONLY": "false", "IS_GENESIS": "false", "CONFIG_p2p__allow_duplicate_ip": "true",
        "CONFIG_p2p__handshake_timeout": "30s", "CONFIG_p2p__dial_timeout": "30s",
    }
    for i, url in enumerate(chain.rpc_server_urls, start=1):
        env[f"RPC_SERVER_URL_{i}"] = url
    return env


def _api_env(spec: NetworkNodeSpec, ep: Endpoints) -> dict[str, str]:
    return {
        "KEY_NAME": spec.key_name, "ACCOUNT_PUBKEY": spec.account_pub_key, "KEYRING_BACKEND": "file",
        "DAPI_API__POC_CALLBACK_URL": ep.callback_url, "DAPI_API__PUBLIC_URL": ep.public_url,
        "DAPI_CHAIN_NODE__SEED_API_URL": spec.chain.seed_api_url,
        "DAPI_CHAIN_NODE__URL": f"http://node:{RPC_PORT}",
        "DAPI_API__PUBLIC_SERVER_PORT": str(PUBLIC_API_PORT), "DAPI_API__ML_SERVER_PORT": str(CALLBACK_PORT),
        "DAPI_API__ADMIN_SERVER_PORT": str(ADMIN_PORT),
    }


def _ports(**ports: int) -> list[Obj]:
    return [{"name": name.replace("_", "-"), "containerPort": port, "protocol": "TCP"}
            for name, port in ports.items()]


def _volume_mount(name: str, path: str) -> Obj:
    return {"name": name, "mountPath": path}


def build_statefulset(owner: Owner, spec: NetworkNodeSpec, ep: Endpoints) -> Obj:
    names, nn = Names(owner.name), owner.name
    secret = spec.keyring_password_secret_ref
    password_env = {"name": "KEYRING_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}}
    node = {
        "name": "node", "image": spec.images.node, "command": ["sh", "./init-docker.sh"],
        "env": env_list(_node_env(spec, ep), spec.env.node),
        "ports": _ports(p2p=P2P_PORT, rpc=RPC_PORT, tmkms=TMKMS_PORT, rest=REST_PORT, grpc=GRPC_PORT),
        "volumeMounts": [_volume_mount("inference", "/root/.inference")],
        "resources": resources(spec.resources.node),
        # State sync and catching up take long: a startupProbe (up to 2 h), never a liveness kill.
        "startupProbe": http_probe(RPC_PORT, "/status", period=10, failures=720),
        "livenessProbe": http_probe(RPC_PORT, "/status", period=30, failures=10),
        "readinessProbe": http_probe(RPC_PORT, "/status", period=10, failures=3),
        "securityContext": CONTAINER_SECURITY,
    }
    api = {
        "name": "api", "image": spec.images.api,
        "env": [*env_list(_api_env(spec, ep), spec.env.api), password_env],
        "ports": _ports(public_api=PUBLIC_API_PORT, ml_callback=CALLBACK_PORT, admin=ADMIN_PORT),
        "volumeMounts": [_volume_mount("inference", "/root/.inference"), _volume_mount("dapi", "/root/.dapi")],
        "resources": resources(spec.resources.api),
        # The api opens its ports only after it reached the chain and found its key.
        "startupProbe": http_probe(PUBLIC_API_PORT, "/v1/status", period=10, failures=720),
        "livenessProbe": http_probe(PUBLIC_API_PORT, "/v1/status", period=30, failures=10),
        "readinessProbe": http_probe(PUBLIC_API_PORT, "/v1/status", period=10, failures=3),
        "securityContext": CONTAINER_SECURITY,
    }
    tmkms = {
        "name": "tmkms", "image": spec.images.tmkms,
        "env": [{"name": "VALIDATOR_LISTEN_ADDRESS", "value": f"tcp://node:{TMKMS_PORT}"}],
        "volumeMounts": [_volume_mount("tmkms", "/root/.tmkms")],
        "resources": resources(spec.resources.tmkms),
        "securityContext": CONTAINER_SECURITY,
    }
    pod_spec: Obj = {
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,  # node, api and tmkms never call the Kubernetes API
        # The images expect the compose service names `node` and `api`; in one pod both are localhost.
        "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["node", "api", "tmkms"]}],
        "securityContext": POD_SECURITY,
        "terminationGracePeriodSeconds": 120,
        "containers": [node, api, tmkms],
        "volumes": [{"name": v, "persistentVolumeClaim": {"claimName": names.pvc(v)}}
                    for v in ("inference", "dapi", "tmkms")],
        **scheduling(spec.scheduling),
    }
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": metadata(names.statefulset, owner, node_labels(nn)),
        "spec": {
            "replicas": 1, "serviceName": names.chain_service, "podManagementPolicy": "OrderedReady",
            # RollingUpdate of one replica = stop, then start: never two signers at once.
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": node_selector(nn)},
            "template": {"metadata": {"labels": node_labels(nn)}, "spec": pod_spec},
        },
    }


def build_proxy(owner: Owner, spec: NetworkNodeSpec, service_ips: dict[str, str]) -> Obj:
    """nginx proxy. It proxies to the compose names `api`, `node` (and `explorer`); hostAliases map
    them to the private Services' cluster IPs, so the upstream image works unchanged."""
    names, nn = Names(owner.name), owner.name
    aliases = [{"ip": service_ips[svc], "hostnames": [host]}
               for svc, host in ((names.api_service, "api"), (names.chain_service, "node"),
                                 (names.explorer, "explorer")) if service_ips.get(svc)]
    # API_PORT for the 2025-08 image; GONKA_API_PORT, NGINX_MODE and DISABLE_DEVSHARD_PROXY (no versiond
    # here: the proxy must not wait for one) for v0.2.14's (its deploy/join/docker-compose.yml and
    # proxy/entrypoint.sh).
    env = {"API_PORT": str(PUBLIC_API_PORT), "GONKA_API_PORT": str(PUBLIC_API_PORT), "NGINX_MODE": "http",
           "DISABLE_DEVSHARD_PROXY": "true", "CHAIN_RPC_PORT": str(RPC_PORT), "CHAIN_API_PORT": str(REST_PORT),
           "CHAIN_GRPC_PORT": str(GRPC_PORT), "DASHBOARD_PORT": str(EXPLORER_PORT)}
    pod_labels = labels(APP, nn, "proxy", **{LABEL_NETWORK_NODE: nn})
    container = {
        "name": "proxy", "image": spec.images.proxy, "env": env_list(env),
        "ports": _ports(http=PROXY_PORT), "resources": resources(spec.resources.proxy),
        "readinessProbe": http_probe(PROXY_PORT, "/health", period=10, failures=3),
        "livenessProbe": http_probe(PROXY_PORT, "/health", period=30, failures=5),
        "securityContext": CONTAINER_SECURITY,
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(names.proxy, owner, pod_labels),
        "spec": {
            "replicas": 1, "selector": {"matchLabels": proxy_selector(nn)},
            "template": {"metadata": {"labels": pod_labels},
                         "spec": {"enableServiceLinks": False, "automountServiceAccountToken": False,
                                  "securityContext": POD_SECURITY, "hostAliases": aliases,
                                  "containers": [container], **scheduling(spec.scheduling)}},
        },
    }


def build_explorer(owner: Owner, spec: NetworkNodeSpec) -> Obj:
    names, nn = Names(owner.name), owner.name
    pod_labels = labels(APP, nn, "explorer", **{LABEL_NETWORK_NODE: nn})
    selector = {LABEL_INSTANCE: nn, LABEL_COMPONENT: "explorer", LABEL_NETWORK_NODE: nn}
    container = {"name": "explorer", "image": spec.images.explorer, "ports": _ports(http=EXPLORER_PORT),
                 "securityContext": CONTAINER_SECURITY}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(names.explorer, owner, pod_labels),
        "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": pod_labels},
                              "spec": {"enableServiceLinks": False, "automountServiceAccountToken": False,
                                       "securityContext": POD_SECURITY,
                                       "containers": [container], **scheduling(spec.scheduling)}}},
    }


def mlnode_proxy_config_name(nn: str) -> str:
    """The nginx ConfigMap every ML pod of this NetworkNode mounts (builders/inference_node.py)."""
    return f"{nn}-ml-proxy"


def build_mlnode_proxy_config(owner: Owner) -> Obj:
    """One ConfigMap for all the NetworkNode's ML pods: their nginx config is identical, so a new
    InferenceNode costs no extra write (and deleting the NetworkNode removes it with the rest)."""
    return mlnode_proxy.config_map(mlnode_proxy_config_name(owner.name), owner,
                                   labels(APP, owner.name, "mlnode-proxy", **{LABEL_NETWORK_NODE: owner.name}))
