"""Typed bodies of the network node's admin API (REFERENCE.md §4).

Requests are built from `InferenceNodeConfig`, whose `to_body()` is exactly the JSON the api expects.
Answers are parsed leniently: unknown fields (later api versions add several) are ignored, Go's
`null` for an empty slice or map is read as empty, and every `state` field is optional.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_LENIENT = ConfigDict(extra="ignore")


def _none_to_empty_list(value: Any) -> Any:
    return [] if value is None else value


def _none_to_empty_dict(value: Any) -> Any:
    return {} if value is None else value


def _none_to_empty_str(value: Any) -> Any:
    return "" if value is None else value


class ModelArgs(BaseModel):
    """vLLM arguments of one model served by an ML node."""

    model_config = _LENIENT

    args: list[str] = Field(default_factory=list)

    _nulls = field_validator("args", mode="before")(_none_to_empty_list)


class Hardware(BaseModel):
    """One kind of accelerator in an ML node, e.g. `{"type": "H100", "count": 8}`."""

    model_config = _LENIENT

    type: str
    count: int


class InferenceNodeConfig(BaseModel):
    """An ML node as registered with the admin API (`POST nodes`, `PUT nodes/{id}`)."""

    model_config = _LENIENT

    id: str
    host: str
    inference_port: int
    poc_port: int
    inference_segment: str = ""
    poc_segment: str = ""
    max_concurrent: int
    models: dict[str, ModelArgs] = Field(default_factory=dict)
    hardware: list[Hardware] = Field(default_factory=list)

    _null_models = field_validator("models", mode="before")(_none_to_empty_dict)
    _null_hardware = field_validator("hardware", mode="before")(_none_to_empty_list)
    _null_segments = field_validator("inference_segment", "poc_segment", mode="before")(_none_to_empty_str)

    def to_body(self) -> dict[str, Any]:
        """The request body, exactly the fields of REFERENCE.md §4 (no `node_num`, nothing extra)."""
        return {name: getattr(self, name) for name in InferenceNodeConfig.model_fields} | {
            "models": {model: {"args": list(m.args)} for model, m in self.models.items()},
            "hardware": [{"type": h.type, "count": h.count} for h in self.hardware],
        }

    def same_config(self, other: InferenceNodeConfig) -> bool:
        """True when both describe the same registration (ignores `node_num` and unknown fields)."""
        return self.to_body() == other.to_body()


class RegisteredNode(InferenceNodeConfig):
    """The `node` half of a `GET nodes` entry: the config plus what the api assigned."""

    node_num: int | None = None


class AdminState(BaseModel):
    model_config = _LENIENT

    enabled: bool | None = None
    epoch: int | None = None


class EpochMLNode(BaseModel):
    """Per-model allocation of the node in the current epoch (`epoch_ml_nodes`)."""

    model_config = _LENIENT

    node_id: str | None = None
    poc_weight: int | None = None
    timeslot_allocation: list[bool] | None = None


class NodeState(BaseModel):
    """The `state` half of a `GET nodes` entry; every field optional."""

    model_config = _LENIENT

    intended_status: str | None = None
    current_status: str | None = None
    poc_intended_status: str | None = None
    poc_current_status: str | None = None
    lock_count: int | None = None
    failure_reason: str | None = None
    status_timestamp: str | None = None
    admin_state: AdminState | None = None
    epoch_models: dict[str, Any] | None = None
    epoch_ml_nodes: dict[str, EpochMLNode] | None = None


class NodeEntry(BaseModel):
    """One item of `GET nodes`: `{"node": {...}, "state": {...}}`."""

    model_config = _LENIENT

    node: RegisteredNode
    state: NodeState = Field(default_factory=NodeState)

    _null_state = field_validator("state", mode="before")(_none_to_empty_dict)
