"""NetworkPolicies: the public ports open, every private port only to the one peer that needs it.

REFERENCE.md §2: the admin API (9200) has no authentication and the callback (9100) and ML-node
ports (5000/8080) let anyone disrupt mining, so each is closed to all but its peer.
"""

from __future__ import annotations

from gonka_operator.builders import inference_node as inb
from gonka_operator.builders import network_node as nnb
from gonka_operator.builders.common import LABEL_COMPONENT, LABEL_NETWORK_NODE, Obj, Owner, labels, metadata


def _tcp(*ports: int) -> list[Obj]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _policy(name: str, owner: Owner, app: str, selector: dict[str, str], ingress: list[Obj]) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": metadata(name, owner, labels(app, owner.name, "network-policy")),
        "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def network_node_policies(owner: Owner, operator_pod_labels: dict[str, str]) -> list[Obj]:
    nn, names = owner.name, nnb.Names(owner.name)
    from_proxy = {"podSelector": {"matchLabels": nnb.proxy_selector(nn)}}
    from_explorer = {"podSelector": {"matchLabels": {LABEL_COMPONENT: "explorer", LABEL_NETWORK_NODE: nn}}}
    from_ml_nodes = {"podSelector": {"matchLabels": {LABEL_COMPONENT: "mlnode", LABEL_NETWORK_NODE: nn}}}
    # The operator may run in another namespace: match its pod labels in any namespace.
    from_operator = {"namespaceSelector": {}, "podSelector": {"matchLabels": operator_pod_labels}}
    node_ingress = [
        {"ports": _tcp(nnb.P2P_PORT)},  # public P2P: from anywhere
        {"from": [from_proxy, from_explorer],
         "ports": _tcp(nnb.PUBLIC_API_PORT, nnb.RPC_PORT, nnb.REST_PORT, nnb.GRPC_PORT)},
        {"from": [from_ml_nodes], "ports": _tcp(nnb.CALLBACK_PORT)},
        {"from": [from_operator], "ports": _tcp(nnb.ADMIN_PORT)},
    ]
    return [
        _policy(names.statefulset, owner, nnb.APP, nnb.node_selector(nn), node_ingress),
        _policy(names.proxy, owner, nnb.APP, nnb.proxy_selector(nn), [{"ports": _tcp(nnb.PROXY_PORT)}]),
    ]


def inference_node_policy(owner: Owner, network_node: str) -> Obj:
    """ML-node ports only from its network node's api pod (it drives inference and PoC)."""
    from_api = {"podSelector": {"matchLabels": nnb.node_selector(network_node)}}
    return _policy(inb.workload_name(owner.name), owner, inb.APP, inb.pod_selector(owner.name),
                   [{"from": [from_api], "ports": _tcp(inb.INFERENCE_PORT, inb.MANAGEMENT_PORT)}])
