"""Namespaced mode (`watchNamespaces: [A]`): the operator, run with its Role-bound ServiceAccount
token, reconciles in A and cannot touch namespace B; every request it makes stays in A."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from chartlib import (
    CHART,
    Helm,
    Recorder,
    Release,
    create_namespace,
    ensure_crds,
    operator_env,
    unique,
    wait_condition,
)
from rbac import Request, forbidden, granted, used

from helpers import holds_for, wait_for
from procs import Kubectl, Operator, StandIn

pytestmark = pytest.mark.integration


@dataclass
class Namespaced:
    a: str
    b: str
    release: Release
    direct_kubeconfig: str
    operator: Operator
    recorder: Recorder
    observers: bool


@pytest.fixture(scope="module", params=[False, True], ids=["role-only", "with-observer-clusterrole"])
def namespaced(request: pytest.FixtureRequest, helm: Helm, kubectl: Kubectl, standin: StandIn, logs: Path,
               sa_credentials: Callable[[Release], tuple[str, str, Recorder]]) -> Iterator[Namespaced]:
    observers: bool = request.param
    ensure_crds(kubectl)
    a, b = create_namespace(kubectl, unique("ns-a")), create_namespace(kubectl, unique("ns-b"))
    release = Release(unique("nsop"), create_namespace(kubectl, unique("gonka-system")), helm, kubectl)
    helm.run("install", release.name, str(CHART), "-n", release.namespace, "--set", "crds.install=false",
             "--set", f"watchNamespaces={{{a}}}",
             "--set", f"rbac.namespacedModeClusterObservers={str(observers).lower()}")
    direct, recorded, recorder = sa_credentials(release)
    op = Operator(recorded, logs, {**operator_env(standin), "GONKA_LEASE_NAMESPACE": release.namespace},
                  name=f"operator-{release.name}")
    deployment = next(d for d in release.manifest() if d["kind"] == "Deployment")
    chart_args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    # exactly the chart's arguments, minus the liveness address and log format the test sets itself
    op.args += [arg for arg in chart_args if not arg.startswith(("--liveness=", "--log-format="))]
    op.start()
    try:
        yield Namespaced(a, b, release, direct, op, recorder, observers)
    finally:
        op.stop()
        for ns in (a, b):  # nothing should hold finalizers there any more; do not wait
            kubectl.run("delete", "namespace", ns, "--wait=false", check=False)
        release.uninstall()
        kubectl.run("delete", "namespace", release.namespace, "--wait=false", check=False)


def can_i(kubectl: Kubectl, kubeconfig: str, verb: str, resource: str, *scope: str) -> bool:
    """`kubectl auth can-i` as the ServiceAccount (its own kubeconfig: the token, no client cert)."""
    proc = subprocess.run([str(kubectl.binary), "--kubeconfig", kubeconfig, "auth", "can-i", verb, resource, *scope],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() in ("yes", "no"), proc.stderr
    return proc.stdout.strip() == "yes"


WRITES = [("create", "deployments.apps"), ("patch", "deployments.apps"), ("delete", "deployments.apps"),
          ("create", "statefulsets.apps"), ("create", "services"), ("create", "persistentvolumeclaims"),
          ("create", "networkpolicies.networking.k8s.io"), ("patch", "inferencenodes.gonka.ai"),
          ("patch", "networknodes.gonka.ai"), ("create", "events"), ("list", "pods"),
          ("watch", "inferencenodes.gonka.ai")]


def test_the_token_can_act_in_a_only(namespaced: Namespaced, kubectl: Kubectl) -> None:
    kc = namespaced.direct_kubeconfig
    for verb, resource in WRITES:
        assert can_i(kubectl, kc, verb, resource, "-n", namespaced.a), f"cannot {verb} {resource} in A"
        assert not can_i(kubectl, kc, verb, resource, "-n", namespaced.b), f"can {verb} {resource} in B"
        assert not can_i(kubectl, kc, verb, resource, "-A"), f"can {verb} {resource} cluster-wide"
    assert can_i(kubectl, kc, "patch", "inferencenodes.gonka.ai", "--subresource=status", "-n", namespaced.a)
    assert not can_i(kubectl, kc, "get", "secrets", "-n", namespaced.a), "the operator never reads Secrets"
    assert can_i(kubectl, kc, "list", "customresourcedefinitions.apiextensions.k8s.io") == namespaced.observers
    assert can_i(kubectl, kc, "list", "namespaces") == namespaced.observers


def nn_and_in(name: str, admin_url: str) -> str:
    return yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keyring"}, "stringData": {"password": "pw"}},
        {"apiVersion": "gonka.ai/v1alpha1", "kind": "NetworkNode", "metadata": {"name": "gonka"},
         "spec": {"keyName": "k", "accountPubKey": "pub", "publicHost": "gonka.example.com",
                  "keyringPasswordSecretRef": {"name": "keyring", "key": "password"},
                  "exposure": {"p2p": {"type": "ClusterIP"}, "proxy": {"type": "ClusterIP"}}}},
        {"apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode", "metadata": {"name": name},
         "spec": {"adminURL": admin_url, "model": "Qwen/Qwen3-32B-FP8", "gpus": 1, "external": {"host": "10.0.0.41"}}},
    ])


def untouched(kubectl: Kubectl, ns: str, name: str) -> bool:
    ml = kubectl.get("inferencenode", name, ns) or {}
    nn = kubectl.get("networknode", "gonka", ns) or {}
    workloads = kubectl.json("get", "deployments,statefulsets,services,networkpolicies,pvc", "-n", ns)["items"]
    return (bool(ml) and bool(nn) and not ml.get("status") and not nn.get("status")
            and not ml["metadata"].get("finalizers") and not workloads)


def test_reconciles_in_a_and_never_touches_b(namespaced: Namespaced, kubectl: Kubectl, standin: StandIn) -> None:
    in_a, in_b = unique("in-a"), unique("in-b")
    kubectl.run("apply", "-n", namespaced.b, "-f", "-", input=nn_and_in(in_b, standin.url))
    kubectl.run("apply", "-n", namespaced.a, "-f", "-", input=nn_and_in(in_a, standin.url))
    # Role-only: kopf first retries listing namespaces (~1 min of back-off) before it falls back to
    # the namespaces it was given; with the observer ClusterRole it starts at once.
    wait_condition(kubectl, "inferencenode", in_a, namespaced.a, "Ready", "True", timeout=150)
    wait_for(lambda: kubectl.get("statefulset", "gonka-node", namespaced.a), 30, "NetworkNode children in A")
    assert in_a in standin.nodes()
    holds_for(lambda: untouched(kubectl, namespaced.b, in_b), 6, f"namespace {namespaced.b} untouched")
    assert in_b not in standin.nodes()
    kubectl.run("delete", "inferencenode", in_a, "-n", namespaced.a, "--timeout=60s")
    assert in_a not in standin.nodes()

    requests = namespaced.recorder.requests()
    refused = forbidden(requests)
    assert all(Request.of(r).target()[2] in ("namespaces", "customresourcedefinitions")  # type: ignore[index]
               for r in refused), f"refused beyond kopf's cluster observers: {refused}"
    assert bool(refused) != namespaced.observers
    for raw in requests:
        target = Request.of(raw).target()
        if target is None:
            continue
        _, namespace, resource, _ = target
        if namespace is None:  # cluster scope: only kopf's read-only observers
            assert resource in ("namespaces", "customresourcedefinitions") and raw["method"] == "GET", raw
        elif resource == "leases":  # leader election: the Lease in the operator's own namespace
            assert namespace == namespaced.release.namespace, raw
        else:
            assert namespace == namespaced.a, f"request outside {namespaced.a}: {raw}"
    roles = [d for d in namespaced.release.manifest() if d["kind"] in ("Role", "ClusterRole")]
    successful = [r for r in requests if r["status"] < 400]
    assert used(successful) <= granted(roles)


def test_no_request_names_namespace_b(namespaced: Namespaced) -> None:
    """kopf lists and watches per namespace in this mode: no request ever names B."""
    assert not [r for r in namespaced.recorder.requests() if f"/namespaces/{namespaced.b}/" in r["path"]]
