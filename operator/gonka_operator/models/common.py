"""Building blocks shared by both custom resources."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# A Kubernetes resource quantity ("16Gi", "500m", 2). Rendered as int-or-string in the CRD.
Quantity = int | str


class CRDModel(BaseModel):
    """Base of every spec/status model: camelCase on the wire, unknown fields ignored when parsing.

    The API server prunes unknown fields before the operator sees an object, so ignoring extras
    only matters for objects written under an older schema.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def wire(self) -> dict[str, Any]:
        """The model as it appears in a manifest (camelCase, unset optionals left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SecretKeyRef(CRDModel):
    name: str = Field(min_length=1, description="Name of a Secret in the same namespace.")
    key: str = Field(min_length=1, description="Key inside the Secret.")


class EnvVar(CRDModel):
    name: str = Field(
        min_length=1, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Environment variable name."
    )
    value: str | None = Field(default=None, description="Literal value.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="Source of the value (secretKeyRef, configMapKeyRef, fieldRef…), as in a Pod.",
    )


class Resources(CRDModel):
    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Minimum resources, e.g. {cpu: 4, memory: 32Gi}."
    )
    limits: dict[str, Quantity] = Field(default_factory=dict, description="Maximum resources.")


class Scheduling(CRDModel):
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Labels a node must carry for the pod to run there."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="Pod tolerations, as in a Pod spec."
    )
    affinity: dict[str, Any] | None = Field(default=None, description="Pod affinity, as in a Pod spec.")


class Storage(CRDModel):
    size: Quantity = Field(description="Requested size of the PersistentVolumeClaim, e.g. 1Ti.")
    storage_class_name: str | None = Field(
        default=None, description="StorageClass of the claim; the cluster default when unset."
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(CRDModel):
    """A status condition, shaped like metav1.Condition."""

    type: str = Field(description="Condition type, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason of the last transition.")
    message: str = Field(default="", description="Human-readable detail.")
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the condition was computed from."
    )
    last_transition_time: str | None = Field(
        default=None, description="When status last changed (RFC 3339)."
    )
