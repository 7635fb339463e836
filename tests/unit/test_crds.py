"""The committed CRDs are exactly what the models generate, and they teach `kubectl explain`."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from gonka_operator.crdgen import all_crds, crd_files, structural

ROOT = Path(__file__).resolve().parents[2]
CHART_CRDS = ROOT / "charts" / "gonka-operator" / "templates" / "crds"


def _write_crds() -> Any:
    """hack/write_crds.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("write_crds", ROOT / "hack" / "write_crds.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(crd_files()))
def test_committed_crd_matches_models(name: str) -> None:
    committed = (ROOT / "crds" / name).read_text()
    assert committed == crd_files()[name], f"crds/{name} is stale: run `make crds`"


@pytest.mark.parametrize("name", sorted(crd_files()))
def test_chart_crd_template_matches_models(name: str) -> None:
    expected = _write_crds().chart_crd_files()[name]
    path = CHART_CRDS / name
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing: run `make crds`"
    assert path.read_text() == expected, f"{path.relative_to(ROOT)} is stale: run `make crds`"


def test_chart_holds_no_other_crd_templates() -> None:
    assert sorted(p.name for p in CHART_CRDS.glob("*")) == sorted(crd_files())


def test_chart_crd_template_is_the_crd_kept_by_helm() -> None:
    """Without the template lines, each chart copy is the plain CRD plus the keep annotations."""
    for name, text in _write_crds().chart_crd_files().items():
        lines = text.splitlines(keepends=True)
        assert lines[0] == "{{- if .Values.crds.install }}\n" and lines[-1] == "{{- end }}\n"
        doc = yaml.safe_load("".join(lines[1:-1]))
        assert doc["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep",
                                                     "argocd.argoproj.io/sync-options": "Delete=false,Prune=false"}
        assert doc == yaml.safe_load(crd_files()[name])


def _walk(schema: dict[str, Any], path: str) -> list[str]:
    missing = [] if schema.get("description") or path.endswith(".metadata") else [path]
    for name, prop in schema.get("properties", {}).items():
        missing += _walk(prop, f"{path}.{name}")
    if "items" in schema:
        missing += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        missing += _walk(schema["additionalProperties"], f"{path}{{}}")
    return missing


@pytest.mark.parametrize("crd", all_crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_every_field_is_described(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    # items of plain string/number lists and map values need no own text: their parent explains them
    missing = [p for p in _walk(schema, "") if not p.endswith(("[]", "{}"))]
    assert missing == []


@pytest.mark.parametrize("crd", all_crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_structural_shape(crd: dict[str, Any]) -> None:
    text = yaml.safe_dump(crd)
    for forbidden in ("$ref", "anyOf: - type: 'null'", "title:", "$defs"):
        assert forbidden not in text
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["names"]["categories"] == ["gonka"]
    assert {c["name"] for c in version["additionalPrinterColumns"]} >= {"Ready", "Age"}


def test_optional_union_becomes_plain_type_and_int_or_string() -> None:
    node = structural({"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}], "description": "q"})
    assert node == {"description": "q", "x-kubernetes-int-or-string": True}
    node = structural({"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "description": "d"})
    assert node == {"type": "string", "description": "d"}


def test_inference_node_printer_columns() -> None:
    crd = next(c for c in all_crds() if c["spec"]["names"]["kind"] == "InferenceNode")
    names = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert names == ["Model", "GPUs", "Ready", "Cache", "Registry", "Phase", "Weight", "Age"]
    columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Phase"]["jsonPath"] == ".status.registry.onboarding.phase"
    assert columns["Cache"]["jsonPath"] == ".status.cache.state"
    assert (columns["Weight"]["jsonPath"], columns["Weight"]["type"]) == (".status.registry.pocWeight", "number")


def test_status_registry_schema_holds_every_registry_status_key() -> None:
    """status.registry keeps what registry_status() writes (the API server prunes unknown fields)."""
    from datetime import UTC, datetime

    from pydantic import TypeAdapter

    from gonka_operator.admin import NodeEntry
    from gonka_operator.registry_status import registry_status

    crd = next(c for c in all_crds() if c["spec"]["names"]["kind"] == "InferenceNode")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    registry = schema["registry"]["properties"]
    entry = TypeAdapter(NodeEntry).validate_python({
        "node": {"id": "a", "host": "h", "inference_port": 1, "poc_port": 2, "max_concurrent": 1},
        "state": {"current_status": "INFERENCE", "intended_status": "INFERENCE", "poc_current_status": "IDLE",
                  "failure_reason": "x", "admin_state": {"enabled": True}, "ml_node_version": "v3.0.8",
                  "epoch_ml_nodes": {"m": {"poc_weight": 3}}},
        "onboarding": {"participant_state": "ACTIVE_PARTICIPATING", "mlnode_state": "WAITING_FOR_POC",
                       "timing": {"current_phase": "Inference", "seconds_until_next_poc": 60,
                                  "should_be_online": True}, "user_message": "m", "guidance": "g"}})
    block = registry_status(entry, datetime(2026, 1, 1, tzinfo=UTC))
    assert set(block) | {"lastSeen"} == set(registry)
    assert isinstance(block["onboarding"], dict)
    assert set(block["onboarding"]) == set(registry["onboarding"]["properties"])
    assert registry["pocWeight"]["type"] == "number"
