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
spec: {adminURL: "http://10.0.0.5:9200", model: m, nodeId: first, external: {host: 10.0.0.21}}
"""
    kubectl.run("create", "-n", namespace, "-f", "-", input=manifest)
    proc = kubectl.run("patch", "inferencenode", "fixed-id", "-n", namespace, "--type=merge",
                       "-p", '{"spec":{"nodeId":"second"}}', check=False)
    assert proc.returncode != 0 and "spec.nodeId is immutable" in proc.stderr, proc.stderr
