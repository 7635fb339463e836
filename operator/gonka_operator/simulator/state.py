"""The node registry of the network-node stand-in: the admin API semantics, without HTTP.

Both api generations:
- `2025-08` (REFERENCE.md §4, `decentralized-api/internal/server/admin/node_handlers.go` of 2025-08):
  no validation beyond governance (unknown model → 500 "error creating new node"); POST of an
  existing id replaces the live entry and APPENDS a duplicate to the saved config (a DELETE rewrites
  the saved config from the live list, as the real api does); batch drops failures. A new entry is
  UNKNOWN, then INFERENCE after `state_delay` s (this generation's stand-in drives no ML node).
- `latest` (v0.2.14, REFERENCE.md §6): POST/PUT upsert. A new id goes through `RegisterNode`
  (`decentralized-api/broker/node_admin_commands.go`): `validateInferenceNode` (the basic checks of
  `apiconfig.ValidateInferenceNodeBasic` plus host+port duplicates, joined as
  `validation failed: a; b`), then models governance has not approved are DROPPED silently and only
  none left is an error (`node X has no governance-valid models`); the handler answers
  400 `failed to create node: <err>`. An existing id goes through `UpdateNode`: the same validation
  (itself excluded from the duplicate check), but an unapproved model is an error
  (`model M is not a valid governance model`), and the handler answers **500**
  `failed to update node: <err>`. Batch answers 201 / 206 partial / 400 all failed.
  The entry's state is what the stand-in's broker (`broker.py`) found by really calling its ML node;
  `onboarding` (after v0.2.14) comes from the epoch clock.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gonka_operator.simulator.epoch import EpochClock

GENERATIONS = ("2025-08", "latest")
LEGACY = "2025-08"
DEFAULT_MODELS = ("Qwen/Qwen3-32B-FP8", "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8")
HF_COMMIT = re.compile(r"^[0-9a-f]{40}$")
RESERVED_OVERRIDE_ARGS = ("--model", "--revision", "--served-model-name")

# Field order of REFERENCE.md §4; value type of the scalar ones.
_SCALARS: tuple[tuple[str, type], ...] = (
    ("id", str),
    ("host", str),
    ("inference_port", int),
    ("poc_port", int),
    ("inference_segment", str),
    ("poc_segment", str),
    ("max_concurrent", int),
)


class ApiError(Exception):
    """An error answer: HTTP status and JSON body (`{"error": ...}` unless stated otherwise)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": message, **extra}


def _timestamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_config(raw: Any) -> dict[str, Any]:
    """Bind a request body like Go's encoding/json: missing fields are zero, wrong types are 400."""
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid request body: expected a JSON object")
    config: dict[str, Any] = {}
    for name, kind in _SCALARS:
        value = raw.get(name)
        if value is None:
            value = kind()
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ApiError(400, f"invalid request body: {name} must be of type {kind.__name__}")
        config[name] = value
    models = raw.get("models") or {}
    hardware = raw.get("hardware") or []
    if not isinstance(models, dict) or not isinstance(hardware, list):
        raise ApiError(400, "invalid request body: models must be an object, hardware a list")
    config["models"] = {}
    for model, spec in models.items():
        args = spec.get("args") if isinstance(spec, dict) else None
        args = [] if args is None else args
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ApiError(400, f"invalid request body: models[{model}].args must be a list of strings")
        config["models"][model] = {"args": list(args)}
        override = spec.get("model_override") if isinstance(spec, dict) else None
        if override is not None:  # later api: per-model {hf_repo, hf_commit} (apiconfig.ModelOverride)
            if not isinstance(override, dict):
                raise ApiError(400, f"invalid request body: models[{model}].model_override must be an object")
            config["models"][model]["model_override"] = {
                "hf_repo": str(override.get("hf_repo") or ""),
                "hf_commit": str(override.get("hf_commit") or ""),
            }
    config["hardware"] = []
    for item in hardware:
        kind_, count = (item.get("type", ""), item.get("count", 0)) if isinstance(item, dict) else (0, "")
        if not isinstance(kind_, str) or isinstance(count, bool) or not isinstance(count, int):
            raise ApiError(400, "invalid request body: hardware items are {type: string, count: int}")
        config["hardware"].append({"type": kind_, "count": count})
    return config


