"""Issue 9: the chart and a whole host's custom resources synced by a real Argo CD (v3.6.1:
application-controller + repo-server + redis, tests/gitops/argocd.py) from a local git repository,
with the real operator as a process and the network-node stand-in as the admin API.

Two Applications: `gonka-operator` (the chart: CRDs, RBAC, the operator Deployment) and, once it is
Synced + Healthy, `gonka-host` (a directory of plain manifests: keyring Secret, one NetworkNode, two
InferenceNodes, one external InferenceNode). The health Argo CD shows is the one it computes with
the project's Lua checks, installed from charts/gonka-operator/argocd/argocd-cm-snippet.yaml as is.
The scenarios run in order on the same repository and cluster; each prints its timing.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from argocd import NAMESPACE, ArgoCD, GitRepo, resource, timing

from conditions import condition, operator_env, wait_condition
from gonka_operator.devcluster import LocalCluster
from helpers import wait_for
from procs import Kubectl, Operator, StandIn, free_port

pytestmark = [pytest.mark.gitops, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
CHART_APP, HOST_APP = "gonka-operator", "gonka-host"
HOST_NS, OPERATOR_NS = "gonka-host", "gonka-system"
ML_NODES = ("host-ml-1", "host-ml-2", "gpu-server-7")
SSD = "argocd.argoproj.io/compare-options"


def host_manifests(external_port: int) -> dict[str, Any]:
    """A whole host: file name -> manifest (the CR Application's directory)."""
    def ml(name: str, gpus: int, product: str) -> dict[str, Any]:
        return {"apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode", "metadata": {"name": name},
                "spec": {"networkNodeRef": {"name": "host"}, "model": "Qwen/Qwen3-32B-FP8", "gpus": gpus,
                         "gpuProduct": product, "hfCache": {"size": "10Gi"}}}

    return {
        "00-keyring.yaml": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "host-keyring"},
                            "type": "Opaque", "stringData": {"password": "change-me"}},
        "10-network-node.yaml": {
            "apiVersion": "gonka.ai/v1alpha1", "kind": "NetworkNode", "metadata": {"name": "host"},
            "spec": {"keyName": "host-warm-key", "accountPubKey": "Ap1lR9OQ6r2bYkT8d0cHKb3mWm5cCzOZ0bSx0n4p5QyA",
                     "keyringPasswordSecretRef": {"name": "host-keyring", "key": "password"},
                     "publicHost": "gonka.example.com"}},
        "20-host-ml-1.yaml": ml("host-ml-1", 1, "NVIDIA-H100-80GB-HBM3"),
        "21-host-ml-2.yaml": ml("host-ml-2", 1, "NVIDIA-H200"),
        # an ML node outside the cluster (on loopback: test traffic never leaves the machine)
        "30-gpu-server-7.yaml": {
            "apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode", "metadata": {"name": "gpu-server-7"},
            "spec": {"networkNodeRef": {"name": "host"}, "model": "Qwen/Qwen3-32B-FP8", "gpus": 8,
                     "parallelism": {"tensor": 4}, "hardwareType": "4090",
                     "external": {"host": "127.0.0.1", "inferencePort": external_port, "pocPort": external_port}}},
    }


def application(name: str, repo: GitRepo, path: str, namespace: str, server_side_diff: bool = False,
                ) -> dict[str, Any]:
    """The Application manifests of the chart README's Argo CD section."""
    annotations = {SSD: "ServerSideDiff=true"} if server_side_diff else {}
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations,
                     # cascade: deleting the Application deletes what it manages
                     "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
        "spec": {"project": "default",
                 "source": {"repoURL": repo.url, "targetRevision": "main", "path": path},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
                 "syncPolicy": {"automated": {"prune": True, "selfHeal": True},
                                                # the CRs' Application may be synced before the CRDs exist
                                "syncOptions": ["CreateNamespace=true", "SkipDryRunOnMissingResource=true"]}},
    }


