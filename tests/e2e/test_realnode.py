"""The real node itself: a pod runs, reaches the API server with its token through cluster DNS and the
`kubernetes` Service, Services answer by name, names outside the cluster are not resolved, and a
NetworkPolicy is enforced (deny blocks, an allow rule lets exactly the chosen pod through)."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from pods import api, deny_all_ingress, probe, run_to_completion, start_server

from gonka_operator.devcluster import LocalCluster
from gonka_operator.devcluster.images import Image, toolbox_image
from gonka_operator.devcluster.node_config import GPU_COUNT, NODE_NAME, TAINT
from helpers import wait_for


@pytest.fixture(scope="module")
def toolbox(real_cluster: LocalCluster) -> str:
    img: Image = toolbox_image()
    assert real_cluster.real_node is not None
    real_cluster.real_node.load_images([img])
    return img.ref


def test_real_node_is_ready_tainted_and_has_gpus(e2e_api: Any) -> None:
    core, _ = api(e2e_api)
    node = core.read_node(NODE_NAME)
    assert [c.status for c in node.status.conditions if c.type == "Ready"] == ["True"]
    assert {(t.key, t.value, t.effect) for t in node.spec.taints} >= {(TAINT["key"], TAINT["value"], TAINT["effect"])}
    assert node.status.allocatable["nvidia.com/gpu"] == str(GPU_COUNT)
    kwok = core.list_node(label_selector="type=kwok").items
    assert len(kwok) == 4, "the kwok nodes are still there beside the real one"


WHOAMI = textwrap.dedent("""\
    import json, ssl, urllib.request
    sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
    ctx = ssl.create_default_context(cafile=sa + "ca.crt")
    token = open(sa + "token").read()
    body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode()
    req = urllib.request.Request("https://kubernetes.default.svc.cluster.local/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                 data=body, headers={"Authorization": "Bearer " + token,
                                                     "Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        print(json.dumps(json.load(r)["status"]["userInfo"]))
""")


def test_pod_reaches_the_api_server_with_its_token(e2e_api: Any, e2e_namespace: str, toolbox: str) -> None:
    core, _ = api(e2e_api)
    log = run_to_completion(core, e2e_namespace, toolbox, ["python3", "-c", WHOAMI], sa_token=True)
    user = json.loads(log.strip().splitlines()[-1])
    assert user["username"] == f"system:serviceaccount:{e2e_namespace}:default"


def test_service_answers_by_name_and_outside_names_do_not_resolve(e2e_api: Any, e2e_namespace: str,
                                                                   toolbox: str) -> None:
    core, _ = api(e2e_api)
    start_server(core, e2e_namespace, "web", toolbox, 8000, {"app": "web"})
    got = probe(core, e2e_namespace, toolbox, f"web.{e2e_namespace}.svc.cluster.local", 8000, "/")
    assert got["ok"] and got["status"] == 200, got
    outside = probe(core, e2e_namespace, toolbox, "example.com", 80, patience=0)
    assert not outside["ok"] and "gaierror" in outside["error"], outside


def test_network_policy_is_enforced(e2e_api: Any, e2e_namespace: str, toolbox: str) -> None:
    core, net = api(e2e_api)
    ip = start_server(core, e2e_namespace, "target", toolbox, 8000, {"app": "target"})
    before = probe(core, e2e_namespace, toolbox, ip, 8000)
    assert before["ok"], f"no policy yet, the connection must pass: {before}"
    deny_all_ingress(net, e2e_namespace, "deny", {"app": "target"})
    # kube-router applies a new policy within a few seconds: until then the flow may still pass.
    denied = wait_for(lambda: (lambda r: r if not r["ok"] else None)(
        probe(core, e2e_namespace, toolbox, ip, 8000, patience=0)), 60, "deny-all ingress refusing the flow")
    assert not denied["ok"]
    deny_all_ingress(net, e2e_namespace, "allow-chosen", {"app": "target"},
                     allow_from=[{"podSelector": {"matchLabels": {"gonka.test/role": "chosen"}}}], port=8000)
    chosen = probe(core, e2e_namespace, toolbox, ip, 8000, labels={"gonka.test/role": "chosen"})
    other = probe(core, e2e_namespace, toolbox, ip, 8000, labels={"gonka.test/role": "other"}, patience=6)
    assert chosen["ok"], f"the allowed pod must get through: {chosen}"
    assert not other["ok"], f"any other pod stays refused: {other}"
