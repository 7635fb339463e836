"""The committed CRDs are exactly what the models generate, and they teach `kubectl explain`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gonka_operator.crdgen import all_crds, crd_files, structural

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(crd_files()))
def test_committed_crd_matches_models(name: str) -> None:
    committed = (ROOT / "crds" / name).read_text()
    assert committed == crd_files()[name], f"crds/{name} is stale: run `make crds`"


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
    assert names == ["Model", "GPUs", "Ready", "Registry", "Age"]