@dataclass
class Host:
    cd: ArgoCD
    repo: GitRepo
    operator: Operator
    standin: StandIn
    kubectl: Kubectl
    manifests: dict[str, Any]

    def write(self, message: str) -> str:
        host = self.repo.path / "host"
        shutil.rmtree(host, ignore_errors=True)
        host.mkdir()
        for name, manifest in self.manifests.items():
            (host / name).write_text(yaml.safe_dump(manifest))
        return self.repo.commit(message)

    def spec(self, name: str) -> dict[str, Any]:
        return dict(self.manifests[next(f for f in self.manifests if name in f)]["spec"])

    def set_spec(self, name: str, **changes: Any) -> None:
        self.manifests[next(f for f in self.manifests if name in f)]["spec"].update(changes)

    @contextmanager
    def operator_paused(self) -> Iterator[None]:
        """SIGSTOP the operator: Argo CD must see the generation it has not observed yet."""
        assert self.operator.proc is not None
        os.killpg(self.operator.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self.operator.proc.pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def host(argocd: ArgoCD, cluster: LocalCluster, kubectl: Kubectl, crds: None, standin: StandIn, logs: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    repo = GitRepo(tmp_path_factory.mktemp("gitops") / "repo")
    shutil.copytree(ROOT / "charts" / "gonka-operator", repo.path / "charts" / "gonka-operator")
    with Operator(str(cluster.kubeconfig), logs, operator_env(standin), name="operator-gitops") as op:
        # the external ML node is the stand-in's loopback ML node (which the broker drives)
        external_port = standin.ml.port if standin.ml is not None else free_port()
        h = Host(argocd, repo, op, standin, kubectl, host_manifests(external_port))
        h.write("the chart and a whole host")
        yield h


def test_chart_then_custom_resources_synced_and_healthy(host: Host) -> None:
    cd = host.cd
    start = time.monotonic()
    cd.apply_application(application(CHART_APP, host.repo, "charts/gonka-operator", OPERATOR_NS))
    chart = cd.wait_state(CHART_APP, "Synced", "Healthy", timeout=240)
    timing("chart Application: created -> Synced + Healthy", time.monotonic() - start)
    kinds = {r["kind"] for r in chart["status"]["resources"]}
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole", "ServiceAccount"} <= kinds

    start = time.monotonic()
    cd.apply_application(application(HOST_APP, host.repo, "host", HOST_NS))
    app = cd.wait_state(HOST_APP, "Synced", "Healthy", timeout=240)
    timing("CR Application: created -> Synced + Healthy", time.monotonic() - start)
    for name in ML_NODES:
        entry = resource(app, "InferenceNode", name)
        assert entry["status"] == "Synced" and entry["health"]["status"] == "Healthy", entry
        # the message is the operator's Ready message: Argo CD ran the project's script on the CR
        ready = condition(host.kubectl.get("inferencenode", name, HOST_NS), "Ready")
        assert ready is not None and entry["health"]["message"] == ready["message"]
    nn = resource(app, "NetworkNode", "host")
    assert nn["health"] == {"status": "Healthy", "message": "node, api and proxy are ready"}
    assert set(ML_NODES) <= set(host.standin.nodes()), "registered with the admin API"


def test_model_change_goes_progressing_then_healthy(host: Host) -> None:
    cd, kubectl = host.cd, host.kubectl
    generation = kubectl.get("inferencenode", "host-ml-1", HOST_NS)["metadata"]["generation"]
    host.set_spec("host-ml-1", model="Qwen/Qwen3-235B-A22B-Instruct-2507-FP8")
    start = time.monotonic()
    with host.operator_paused():
        revision = host.write("host-ml-1: Qwen3-235B")
        cd.refresh(HOST_APP)  # instead of waiting for the poll of the repository (a webhook's job)
        app = cd.wait_state(HOST_APP, "Synced", "Progressing", revision=revision, timeout=120)
        timing("model change commit -> Progressing (operator paused)", time.monotonic() - start)
        entry = resource(app, "InferenceNode", "host-ml-1")
        assert entry["health"] == {"status": "Progressing",
                                   "message": f"Waiting for the operator to observe generation {generation + 1}"}
    start = time.monotonic()
    cd.wait_state(HOST_APP, "Synced", "Healthy", revision=revision, timeout=120)
    timing("operator resumed -> Healthy", time.monotonic() - start)
    node = kubectl.get("inferencenode", "host-ml-1", HOST_NS)
    assert node["status"]["observedGeneration"] == generation + 1
    # the admin registry follows (the operator's registry loop writes it; a lag shows in the figure)
    start = time.monotonic()
    wait_for(lambda: "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8" in host.standin.nodes()["host-ml-1"]["node"]["models"],
             60, lambda: f"registry entry of host-ml-1 with the new model: {host.standin.nodes().get('host-ml-1')}; "
                         f"CR status {kubectl.get('inferencenode', 'host-ml-1', HOST_NS).get('status')}")
    timing("Healthy -> admin registry holds the new model", time.monotonic() - start)


def test_too_many_gpus_goes_degraded_with_the_operators_message(host: Host) -> None:
    cd, kubectl = host.cd, host.kubectl
    host.set_spec("host-ml-2", gpus=16)
    start = time.monotonic()
    revision = host.write("host-ml-2: 16 GPUs (the H200 node has 8)")
    cd.refresh(HOST_APP)
    app = cd.wait_state(HOST_APP, "Synced", "Degraded", revision=revision, timeout=180)
    timing("16-GPU commit -> Degraded", time.monotonic() - start)
    ready = wait_condition(kubectl, "inferencenode", "host-ml-2", HOST_NS, "Ready", "False", "InsufficientGPU")
    entry = resource(app, "InferenceNode", "host-ml-2")
    assert entry["health"] == {"status": "Degraded", "message": f"InsufficientGPU: {ready['message']}"}
    assert "Insufficient nvidia.com/gpu" in entry["health"]["message"]

    host.set_spec("host-ml-2", gpus=1)
    start = time.monotonic()
    revision = host.write("host-ml-2: back to 1 GPU")
    cd.refresh(HOST_APP)
    cd.wait_state(HOST_APP, "Synced", "Healthy", revision=revision, timeout=180)
    timing("revert commit -> Healthy", time.monotonic() - start)


def dry_run_applies(kubectl: Kubectl) -> float:
    """Server-side dry-run applies of InferenceNodes the API server has served (what a server-side
    diff sends for each live object it compares; a legacy diff sends none)."""
    total = 0.0
    for line in kubectl.run("get", "--raw", "/metrics").stdout.splitlines():
        if line.startswith("apiserver_request_total{") and 'dry_run="All"' in line and 'verb="APPLY"' in line \
                and 'resource="inferencenodes"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("server_side_diff", [False, True], ids=["legacy-diff", "server-side-diff"])
def test_ten_refreshes_stay_synced(host: Host, server_side_diff: bool) -> None:
    cd = host.cd
    for name, path, ns in ((CHART_APP, "charts/gonka-operator", OPERATOR_NS), (HOST_APP, "host", HOST_NS)):
        cd.apply_application(application(name, host.repo, path, ns, server_side_diff=server_side_diff))
        cd.wait_state(name, "Synced", "Healthy", timeout=120)
    history = {name: len(cd.app(name)["status"].get("history") or []) for name in (CHART_APP, HOST_APP)}
    dry_runs = dry_run_applies(host.kubectl)
    start = time.monotonic()
    for i in range(10):
        for name in (CHART_APP, HOST_APP):
            cd.refresh(name, "hard")  # regenerate the manifests, compare again
            app = cd.wait_refreshed(name)
            out_of_sync = [(r["kind"], r["name"]) for r in app["status"]["resources"] if r.get("status") != "Synced"]
            assert app["status"]["sync"]["status"] == "Synced" and not out_of_sync, \
                f"refresh {i + 1} of {name}: OutOfSync {out_of_sync}"
            assert app["status"]["health"]["status"] == "Healthy"
    mode = "server-side diff" if server_side_diff else "legacy diff"
    dry_runs = dry_run_applies(host.kubectl) - dry_runs
    # the mode really is the one under test: 10 refreshes x 3 InferenceNodes dry-run applied, or none
    assert dry_runs >= 30 if server_side_diff else dry_runs == 0, f"{mode}: {dry_runs} dry-run applies"
    timing(f"10 hard refreshes of both Applications, {mode} (all Synced)", time.monotonic() - start)
    # nothing was re-synced meanwhile (selfHeal would have hidden a diff by applying again)
    assert {name: len(cd.app(name)["status"].get("history") or []) for name in (CHART_APP, HOST_APP)} == history

    # the same comparison does see a real change of a field in git: selfHeal puts git's value back
    start = time.monotonic()
    host.kubectl.run("patch", "inferencenode", "host-ml-2", "-n", HOST_NS, "--type=merge",
                     "-p", '{"spec": {"model": "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8"}}')
    wait_for(lambda: host.kubectl.get("inferencenode", "host-ml-2", HOST_NS)["spec"]["model"] ==
             host.spec("host-ml-2")["model"], 60, f"selfHeal of host-ml-2 ({mode}); {cd.logs(10)}")
    timing(f"manual spec change -> detected and healed, {mode}", time.monotonic() - start)
    cd.wait_state(HOST_APP, "Synced", "Healthy", timeout=120)


def test_delete_of_the_cr_application_deregisters_the_nodes(host: Host) -> None:
    cd, kubectl = host.cd, host.kubectl
    assert set(ML_NODES) <= set(host.standin.nodes())
    for name in ML_NODES:  # the finalizer that deregisters is there: the prune has to wait for it
        assert "gonka.ai/registry-cleanup" in kubectl.get("inferencenode", name, HOST_NS)["metadata"]["finalizers"]
    start = time.monotonic()
    kubectl.run("delete", "applications.argoproj.io", HOST_APP, "-n", NAMESPACE, "--wait=false")
    wait_for(lambda: kubectl.run("get", "applications.argoproj.io", HOST_APP, "-n", NAMESPACE,
                                 check=False).returncode != 0, 180,
             lambda: f"Application {HOST_APP} gone; {cd.app(HOST_APP).get('status', {}).get('operationState')}; "
                     f"nodes {kubectl.run('get', 'gonka', '-n', HOST_NS, '-o', 'yaml', check=False).stdout[-2000:]}")
    timing("delete of the CR Application -> gone (cascade, nodes deregistered)", time.monotonic() - start)
    assert not kubectl.json("get", "inferencenodes,networknodes", "-n", HOST_NS)["items"]
    assert not set(ML_NODES) & set(host.standin.nodes()), "every node was removed from the admin registry"
    cd.wait_state(CHART_APP, "Synced", "Healthy", timeout=60)
