"""Invalid manifests are rejected by the real API server (schema + CEL) with a message naming the
field. One data file per case in invalid/: its first line says `# expect: <field path>`."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs import Kubectl

CASES = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))
pytestmark = pytest.mark.integration


def test_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_invalid_manifest_is_rejected_naming_the_field(case: Path, kubectl: Kubectl, crds: None) -> None:
    expect = case.read_text().splitlines()[0].removeprefix("# expect:").strip()
    proc = kubectl.run("create", "--dry-run=server", "-n", "default", "-f", str(case), check=False)
    assert proc.returncode != 0, f"{case.name} was accepted"
    assert expect in proc.stderr, f"{case.name}: rejection does not name {expect!r}: {proc.stderr}"


def test_node_id_is_immutable(kubectl: Kubectl, crds: None, namespace: str) -> None:
    manifest = """
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {name: fixed-id}
spec: {adminURL: "http://127.0.0.1:9", model: m, nodeId: first, external: {host: 127.0.0.1}}
"""
    kubectl.run("create", "-n", namespace, "-f", "-", input=manifest)
    proc = kubectl.run("patch", "inferencenode", "fixed-id", "-n", namespace, "--type=merge",
                       "-p", '{"spec":{"nodeId":"second"}}', check=False)
    assert proc.returncode != 0 and "spec.nodeId is immutable" in proc.stderr, proc.stderr


MOVABLE = """
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {name: pinned}
spec: {%s, model: m, external: {host: 127.0.0.1}}
"""


@pytest.mark.parametrize(("start", "patch", "field"), [
    ("networkNodeRef: {name: a}", '{"spec":{"networkNodeRef":{"name":"b"}}}', "spec.networkNodeRef"),
    ('adminURL: "http://127.0.0.1:9"', '{"spec":{"adminURL":"http://127.0.0.1:10"}}', "spec.adminURL"),
    ("networkNodeRef: {name: a}", '{"spec":{"networkNodeRef":null,"adminURL":"http://127.0.0.1:10"}}',
     "spec.networkNodeRef"),
    ('adminURL: "http://127.0.0.1:9"', '{"spec":{"adminURL":null,"networkNodeRef":{"name":"a"}}}', "spec.adminURL"),
], ids=["ref", "url", "ref-to-url", "url-to-ref"])
def test_network_node_and_admin_url_are_immutable(start: str, patch: str, field: str, kubectl: Kubectl, crds: None,
                                                  namespace: str) -> None:
    """Moving an ML node would leave its old registration behind: the API server refuses the edit."""
    kubectl.run("create", "-n", namespace, "-f", "-", input=MOVABLE % start)
    proc = kubectl.run("patch", "inferencenode", "pinned", "-n", namespace, "--type=merge", "-p", patch, check=False)
    assert proc.returncode != 0, "the move was accepted"
    assert f"{field} is immutable" in proc.stderr and "delete the InferenceNode" in proc.stderr, proc.stderr
    # other edits still go through
    kubectl.run("patch", "inferencenode", "pinned", "-n", namespace, "--type=merge", "-p", '{"spec":{"gpus":2}}')


def test_current_fields_are_accepted(kubectl: Kubectl, crds: None, namespace: str) -> None:
    manifest = """
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {name: current}
spec:
  adminURL: "http://127.0.0.1:9"
  model: MiniMaxAI/MiniMax-M2.7
  modelOverride: {hfRepo: host/custom-minimax, hfCommit: 0123456789abcdef0123456789abcdef01234567}
  args: ["--model-impl", "vllm", "--max-model-len=4096"]
  hfCache: {hostPath: /mnt/shared}
  proxy: {image: "nginx:1.28.0"}
  allowedFrom: [{cidr: 192.168.10.0/24}, {namespaceSelector: {kubernetes.io/metadata.name: hosts}}]
"""
    kubectl.run("create", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest)
