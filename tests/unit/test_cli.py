"""The command line: `crds` prints the committed CRDs, `render` the objects of a manifest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from gonka_operator.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_crds_prints_both_crds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in docs] == ["networknodes.gonka.ai", "inferencenodes.gonka.ai"]


def test_render_a_whole_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(EXAMPLES / "02-network-node-and-ml-node.yaml")]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == ["ConfigMap", "Deployment", "Job", "NetworkPolicy", "PersistentVolumeClaim", "Service",
                     "StatefulSet"]  # Job: the HF-cache preload of the size-created cache
    assert all(d["metadata"]["namespace"] == "default" for d in docs)
    assert not any(d["kind"] == "Secret" for d in docs), "the user's own Secret is not the operator's to render"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_render_prints_no_yaml_anchors(example: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(EXAMPLES / example)]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"[&*]id\d+", out), "render printed YAML anchors/aliases"
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert all("metadata" in d for d in docs)


def test_render_ml_node_has_the_routing_proxy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(EXAMPLES / "04-qwen3-32b-1xh100.yaml")]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["mlnode", "proxy"]
    service = next(d for d in docs if d["kind"] == "Service")
    assert {p["port"]: p["targetPort"] for p in service["spec"]["ports"]} == {5050: "proxy-inference",
                                                                            8080: "proxy-mgmt"}


def test_render_a_whole_host_has_the_shared_proxy_config_and_pinned_admin_port(
        capsys: pytest.CaptureFixture[str]) -> None:
    example = str(EXAMPLES / "02-network-node-and-ml-node.yaml")
    assert main(["render", "-f", example, "--operator-namespace", "gonka-system"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    [config] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config["metadata"]["ownerReferences"][0]["kind"] == "NetworkNode"
    mounted = {v["configMap"]["name"] for d in docs if d["kind"] == "Deployment"
               for v in d["spec"]["template"]["spec"].get("volumes", []) if "configMap" in v}
    assert mounted == {config["metadata"]["name"]}
    peers = {json.dumps(peer, sort_keys=True): sorted(p["port"] for p in rule["ports"])
             for d in docs if d["kind"] == "NetworkPolicy" for rule in d["spec"]["ingress"]
             for peer in rule.get("from", [])
             if "namespaceSelector" in peer and 9200 in [p["port"] for p in rule["ports"]]}
    operator = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gonka-system"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "gonka-operator"}}}
    assert peers == {json.dumps(operator, sort_keys=True): [9200]}
    # the same peer (only it) reads the host status: the public API and the chain's /status
    readers = [peer for d in docs if d["kind"] == "NetworkPolicy" for rule in d["spec"]["ingress"]
               for peer in rule.get("from", []) if sorted(p["port"] for p in rule["ports"]) == [9000, 26657]
               and "namespaceSelector" in peer]
    assert readers == [operator]


def test_render_external_node_has_no_objects(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(EXAMPLES / "06-external-ml-node.yaml")]) == 0
    assert capsys.readouterr().out.strip() == ""


@pytest.mark.parametrize("args", [["-n", "a"], ["--namespace", "a"], ["--namespace=a"], ["-A"]])
def test_run_keeps_a_given_namespace_scope(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import kopf.cli

    monkeypatch.setattr(sys, "argv", list(sys.argv))  # _run() rewrites sys.argv for kopf
    seen: list[str] = []
    monkeypatch.setattr(kopf.cli, "main", lambda: seen.extend(sys.argv))
    assert main(["run", *args]) == 0
    assert "--all-namespaces" not in seen
    assert seen[1:4] == ["run", "--module", "gonka_operator.handlers"]
