"""The NetworkPolicy matrix of issue 14, probed with real TCP connections on the real node.

Sources are the real pods (through `kubectl exec`) where the flow names one — the operator, an ML
pod, the api pod, the proxy — and throw-away pods with chosen labels otherwise (a copied label must
not pass). Each row is expected allowed or refused; the whole matrix is printed as a table, and the
test fails, after printing all of them, if any row is not as expected. Every port that some row
expects refused is reached by another row (so a refusal is the policy, not a missing listener).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from deploy import OPERATOR_NS, Host
from pods import PROBE, api, probe

from gonka_operator.devcluster.images import toolbox_image


@dataclass
class Row:
    source: str
    target: str
    expected: bool
    run: Callable[[], dict[str, Any]]


def _exec_probe(host: Host, ns: str, pod: str, container: str, target: str, port: int) -> dict[str, Any]:
    out = host.exec_python(ns, pod, container, PROBE, target, str(port), "-")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def other_namespace(host: Host) -> str:
    core, _ = api(host.cluster.api_client())
    name = f"e2e-outsider-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


def test_network_policy_matrix(host: Host, other_namespace: str, capsys: pytest.CaptureFixture[str]) -> None:
    ns, nn = host.namespace, host.network_node
    core, _ = api(host.cluster.api_client())
    tool = toolbox_image()
    assert host.cluster.real_node is not None
    host.cluster.real_node.load_images([tool])
    svc = "svc.cluster.local"
    api_host, chain_host = f"{nn}-api.{ns}.{svc}", f"{nn}-chain.{ns}.{svc}"
    proxy_host, p2p_host = f"{nn}-proxy.{ns}.{svc}", f"{nn}-p2p.{ns}.{svc}"
    ml = host.ml_nodes[0]
    ml_host = f"{ml}-mlnode.{ns}.{svc}"
    op_pod = host.json("get", "pods", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=gonka-operator")[
        "items"][0]
    op_labels = op_pod["metadata"]["labels"]
    ml_pod = host.json("get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={ml}")["items"][0]
    ml_labels = ml_pod["metadata"]["labels"]
    proxy_pod = host.json("get", "pods", "-n", ns, "-l", "app.kubernetes.io/component=proxy")["items"][0]
    other_nn_ml = {**ml_labels, "gonka.ai/network-node": "another-node", "app.kubernetes.io/instance": "other-ml",
                   "gonka.ai/inference-node": "other-ml"}

    def pod_probe(namespace: str, labels: dict[str, str], target: str, port: int,
                  expected: bool = False) -> Callable[[], dict[str, Any]]:
        # A new pod is allowed only once kube-router has its IP (patience); a refusal is immediate.
        return lambda: probe(core, namespace, tool.ref, target, port, labels=labels, patience=20 if expected else 6)

    def exec_probe(namespace: str, pod: dict[str, Any], container: str, target: str,
                   port: int) -> Callable[[], dict[str, Any]]:
        return lambda: _exec_probe(host, namespace, pod["metadata"]["name"], container, target, port)

    unrelated = {"app": "unrelated"}
    rows = [
        Row("operator pod", "api 9200", True, exec_probe(OPERATOR_NS, op_pod, "operator", api_host, 9200)),
        Row("pod in another namespace with the operator's labels", "api 9200", False,
            pod_probe(other_namespace, op_labels, api_host, 9200)),
        Row("pod in the operator's namespace without its labels", "api 9200", False,
            pod_probe(OPERATOR_NS, unrelated, api_host, 9200)),
        Row("unrelated pod", "api 9200", False, pod_probe(ns, unrelated, api_host, 9200)),
        Row("this network node's ML pod", "api 9100", True, exec_probe(ns, ml_pod, "mlnode", api_host, 9100)),
        Row("another network node's ML pod", "api 9100", False, pod_probe(ns, other_nn_ml, api_host, 9100)),
        Row("unrelated pod", "api 9100", False, pod_probe(ns, unrelated, api_host, 9100)),
        Row("the api pod", "ML 8080 (management)", True,
            exec_probe(ns, {"metadata": {"name": f"{nn}-node-0"}}, "api", ml_host, 8080)),
        Row("the api pod", "ML 5050 (inference)", True,
            exec_probe(ns, {"metadata": {"name": f"{nn}-node-0"}}, "api", ml_host, 5050)),
        Row("unrelated pod", "ML 8080 (management)", False, pod_probe(ns, unrelated, ml_host, 8080)),
        Row("unrelated pod", "ML 5050 (inference)", False, pod_probe(ns, unrelated, ml_host, 5050)),
        Row("another ML pod", "ML 8080 (management)", False, pod_probe(ns, other_nn_ml, ml_host, 8080)),
        Row("the proxy", "api 9000", True, exec_probe(ns, proxy_pod, "proxy", api_host, 9000)),
        Row("the proxy", "chain 26657", True, exec_probe(ns, proxy_pod, "proxy", chain_host, 26657)),
        Row("unrelated pod", "api 9000", False, pod_probe(ns, unrelated, api_host, 9000)),
        Row("pod in another namespace", "proxy 8000", True,
            pod_probe(other_namespace, unrelated, proxy_host, 8000, True)),
        Row("pod in another namespace", "P2P 5000", True, pod_probe(other_namespace, unrelated, p2p_host, 5000, True)),
        Row("unrelated pod", "chain 26657", False, pod_probe(ns, unrelated, chain_host, 26657)),
        Row("pod in another namespace", "chain 26657", False,
            pod_probe(other_namespace, unrelated, chain_host, 26657)),
    ]
    results = []
    for row in rows:
        got = row.run()
        results.append((row, bool(got.get("ok")), got.get("error", "")))
    table = ["", f"{'from':<55} {'to':<22} {'expected':<9} {'got':<9} ok", "-" * 100]
    for row, ok, err in results:
        mark = "yes" if ok == row.expected else f"NO ({err})"
        table.append(f"{row.source:<55} {row.target:<22} {'allowed' if row.expected else 'refused':<9} "
                     f"{'allowed' if ok else 'refused':<9} {mark}")
    with capsys.disabled():
        print("\n".join(table))
    wrong = [f"{r.source} -> {r.target}" for r, ok, _ in results if ok != r.expected]
    assert not wrong, f"flows not as expected: {wrong}"