def basic_errors(c: dict[str, Any]) -> list[str]:
    """`apiconfig.ValidateInferenceNodeBasic` (v0.2.14): every problem, in upstream's order and words."""
    errors: list[str] = []
    if not c["id"].strip():
        errors.append("node id is required and cannot be empty")
    if not c["host"].strip():
        errors.append("host is required and cannot be empty")
    for port in ("inference_port", "poc_port"):
        if not 1 <= c[port] <= 65535:
            errors.append(f"{port} must be between 1 and 65535, got {c[port]}")
    if c["max_concurrent"] <= 0:
        errors.append(f"max_concurrent must be greater than 0, got {c['max_concurrent']}")
    if not c["models"]:
        errors.append("at least one model must be specified")
    for model_id, model in c["models"].items():
        override = model.get("model_override")
        if override is None:
            continue
        if not override["hf_repo"].strip():
            errors.append(f"model {model_id} override hf_repo is required")
        commit = override["hf_commit"]
        if not commit.strip():
            errors.append(f"model {model_id} override hf_commit is required")
        elif commit != commit.strip() or not HF_COMMIT.match(commit):
            errors.append(f"model {model_id} override hf_commit must be a 40-character lowercase hexadecimal "
                          "commit hash")
        for arg in model["args"]:
            key = arg.split("=", 1)[0]
            if key in RESERVED_OVERRIDE_ARGS:
                errors.append(f"model {model_id} override cannot use reserved argument {key}")
    return errors


@dataclass
class NodeRuntime:
    """What the broker knows about one entry (`broker.NodeState` of `decentralized-api/broker/broker.go`)."""

    intended_status: str = "UNKNOWN"
    current_status: str = "UNKNOWN"
    poc_intended_status: str = "IDLE"
    poc_current_status: str = "IDLE"
    failure_reason: str = ""
    status_at: float = 0.0
    forced: bool = False  # /debug/nodes/{id}/fail: sticky until /recover, the broker leaves it alone
    ml_node_version: str = ""
    joined_poc_start: int = 0  # entries registered inside a PoC window join the next one
    epoch_ml_nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def set(self, status: str, poc: str | None, at: float, reason: str | None = None) -> None:
        changed = status != self.current_status or (poc is not None and poc != self.poc_current_status)
        self.current_status = status
        if poc is not None:
            self.poc_current_status = poc
        if reason is not None:
            self.failure_reason = reason
        if changed:
            self.status_at = at


@dataclass
class _Node:
    config: dict[str, Any]
    node_num: int
    since: float
    enabled: bool = True
    admin_epoch: int = 0
    failure_reason: str = ""
    failed_at: float | None = None
    runtime: NodeRuntime = field(default_factory=NodeRuntime)


