"""The NetworkNode's ingress for the operator's host-status reads (host_status.py: :9000/v1/epochs/latest,
:26657/status) is pinned like the admin port's: the operator's namespace AND pod labels in ONE peer."""

from __future__ import annotations

from typing import Any

from gonka_operator.builders import network_node as nnb
from gonka_operator.builders.common import Owner
from gonka_operator.builders.policies import network_node_policies

OWNER = Owner("NetworkNode", "gonka", "hosts", "uid-nn")
LABELS = {"app.kubernetes.io/name": "gonka-operator", "app.kubernetes.io/instance": "g"}
PINNED = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gonka-system"}},
          "podSelector": {"matchLabels": LABELS}}


def peers_by_port(ingress: list[dict[str, Any]]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for rule in ingress:
        for port in rule["ports"]:
            out.setdefault(port["port"], []).extend(rule.get("from") or [None])
    return out


def test_host_status_ports_admit_the_operator_only_as_a_pinned_peer() -> None:
    ingress = network_node_policies(OWNER, LABELS, "gonka-system")[0]["spec"]["ingress"]
    by_port = peers_by_port(ingress)
    assert by_port[nnb.ADMIN_PORT] == [PINNED]
    for port in (nnb.PUBLIC_API_PORT, nnb.RPC_PORT):
        operator = [p for p in by_port[port] if "gonka-operator" in str(p)]
        assert operator == [PINNED], by_port[port]  # never labels alone, never a namespace alone
        others = [p for p in by_port[port] if p is not PINNED and p != PINNED]
        # the same-namespace proxy and explorer pods (a podSelector without namespaceSelector)
        assert others and all(p is not None and set(p) == {"podSelector"} for p in others)
    rule = next(r for r in ingress if r.get("from") == [PINNED] and r["ports"] != [{"protocol": "TCP", "port": 9200}])
    assert rule["ports"] == [{"protocol": "TCP", "port": 9000}, {"protocol": "TCP", "port": 26657}]


def test_without_an_operator_namespace_no_operator_peer_on_any_port() -> None:
    ingress = network_node_policies(OWNER, LABELS)[0]["spec"]["ingress"]
    assert "gonka-operator" not in str(ingress)
    assert nnb.ADMIN_PORT not in peers_by_port(ingress)
