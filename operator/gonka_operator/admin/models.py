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


def _lenient_number(value: Any) -> Any:
    """Numbers as numbers; numeric strings (v0.2.15 may send them) parsed; anything else dropped."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return int(number) if number.is_integer() else number
    return None


def _lenient_int(value: Any) -> Any:
    number = _lenient_number(value)
    return int(number) if isinstance(number, int | float) else None


def _dict_or_none(value: Any) -> Any:
    return value if isinstance(value, dict) else None


class ModelOverride(BaseModel):
    """Weights to serve instead of the governance model's own (`model_override`, after v0.2.14).

    Upstream: decentralized-api/apiconfig/config.go `ModelConfig.ModelOverride` (`hf_repo`,
    `hf_commit`, the commit a 40-character lowercase hex hash).
    """

    model_config = _LENIENT

    hf_repo: str
    hf_commit: str


class ModelArgs(BaseModel):
    """vLLM arguments of one model served by an ML node (upstream `ModelConfig`)."""

    model_config = _LENIENT

    args: list[str] = Field(default_factory=list)
    model_override: ModelOverride | None = None

    _nulls = field_validator("args", mode="before")(_none_to_empty_list)

    def to_body(self) -> dict[str, Any]:
        """`{"args": [...]}`, plus `model_override` only when set (older apis never see the key)."""
        body: dict[str, Any] = {"args": list(self.args)}
        if self.model_override is not None:
            body["model_override"] = {"hf_repo": self.model_override.hf_repo,
                                      "hf_commit": self.model_override.hf_commit}
        return body


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
            "models": {model: m.to_body() for model, m in self.models.items()},
            "hardware": [{"type": h.type, "count": h.count} for h in self.hardware],
        }

    def same_config(self, other: InferenceNodeConfig) -> bool:
        """True when both describe the same registration (ignores `node_num` and unknown fields)."""
        return self.to_body() == other.to_body()

    def has_model_override(self) -> bool:
        return any(m.model_override is not None for m in self.models.values())

    def without_model_override(self) -> InferenceNodeConfig:
        """The same registration for an api that does not know `model_override` (the 2025-08 one)."""
        models = {name: ModelArgs(args=list(m.args)) for name, m in self.models.items()}
        return self.model_copy(update={"models": models})


class RegisteredNode(InferenceNodeConfig):
    """The `node` half of a `GET nodes` entry: the config plus what the api assigned."""

    node_num: int | None = None


class AdminState(BaseModel):
    model_config = _LENIENT

    enabled: bool | None = None
    epoch: int | None = None


class EpochMLNode(BaseModel):
    """Per-model allocation of the node in the current epoch (`epoch_ml_nodes`, REFERENCE.md §6:
    `{node_id, throughput, poc_weight}`; the 2025-08 api also had `timeslot_allocation`)."""

    model_config = _LENIENT

    node_id: str | None = None
    throughput: int | float | None = None
    poc_weight: int | float | None = None
    timeslot_allocation: list[bool] | None = None

    _numbers = field_validator("throughput", "poc_weight", mode="before")(_lenient_number)


class OnboardingTiming(BaseModel):
    """`onboarding.timing` of a `GET nodes` item (decentralized-api internal/server/admin
    timing_calculator.go `TimingInfo`)."""

    model_config = _LENIENT

    current_phase: str | None = None
    blocks_until_next_poc: int | None = None
    seconds_until_next_poc: int | None = None
    should_be_online: bool | None = None
    in_poc_window: bool | None = None
    confirmation_poc_active: bool | None = None

    _numbers = field_validator("blocks_until_next_poc", "seconds_until_next_poc", mode="before")(_lenient_int)


class Onboarding(BaseModel):
    """Item-level `onboarding` of `GET nodes` after v0.2.14 (decentralized-api
    internal/server/admin onboarding_response.go `OnboardingStatus`); absent before the api's
    chain phase tracker has synced, and on older apis."""

    model_config = _LENIENT

    participant_state: str | None = None
    mlnode_state: str | None = None
    timing: OnboardingTiming | None = None
    user_message: str | None = None
    guidance: str | None = None


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
    ml_node_version: str | None = None

    _lenient_epoch_ml_nodes = field_validator("epoch_ml_nodes", mode="before")(
        lambda v: {k: e for k, e in v.items() if isinstance(e, dict)} if isinstance(v, dict) else None)
    _lenient_version = field_validator("ml_node_version", mode="before")(
        lambda v: v if isinstance(v, str) else None)


class NodeEntry(BaseModel):
    """One item of `GET nodes`: `{"node": {...}, "state": {...}}`."""

    model_config = _LENIENT

    node: RegisteredNode
    state: NodeState = Field(default_factory=NodeState)
    onboarding: Onboarding | None = None

    _null_state = field_validator("state", mode="before")(_none_to_empty_dict)
    _lenient_onboarding = field_validator("onboarding", mode="before")(_dict_or_none)