class Registry:
    """Live nodes, the api's saved config, and the governance model list of one stand-in."""

    def __init__(
        self,
        generation: str = "latest",
        models: Iterable[str] = DEFAULT_MODELS,
        *,
        state_delay: float = 1.0,
        epoch: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if generation not in GENERATIONS:
            raise ValueError(f"generation must be one of {GENERATIONS}, not {generation!r}")
        self.generation = generation
        self.models = list(models)
        self.state_delay = state_delay
        self.epoch = epoch
        self.epoch_clock: EpochClock | None = None  # set by the Simulator (latest)
        self.participant_state = "ACTIVE_PARTICIPATING"
        self._clock = clock
        self._nodes: dict[str, _Node] = {}
        self._saved: list[dict[str, Any]] = []
        self._next_num = 1

    @property
    def legacy(self) -> bool:
        return self.generation == LEGACY

    def now(self) -> float:
        return self._clock()

    def reset(self) -> None:
        self._nodes.clear()
        self._saved.clear()
        self._next_num = 1

    # -- reads ------------------------------------------------------------------------------------

    def node_ids(self) -> list[str]:
        return list(self._nodes)

    def get(self, node_id: str) -> _Node | None:
        return self._nodes.get(node_id)

    def by_num(self, node_num: int) -> _Node | None:
        return next((n for n in self._nodes.values() if n.node_num == node_num), None)

    def entries(self) -> list[dict[str, Any]]:
        """The `GET nodes` answer."""
        now = self._clock()
        out = []
        for node in self._nodes.values():
            body = {**node.config, "node_num": node.node_num}
            entry: dict[str, Any] = {"node": body, "state": self._state(node, now)}
            if not self.legacy:
                entry["onboarding"] = self._onboarding(node)
            out.append(entry)
        return out

    def saved_config(self) -> list[dict[str, Any]]:
        """What the api would write to its config file (duplicates included, 2025-08)."""
        return [dict(c) for c in self._saved]

    def _state(self, node: _Node, now: float) -> dict[str, Any]:
        if self.legacy:
            return self._legacy_state(node, now)
        rt = node.runtime
        models = list(node.config["models"])
        return {
            "intended_status": rt.intended_status,
            "current_status": rt.current_status,
            "poc_intended_status": rt.poc_intended_status,
            "poc_current_status": rt.poc_current_status,
            "lock_count": 0,
            "failure_reason": rt.failure_reason,
            "status_timestamp": _timestamp(rt.status_at or node.since),
            "admin_state": {"enabled": node.enabled, "epoch": node.admin_epoch},
            "epoch_models": {m: {"id": m} for m in models},
            "epoch_ml_nodes": {m: dict(v) for m, v in rt.epoch_ml_nodes.items()},
            "ml_node_version": rt.ml_node_version,
            "poc_validation_inference": False,
            "preserved_models": None,
        }

    def _legacy_state(self, node: _Node, now: float) -> dict[str, Any]:
        if node.failed_at is not None:
            current, changed = "FAILED", node.failed_at
        elif now - node.since >= self.state_delay:
            current, changed = "INFERENCE", node.since + self.state_delay
        else:
            current, changed = "UNKNOWN", node.since
        models = list(node.config["models"])
        serving = current == "INFERENCE"
        return {
            "intended_status": "INFERENCE",
            "current_status": current,
            "poc_intended_status": "IDLE",
            "poc_current_status": "IDLE",
            "lock_count": 0,
            "failure_reason": node.failure_reason,
            "status_timestamp": _timestamp(changed),
            "admin_state": {"enabled": node.enabled, "epoch": node.admin_epoch},
            "epoch_models": {m: {"id": m} for m in models} if serving else None,
            "epoch_ml_nodes": {
                m: {"node_id": node.config["id"], "poc_weight": 10, "timeslot_allocation": [True, False]}
                for m in models
            }
            if serving
            else None,
        }

    def _onboarding(self, node: _Node) -> dict[str, Any]:
        """`onboarding` of a `GET nodes` item (after v0.2.14, admin `onboarding_response.go`; the
        mapping from the entry's state to `mlnode_state` is the stand-in's reading of it)."""
        rt = node.runtime
        timing = self.epoch_clock.timing() if self.epoch_clock is not None else {}
        weight = sum(int(v.get("poc_weight", 0)) for v in rt.epoch_ml_nodes.values())
        if rt.current_status == "FAILED":
            state, message = "TEST_FAILED", f"ML node is not working: {rt.failure_reason}"
            guidance = "Check that the ML node answers on its PoC port (through its proxy) and restart it."
        elif rt.current_status in ("INFERENCE", "POC") and weight == 0:
            state, message = "WAITING_FOR_POC", "ML node is ready and waits for the next PoC"
            guidance = "Keep the ML node online until the PoC starts."
        elif rt.current_status in ("INFERENCE", "POC"):
            state, message = "WAITING_FOR_POC", f"ML node has PoC weight {weight}"
            guidance = ""
        else:
            state, message = "TESTING", "ML node is being checked"
            guidance = "Wait for the check to finish."
        return {
            "participant_state": self.participant_state,
            "mlnode_state": state,
            "timing": timing,
            "user_message": message,
            "guidance": guidance,
        }

    # -- writes -----------------------------------------------------------------------------------

    def register(self, raw: Any, path_id: str | None = None) -> dict[str, Any]:
        """POST nodes (and, latest only, PUT nodes/{id}: the body's id wins, the path's fills a gap)."""
        config = parse_config(raw)
        if path_id is not None and not config["id"]:
            config["id"] = path_id
        if self.legacy:
            return self._register_legacy(config)
        return self._register_latest(config)

    def register_batch(self, raw: Any) -> tuple[int, Any]:
        """POST nodes/batch → (status, body)."""
        if not isinstance(raw, list):
            raise ApiError(400, "invalid request body: expected a JSON array")
        done: list[dict[str, Any]] = []
        errors: list[str] = []
        for i, item in enumerate(raw):
            try:
                done.append(self.register(item))
            except ApiError as exc:
                node_id = item.get("id", "") if isinstance(item, dict) else ""
                errors.append(f"node[{i}] (id: {node_id}): {exc}")
        if self.legacy or not errors:
            return 201, done
        if not done:
            return 400, {"error": "all nodes failed validation", "errors": errors}
        return 206, {"nodes": done, "errors": errors}

    def delete(self, node_id: str) -> bool:
        removed = self._nodes.pop(node_id, None) is not None
        self._sync_saved()  # the real api rewrites its config from the live list on delete
        return removed

    def set_enabled(self, node_id: str, enabled: bool) -> None:
        node = self._nodes.get(node_id)
        if node is None:
            raise ApiError(404, f"node not found: {node_id}")
        node.enabled = enabled
        node.admin_epoch = self.epoch_clock.epoch_index if self.epoch_clock is not None else self.epoch

    def fail(self, node_id: str, reason: str) -> None:
        node = self._nodes.get(node_id)
        if node is None:
            raise ApiError(404, f"node not found: {node_id}")
        node.failed_at, node.failure_reason = self._clock(), reason
        node.runtime.forced = True
        node.runtime.set("FAILED", None, self._clock(), reason)

    def recover(self, node_id: str) -> None:
        node = self._nodes.get(node_id)
        if node is None:
            raise ApiError(404, f"node not found: {node_id}")
        node.failed_at, node.failure_reason, node.since = None, "", self._clock()
        node.runtime = NodeRuntime(ml_node_version=node.runtime.ml_node_version,
                                   joined_poc_start=node.runtime.joined_poc_start)

    def _register_legacy(self, config: dict[str, Any]) -> dict[str, Any]:
        if any(m not in self.models for m in config["models"]):
            raise ApiError(500, "error creating new node")
        old = self._nodes.get(config["id"])
        num = old.node_num if old is not None else self._take_num()
        self._nodes[config["id"]] = _Node(config, num, self._clock())
        self._saved.append(dict(config))  # the quirk: an existing id is appended again
        return config

    def _register_latest(self, config: dict[str, Any]) -> dict[str, Any]:
        old = self._nodes.get(config["id"]) if config["id"].strip() else None
        if old is None:
            try:
                self._validate(config, exclude=config["id"])
                config["models"] = {m: v for m, v in config["models"].items() if m in self.models}
                if not config["models"]:
                    raise ApiError(400, f"node {config['id']} has no governance-valid models")
            except ApiError as exc:
                raise ApiError(400, f"failed to create node: {exc}") from exc
            node = _Node(config, self._take_num(), self._clock())
            clock = self.epoch_clock
            if clock is not None:
                node.admin_epoch = clock.epoch_index
                clock.sync()
                node.runtime.joined_poc_start = clock.poc_start + (clock.epoch_length if clock.in_poc_window else 0)
            self._nodes[config["id"]] = node
        else:
            try:
                self._validate(config, exclude=config["id"])
                for model in config["models"]:
                    if model not in self.models:
                        raise ApiError(500, f"model {model} is not a valid governance model")
            except ApiError as exc:
                raise ApiError(500, f"failed to update node: {exc}") from exc
            if old.config != config:
                old.config = config  # runtime state is kept (UpdateNode preserves it)
        self._sync_saved()
        return config

    def _validate(self, c: dict[str, Any], exclude: str) -> None:
        """`Broker.validateInferenceNode`: basic checks + host+port duplicates, one joined message."""
        errors = basic_errors(c)
        for kind, port in (("inference", "inference_port"), ("PoC", "poc_port")):
            for other_id, other in self._nodes.items():
                if other_id == exclude:
                    continue
                if other.config["host"] == c["host"] and other.config[port] == c[port]:
                    errors.append(f"duplicate {kind} host+port combination: {c['host']}:{c[port]} "
                                  f"(already used by node '{other_id}')")
                    break
        if errors:
            raise ApiError(400, "validation failed: " + "; ".join(errors))

    def _take_num(self) -> int:
        self._next_num += 1
        return self._next_num - 1

    def _sync_saved(self) -> None:
        self._saved = [dict(n.config) for n in self._nodes.values()]
