"""The chart renders what the README promises, and the real API server accepts every rendering
(`helm template … | kubectl apply --dry-run=server`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import CHART, Helm, Release, create_namespace, unique, values_file
from rbac import granted

from gonka_operator.builders.common import Owner
from gonka_operator.builders.policies import network_node_policies
from gonka_operator.settings import Settings
from procs import Kubectl

pytestmark = pytest.mark.integration

EXAMPLES = CHART / "examples"
SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def dry_run_apply(kubectl: Kubectl, docs: list[dict[str, Any]]) -> str:
    proc = kubectl.run("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs), check=False)
    assert proc.returncode == 0, f"API server refused the rendering: {proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("values", [None, *sorted(p.name for p in EXAMPLES.glob("*.yaml"))])
def test_helm_lint(helm: Helm, values: str | None) -> None:
    args = ["-f", str(EXAMPLES / values)] if values else []
    proc = helm.run("lint", "--strict", str(CHART), *args)
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("bad, complaint", [
    ("watchNamespace=a", "additional properties 'watchNamespace' not allowed"),
    ("operator.logFormat=xml", "at '/operator/logFormat': value must be one of"),
    ("watchNamespaces={Bad_Namespace}", "at '/watchNamespaces/0': 'Bad_Namespace' does not match pattern"),
    ("metrics.port=70000", "at '/metrics/port': maximum"),
    ("networkNodes[0].name=x", "at '/networkNodes/0': missing property 'spec'"),
])
def test_values_schema_rejects(helm: Helm, bad: str, complaint: str) -> None:
    proc = helm.run("template", "x", str(CHART), "--set", bad, check=False)
    assert proc.returncode != 0, f"--set {bad} was accepted"
    assert complaint in proc.stderr, proc.stderr


def test_default_rendering(helm: Helm) -> None:
    docs = helm.template()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service",
                            "NetworkPolicy", "CustomResourceDefinition", "CustomResourceDefinition",
                            "Role", "RoleBinding"])  # the Role: the leader-election Lease only
    lease_role = one(docs, "Role")
    assert lease_role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                    "verbs": ["get", "create", "update"]}]
    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["gonka-operator", "run"]
    assert container["args"] == ["--log-format=json", "--liveness=http://0.0.0.0:8080/healthz"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["securityContext"] == {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                             "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    env = env_of(dep)
    assert env["GONKA_METRICS_PORT"] == "8081" and env["GONKA_METRICS_ADDRESS"] == "0.0.0.0"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": 8080, "metrics": 8081}
    for crd in by_kind(docs, "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                                    "namespace": "gonka-system"}]
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_operator_pod_labels_are_the_ones_its_network_policies_admit(helm: Helm) -> None:
    """GONKA_OPERATOR_POD_LABELS (what the operator writes into each NetworkNode's policy, for the
    admin port 9200) must select the chart's operator pod, whatever the release is called."""
    for release in ("gonka", "prod-gonka-operator"):
        dep = one(helm.template(release=release), "Deployment")
        env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
        downward = {"fieldRef": {"fieldPath": "metadata.namespace"}}
        assert {"name": "GONKA_OPERATOR_NAMESPACE", "valueFrom": downward} in env
        settings = Settings.from_env({"GONKA_OPERATOR_POD_LABELS": env_of(dep)["GONKA_OPERATOR_POD_LABELS"],
                                      "GONKA_OPERATOR_NAMESPACE": "gonka-system"})  # what the downward API gives
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert settings.operator_pod_labels["app.kubernetes.io/name"] == "gonka-operator"
        assert settings.operator_pod_labels.items() <= pod_labels.items()
        node_policy = network_node_policies(Owner("NetworkNode", "gonka", "hosts", "uid"),
                                            settings.operator_pod_labels, settings.operator_namespace)[0]
        admin_rule = next(r for r in node_policy["spec"]["ingress"] if r.get("ports") == [{"protocol": "TCP",
                                                                                           "port": 9200}])
        selector = admin_rule["from"][0]["podSelector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
        assert admin_rule["from"][0]["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "gonka-system"}}


def test_operator_egress_reaches_the_host_status_ports_of_the_node_pods_only(helm: Helm) -> None:
    """host_status.py reads each NetworkNode's :9000/v1/epochs/latest and :26657/status: a rule of
    its own, to the same node/api pods (and namespaces) as the admin rule, whose ports stay [9200]."""
    for extra, namespaces in (((), None), (("--set", "watchNamespaces={hosts-a,hosts-b}"), ["hosts-a", "hosts-b"])):
        egress = one(helm.template(*extra), "NetworkPolicy")["spec"]["egress"]
        admin = next(e for e in egress if e.get("ports") == [{"protocol": "TCP", "port": 9200}])
        status = [e for e in egress if {p["port"] for p in e.get("ports", [])} & {9000, 26657}]
        assert len(status) == 1, egress
        assert status[0]["ports"] == [{"protocol": "TCP", "port": 9000}, {"protocol": "TCP", "port": 26657}]
        assert status[0]["to"] == admin["to"]
        assert status[0]["to"][0]["podSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": "gonka-network-node", "app.kubernetes.io/component": "node"}
        if namespaces:
            assert status[0]["to"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == namespaces
    closed = one(helm.template("--set", "networkPolicy.hostStatusPorts=null"), "NetworkPolicy")["spec"]["egress"]
    assert not [e for e in closed if {p["port"] for p in e.get("ports", [])} & {9000, 26657}]
    node_pods = [e["ports"] for e in closed if "gonka-network-node" in str(e.get("to"))]
    assert node_pods == [[{"protocol": "TCP", "port": 9200}]]


def readme_rbac_rows() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every row of the chart README's RBAC table (an empty apiGroup or
    resources cell repeats the row above)."""
    lines = (CHART / "README.md").read_text().split("## RBAC", 1)[1].splitlines()
    start = lines.index("| apiGroup | resources | verbs | used by |") + 2
    out, group, resources = set(), "", []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0]:
            group = cells[0].strip("`").strip('"')
        if cells[1]:
            resources = [r.strip().strip("`") for r in cells[1].split(",")]
        out |= {(group, r, v.strip().strip("`")) for r in resources for v in cells[2].split(",")}
    return out


def test_readme_rbac_table_has_a_row_for_every_verb_the_chart_grants(helm: Helm) -> None:
    for extra in ((), ("--set", "watchNamespaces={hosts-a}")):
        docs = helm.template(*extra)
        grants = granted(by_kind(docs, "ClusterRole") + by_kind(docs, "Role"))
        assert ("coordination.k8s.io", "leases", "update") in grants  # the leader-election Role is read
        missing = grants - readme_rbac_rows()
        assert not missing, f"charts/gonka-operator/README.md RBAC: add rows for {sorted(missing)}"
        if not extra:
            assert not readme_rbac_rows() - grants - {("", "namespaces", "list"), ("", "namespaces", "watch")}


def test_namespaced_rendering(helm: Helm) -> None:
    docs = helm.template("--set", "watchNamespaces={hosts-a,hosts-b}")
    dep = one(docs, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    # two arguments each: `gonka-operator run` recognises `--namespace NS` (and then omits --all-namespaces)
    assert args[-4:] == ["--namespace", "hosts-a", "--namespace", "hosts-b"]
    roles = by_kind(docs, "Role")  # + the leader-election Lease's Role in the operator's own namespace
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["gonka-system", "hosts-a", "hosts-b"]
    assert sorted(b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")) == [
        "gonka-system", "hosts-a", "hosts-b"]
    # the only cluster-scoped grant: kopf's observers, read-only
    cluster_role = one(docs, "ClusterRole")
    verbs = {v for rule in cluster_role["rules"] for v in rule["verbs"]}
    assert verbs == {"list", "watch"}
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {"customresourcedefinitions",
                                                                                "namespaces"}
    policy = one(docs, "NetworkPolicy")
    admin = next(e for e in policy["spec"]["egress"] if e.get("ports") == [{"protocol": "TCP", "port": 9200}])
    assert admin["to"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["hosts-a", "hosts-b"]

    strict = helm.template("--set", "watchNamespaces={hosts-a}", "--set", "rbac.namespacedModeClusterObservers=false")
    assert not by_kind(strict, "ClusterRole") and not by_kind(strict, "ClusterRoleBinding")


def test_service_monitor_only_where_its_api_is_served(helm: Helm) -> None:
    monitoring = ["-f", str(EXAMPLES / "monitoring.yaml")]
    assert not by_kind(helm.template(*monitoring), "ServiceMonitor"), "rendered without the API"
    docs = helm.template(*monitoring, "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_whole_host_rendering(helm: Helm) -> None:
    docs = helm.template("-f", str(EXAMPLES / "whole-host.yaml"), namespace="hosts")
    assert sorted(d["kind"] for d in docs) == ["InferenceNode", "NetworkNode", "Secret"]
    for doc in docs:
        assert doc["metadata"]["namespace"] == "hosts"
    nn = one(docs, "NetworkNode")
    assert nn["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "SkipDryRunOnMissingResource=true"
    example = yaml.safe_load((EXAMPLES / "whole-host.yaml").read_text())
    assert nn["spec"] == example["networkNodes"][0]["spec"]


def _namespaced_values(kubectl: Kubectl, tmp_path: Path) -> list[str]:
    names = [create_namespace(kubectl, unique("hosts")) for _ in range(2)]
    values = yaml.safe_load((EXAMPLES / "namespaced.yaml").read_text())
    values["watchNamespaces"] = names
    return ["-f", values_file(tmp_path, values)]


@pytest.mark.parametrize("values_set", ["default", "namespaced", "monitoring", "whole-host", "no-metrics"])
def test_rendering_is_accepted_by_the_api_server(values_set: str, helm: Helm, kubectl: Kubectl,
                                                 operator_release: Release, namespace: str,
                                                 tmp_path: Path) -> None:
    """operator_release: the CRDs exist (as after a first install), so the custom resources of the
    whole-host values can be validated too; the CEL rules and schemas run for real."""
    args: list[str] = []
    if values_set == "namespaced":
        args = _namespaced_values(kubectl, tmp_path)
    elif values_set == "monitoring":
        kubectl.run("apply", "-f", "-", input=SERVICE_MONITOR_CRD)
        kubectl.wait_established("servicemonitors.monitoring.coreos.com")
        args = ["-f", str(EXAMPLES / "monitoring.yaml"), "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"]
    elif values_set == "whole-host":
        args = ["-f", str(EXAMPLES / "whole-host.yaml")]
    elif values_set == "no-metrics":
        args = ["--set", "metrics.enabled=false", "--set", "networkPolicy.enabled=false",
                "--set", "crds.install=false"]
    docs = helm.template(*args, release=unique("dry"), namespace=namespace)
    if values_set == "monitoring":
        assert by_kind(docs, "ServiceMonitor")
    if values_set == "no-metrics":
        assert not by_kind(docs, "Service") and not by_kind(docs, "NetworkPolicy")
        assert "GONKA_METRICS_PORT" in env_of(one(docs, "Deployment"))
        assert env_of(one(docs, "Deployment"))["GONKA_METRICS_PORT"] == "0"
    out = dry_run_apply(kubectl, docs)
    assert out.count("(server dry run)") == len(docs), out


def test_operator_pod_passes_the_restricted_pod_security_standard(helm: Helm, kubectl: Kubectl,
                                                                  namespace: str) -> None:
    """Pod Security admission (built into the API server) enforces `restricted` on real pods."""
    kubectl.run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    docs = helm.template(namespace=namespace)
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump(one(docs, "ServiceAccount")))
    template = one(docs, "Deployment")["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "operator-pod-check", "namespace": namespace, **template["metadata"]},
           "spec": template["spec"]}
    proc = kubectl.run("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod), check=False)
    assert proc.returncode == 0 and "Warning" not in proc.stderr, proc.stderr
    # and the check can fail: the same pod with privilege escalation allowed is refused
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    proc = kubectl.run("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod), check=False)
    assert proc.returncode != 0 and "restricted" in proc.stderr
