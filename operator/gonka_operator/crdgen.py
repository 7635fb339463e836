"""Generate the CustomResourceDefinitions from the pydantic models (the one source of truth).

pydantic emits JSON Schema with $refs, anyOf-null for optionals and titles; Kubernetes wants a
structural OpenAPI v3 schema. `structural()` converts one into the other. `make crds` writes the
result to crds/ and to the chart; tests/unit/test_crds.py fails when the committed files differ.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from gonka_operator.models.common import CRDModel
from gonka_operator.models.inference_node import InferenceNodeSpec, InferenceNodeStatus
from gonka_operator.models.network_node import NetworkNodeSpec, NetworkNodeStatus

GROUP = "gonka.ai"
VERSION = "v1alpha1"
_KEEP = ("type", "description", "default", "enum", "minimum", "maximum", "pattern", "minLength",
         "maxLength", "minItems", "maxItems", "required", "x-kubernetes-validations")

Schema = dict[str, Any]


def structural(schema: Schema, defs: Schema | None = None) -> Schema:
    """Convert a pydantic JSON schema node into a structural OpenAPI v3 schema node."""
    defs = defs if defs is not None else schema.get("$defs", {})
    node = dict(schema)
    if "$ref" in node:  # a nested model; the field's own description/default win over the model's
        target = defs[node.pop("$ref").split("/")[-1]]
        node = {**target, **{k: v for k, v in node.items() if k in ("description", "default")}}
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if {o.get("type") for o in options} == {"integer", "string"}:
            node["x-kubernetes-int-or-string"] = True
        elif len(options) == 1:
            inner = structural(options[0], defs)
            node = {**inner, **{k: v for k, v in node.items() if k != "default" or v is not None}}
        else:
            raise ValueError(f"unsupported union in schema: {options}")
    out: Schema = {k: v for k, v in node.items() if k in _KEEP or k.startswith("x-kubernetes")}
    if out.get("default", "unset") is None:
        del out["default"]
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {name: structural(prop, defs) for name, prop in node["properties"].items()}
    elif node.get("type") == "object":
        extra = node.get("additionalProperties", True)
        if extra is True or extra == {}:
            out["x-kubernetes-preserve-unknown-fields"] = True
        else:
            out["additionalProperties"] = structural(extra, defs)
    if node.get("type") == "array":
        out["items"] = structural(node.get("items", {}), defs)
    return out


def _object_schema(model: type[BaseModel]) -> Schema:
    return structural(model.model_json_schema(by_alias=True, mode="serialization"))


def _apply_object_defaults(schema: Schema, model: type[CRDModel]) -> None:
    """Give object-typed fields with a default their full default, so the API server fills them."""
    for name, field in model.model_fields.items():
        alias = field.alias or name
        prop = schema["properties"][alias]
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, CRDModel):
            if field.default_factory is not None:
                prop["default"] = field.default_factory().wire()  # type: ignore[call-arg]
            _apply_object_defaults(prop, ann)


def _crd(kind: str, plural: str, short: list[str], spec: type[CRDModel], status: type[CRDModel],
         columns: list[Schema], root_rules: list[Schema], description: str) -> Schema:
    spec_schema = _object_schema(spec)
    _apply_object_defaults(spec_schema, spec)
    spec_schema["description"] = f"Desired state of the {kind}."
    status_schema = _object_schema(status)
    status_schema["description"] = f"Observed state of the {kind}, written by the operator."
    root: Schema = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version (gonka.ai/v1alpha1)."},
            "kind": {"type": "string", "description": f"Kind ({kind})."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    if root_rules:
        root["x-kubernetes-validations"] = root_rules
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "gonka-operator"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                      "singular": kind.lower(), "shortNames": short, "categories": ["gonka"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def _condition_column(name: str, ctype: str) -> Schema:
    return {"name": name, "type": "string", "jsonPath": f'.status.conditions[?(@.type=="{ctype}")].status'}


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_NAME_RULE = {
    "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 40",
    "message": "metadata.name must be a DNS-1035 label of at most 40 characters "
    "(it prefixes the names of Services and workloads)",
}


def network_node_crd() -> Schema:
    no_dapi = {
        "rule": "self.metadata.name != 'dapi' && !self.metadata.name.startsWith('dapi-')",
        "message": "metadata.name must not be 'dapi' or start with 'dapi-': the api Service would get the "
        "env prefix DAPI_, which the api reads as its configuration",
    }
    return _crd(
        "NetworkNode", "networknodes", ["gnn", "netnode"], NetworkNodeSpec, NetworkNodeStatus,
        [_condition_column("Ready", "Ready"),
         {"name": "Admin", "type": "boolean", "jsonPath": ".status.adminReachable"},
         {"name": "Registered", "type": "integer", "jsonPath": ".status.registry.registered"},
         {"name": "Phase", "type": "string", "jsonPath": ".status.epoch.phase",
          "description": "Epoch phase (public API /v1/epochs/latest)."},
         {"name": "Height", "type": "integer", "jsonPath": ".status.chain.height",
          "description": "Chain height (refreshed at most every 10 minutes)."},
         _condition_column("Synced", "ChainSynced"),
         {"name": "Weight", "type": "integer", "jsonPath": ".status.weight",
          "description": "Sum of the ML nodes' PoC weight in this epoch."},
         {"name": "Public URL", "type": "string", "jsonPath": ".status.endpoints.publicURL"}, _AGE],
        [_NAME_RULE, no_dapi],
        "A Gonka network node: chain node, API node (DAPI), tmkms and the nginx proxy.",
    )


def inference_node_crd() -> Schema:
    node_id_immutable = {
        "rule": "(has(self.spec.nodeId) ? self.spec.nodeId : self.metadata.name) == "
        "(has(oldSelf.spec.nodeId) ? oldSelf.spec.nodeId : oldSelf.metadata.name)",
        "message": "spec.nodeId is immutable (it is the ML node's id in the admin registry): "
        "create a new InferenceNode instead",
        "fieldPath": ".spec.nodeId",
    }
    move = ("the ML node is registered with that network node; to move it, delete the InferenceNode "
            "(which deregisters it there) and create it again")
    ref_immutable = {
        "rule": "has(self.spec.networkNodeRef) == has(oldSelf.spec.networkNodeRef) && "
        "(!has(self.spec.networkNodeRef) || self.spec.networkNodeRef.name == oldSelf.spec.networkNodeRef.name)",
        "message": f"spec.networkNodeRef is immutable: {move}",
        "fieldPath": ".spec.networkNodeRef",
    }
    url_immutable = {
        "rule": "has(self.spec.adminURL) == has(oldSelf.spec.adminURL) && "
        "(!has(self.spec.adminURL) || self.spec.adminURL == oldSelf.spec.adminURL)",
        "message": f"spec.adminURL is immutable: {move}",
        "fieldPath": ".spec.adminURL",
    }
    return _crd(
        "InferenceNode", "inferencenodes", ["gin", "mlnode"], InferenceNodeSpec, InferenceNodeStatus,
        [{"name": "Model", "type": "string", "jsonPath": ".spec.model"},
         {"name": "GPUs", "type": "integer", "jsonPath": ".spec.gpus"},
         _condition_column("Ready", "Ready"),
         {"name": "Cache", "type": "string", "jsonPath": ".status.cache.state",
          "description": "HF cache: Downloading, Ready or Failed (spec.hfCache.preload)."},
         {"name": "Registry", "type": "string", "jsonPath": ".status.registry.currentStatus"},
         {"name": "Phase", "type": "string", "jsonPath": ".status.registry.onboarding.phase",
          "description": "Epoch phase the api reports (PoCGenerate … Inference)."},
         {"name": "Weight", "type": "number", "jsonPath": ".status.registry.pocWeight",
          "description": "PoC weight of the node in the current epoch."}, _AGE],
        [_NAME_RULE, node_id_immutable, ref_immutable, url_immutable],
        "A Gonka inference (ML) node: an mlnode/vLLM workload on GPUs, or an external ML node, "
        "registered in its network node's admin registry.",
    )


def all_crds() -> list[Schema]:
    return [network_node_crd(), inference_node_crd()]


def crds_yaml() -> str:
    return "---\n".join(crd_yaml(crd) for crd in all_crds())


class _NoAliases(yaml.SafeDumper):
    """Repeated sub-schemas are written out in full: no &anchors/*aliases in the CRDs."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def crd_yaml(crd: Schema) -> str:
    return yaml.dump(crd, Dumper=_NoAliases, sort_keys=False, width=120)


def crd_files() -> dict[str, str]:
    """File name (crds/…) → content, as `make crds` writes them."""
    return {f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml": crd_yaml(crd) for crd in all_crds()}
