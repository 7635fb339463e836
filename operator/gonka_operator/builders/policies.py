"""NetworkPolicies: the public ports open, every private port only to the one peer that needs it.

REFERENCE.md §2: the admin API (9200) has no authentication and the callback (9100) and ML-node
ports let anyone disrupt mining, so each is closed to all but its peer:
- 9200: the operator's pods, in the operator's namespace only (`kubernetes.io/metadata.name` is set
  by the API server, so a namespace cannot claim another's name; pod labels alone can be copied by
  anyone who may create a pod). Without a known operator namespace (the operator runs outside the
  cluster) no pod may reach 9200.
- ML pods: only the nginx ports (the Service's 8080 and 5050 land there), from the NetworkNode's api
  pod and from the peers of `spec.allowedFrom`; mlnode's own 8080 is reachable by no pod.
"""

from __future__ import annotations

from gonka_operator.builders import inference_node as inb
from gonka_operator.builders import mlnode_proxy
from gonka_operator.builders import network_node as nnb
from gonka_operator.builders.common import LABEL_COMPONENT, LABEL_NETWORK_NODE, Obj, Owner, labels, metadata
from gonka_operator.models.inference_node import AllowedPeer

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def _tcp(*ports: int) -> list[Obj]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _policy(name: str, owner: Owner, app: str, selector: dict[str, str], ingress: list[Obj]) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": metadata(name, owner, labels(app, owner.name, "network-policy")),
        "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def operator_peer(operator_pod_labels: dict[str, str], operator_namespace: str | None) -> Obj | None:
    """The operator's pods in its own namespace (both in ONE peer: namespace AND labels)."""
    if not operator_namespace:
        return None
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: operator_namespace}},
            "podSelector": {"matchLabels": operator_pod_labels}}


def network_node_policies(owner: Owner, operator_pod_labels: dict[str, str],
                          operator_namespace: str | None = None) -> list[Obj]:
    nn, names = owner.name, nnb.Names(owner.name)
    from_proxy = {"podSelector": {"matchLabels": nnb.proxy_selector(nn)}}
    from_explorer = {"podSelector": {"matchLabels": {LABEL_COMPONENT: "explorer", LABEL_NETWORK_NODE: nn}}}
    from_ml_nodes = {"podSelector": {"matchLabels": {LABEL_COMPONENT: "mlnode", LABEL_NETWORK_NODE: nn}}}
    node_ingress = [
        {"ports": _tcp(nnb.P2P_PORT)},  # public P2P: from anywhere
        {"from": [from_proxy, from_explorer],
         "ports": _tcp(nnb.PUBLIC_API_PORT, nnb.RPC_PORT, nnb.REST_PORT, nnb.GRPC_PORT)},
        {"from": [from_ml_nodes], "ports": _tcp(nnb.CALLBACK_PORT)},
    ]
    from_operator = operator_peer(operator_pod_labels, operator_namespace)
    if from_operator is not None:
        node_ingress.append({"from": [from_operator], "ports": _tcp(nnb.ADMIN_PORT)})
        # read-only host status (host_status.py): the public API's epoch and the chain's /status
        node_ingress.append({"from": [from_operator], "ports": _tcp(nnb.PUBLIC_API_PORT, nnb.RPC_PORT)})
    return [
        _policy(names.statefulset, owner, nnb.APP, nnb.node_selector(nn), node_ingress),
        _policy(names.proxy, owner, nnb.APP, nnb.proxy_selector(nn), [{"ports": _tcp(nnb.PROXY_PORT)}]),
    ]


def _peer(peer: AllowedPeer) -> Obj:
    if peer.cidr:
        return {"ipBlock": {"cidr": peer.cidr}}
    out: Obj = {}
    if peer.namespace_selector is not None:
        out["namespaceSelector"] = {"matchLabels": peer.namespace_selector}
    if peer.pod_selector is not None:
        out["podSelector"] = {"matchLabels": peer.pod_selector}
    return out


def inference_node_policy(owner: Owner, network_node: str | None,
                          allowed_from: list[AllowedPeer] | None = None) -> Obj:
    """The nginx ports of the ML pod, only from its network node's api pod (it drives inference and
    PoC) and from `allowed_from`. No peer at all: no ingress rule, so nothing may connect."""
    peers = [_peer(p) for p in allowed_from or []]
    if network_node:
        peers.insert(0, {"podSelector": {"matchLabels": nnb.node_selector(network_node)}})
    ingress = ([{"from": peers, "ports": _tcp(mlnode_proxy.MANAGEMENT_LISTEN, mlnode_proxy.INFERENCE_LISTEN)}]
               if peers else [])
    return _policy(inb.workload_name(owner.name), owner, inb.APP, inb.pod_selector(owner.name), ingress)
