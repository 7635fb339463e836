"""`helm install` and `helm upgrade` on the local control plane: the CRDs are installed AND
upgraded by the chart, an unchanged upgrade writes nothing, Argo CD's view (a server-side diff of
the release's manifest) is empty, and `helm uninstall` keeps the CRDs and the custom resources."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from chartlib import (
    CHART,
    CRD_NAMES,
    Helm,
    Release,
    adopt_crds,
    create_namespace,
    unique,
    wait_crds_established,
    wait_deployment_available,
)

from gonka_operator.crdgen import all_crds
from helpers import wait_for
from procs import Kubectl

pytestmark = pytest.mark.integration

OLD_DESCRIPTION = "Kind (InferenceNode)."
MARKER = "Kind (InferenceNode, as the previous chart version described it)."


def old_chart(tmp: Path) -> Path:
    """A copy of the chart whose InferenceNode CRD differs from the current one (a description and
    a printer column): what an earlier chart version would have installed."""
    copy = tmp / "gonka-operator"
    shutil.copytree(CHART, copy)
    crd = copy / "templates" / "crds" / "gonka.ai_inferencenodes.yaml"
    text = crd.read_text()
    assert OLD_DESCRIPTION in text
    text = text.replace(OLD_DESCRIPTION, MARKER).replace("- name: Registry\n", "- name: RegistryOld\n")
    crd.write_text(text)
    return copy


def live_crd(kubectl: Kubectl, name: str) -> dict:
    return kubectl.json("get", "crd", name)


@pytest.fixture(scope="module")
def upgraded(helm: Helm, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """Install an "older" chart, then `helm upgrade` to the current one; facts of both steps."""
    release = Release(unique("gonka"), create_namespace(kubectl, unique("gonka-system")), helm, kubectl)
    adopt_crds(kubectl, release.name, release.namespace)
    helm.run("install", release.name, str(old_chart(tmp_path_factory.mktemp("old"))), "-n", release.namespace)
    wait_crds_established(kubectl)
    release.facts["installed"] = live_crd(kubectl, "inferencenodes.gonka.ai")
    helm.run("upgrade", release.name, str(CHART), "-n", release.namespace)
    release.facts["upgraded"] = live_crd(kubectl, "inferencenodes.gonka.ai")
    try:
        yield release
    finally:
        release.uninstall()
        kubectl.run("delete", "namespace", release.namespace, "--wait=false", check=False)


def printer_columns(crd: dict) -> list[str]:
    return [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]


def test_install_creates_and_upgrade_updates_the_crds(upgraded: Release, kubectl: Kubectl) -> None:
    installed, now = upgraded.facts["installed"], upgraded.facts["upgraded"]
    schema = installed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["kind"]["description"] == MARKER
    assert "RegistryOld" in printer_columns(installed)
    expected = next(c for c in all_crds() if c["metadata"]["name"] == "inferencenodes.gonka.ai")
    assert now["spec"]["versions"][0]["schema"] == expected["spec"]["versions"][0]["schema"]
    assert printer_columns(now) == printer_columns(expected)
    assert now["metadata"]["generation"] > installed["metadata"]["generation"]
    for name in CRD_NAMES:
        crd = live_crd(kubectl, name)
        assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == upgraded.name
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_unchanged_upgrade_writes_nothing(upgraded: Release, helm: Helm, kubectl: Kubectl) -> None:
    wait_deployment_available(kubectl, upgraded.fullname, upgraded.namespace)
    before = upgraded.resource_versions()
    # every object of the release was found (the Deployment, RBAC incl. the leader-election Role, …)
    manifest = helm.run("get", "manifest", upgraded.name, "-n", upgraded.namespace).stdout
    assert len(before) == sum(1 for d in yaml.safe_load_all(manifest) if d), before
    assert any(k.startswith("Role/") for k in before), before
    helm.run("upgrade", upgraded.name, str(CHART), "-n", upgraded.namespace, "--reuse-values")
    assert upgraded.resource_versions() == before


@pytest.mark.parametrize("mode", ["--server-side", "client-side"])
def test_reapplying_the_release_manifest_changes_nothing(mode: str, upgraded: Release, helm: Helm,
                                                         kubectl: Kubectl) -> None:
    """What Argo CD computes before a sync: the live objects already are the rendered ones."""
    wait_deployment_available(kubectl, upgraded.fullname, upgraded.namespace)
    manifest = helm.run("get", "manifest", upgraded.name, "-n", upgraded.namespace).stdout
    args = ["diff", "-f", "-"] + (["--server-side", "--force-conflicts"] if mode == "--server-side" else [])
    proc = kubectl.run(*args, input=manifest, check=False)
    assert proc.returncode == 0, f"kubectl diff ({mode}) found differences:\n{proc.stdout}{proc.stderr}"


def test_uninstall_keeps_crds_and_custom_resources(upgraded: Release, kubectl: Kubectl, namespace: str) -> None:
    """Last in this module: it uninstalls the release."""
    kubectl.run("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode",
        # should an operator of another test run meanwhile: nothing to deregister at namespace deletion
        "metadata": {"name": "survivor", "annotations": {"gonka.ai/skip-deregistration": "true"}},
        "spec": {"adminURL": "http://127.0.0.1:9", "model": "Qwen/Qwen3-32B-FP8", "gpus": 1,
                 "external": {"host": "10.0.0.1"}}}))
    proc = upgraded.uninstall()
    assert "kept due to the resource policy" in proc.stdout
    wait_for(lambda: kubectl.get("deployment", upgraded.fullname, upgraded.namespace) is None, 60,
             "operator Deployment removed by the uninstall")
    for name in CRD_NAMES:
        assert kubectl.run("get", "crd", name, check=False).returncode == 0, f"{name} was deleted"
    assert kubectl.get("inferencenode", "survivor", namespace) is not None
