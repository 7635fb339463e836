"""The node registry of the network-node stand-in: the admin API semantics, without HTTP.

Both api generations of REFERENCE.md §4:
- `2025-08`: no validation beyond governance (unknown model → 500 "error creating new node"); POST
  of an existing id replaces the live entry and APPENDS a duplicate to the saved config (a DELETE
  rewrites the saved config from the live list, as the real api does); batch drops failures.
- `latest`: POST/PUT upsert with 400s for invalid bodies and unapproved models; batch answers
  201 / 206 partial / 400 all failed; the saved config always equals the live list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENERATIONS = ("2025-08", "latest")
LEGACY = "2025-08"
DEFAULT_MODELS = ("Qwen/Qwen3-32B-FP8", "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8")

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
    config["hardware"] = []
    for item in hardware:
        kind_, count = (item.get("type", ""), item.get("count", 0)) if isinstance(item, dict) else (0, "")
        if not isinstance(kind_, str) or isinstance(count, bool) or not isinstance(count, int):
            raise ApiError(400, "invalid request body: hardware items are {type: string, count: int}")
        config["hardware"].append({"type": kind_, "count": count})
    return config


@dataclass
class _Node:
    config: dict[str, Any]
    node_num: int
    since: float
    enabled: bool = True
    admin_epoch: int = 0
    failure_reason: str = ""
    failed_at: float | None = None


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
        self._clock = clock
        self._nodes: dict[str, _Node] = {}
        self._saved: list[dict[str, Any]] = []
        self._next_num = 1

    @property
    def legacy(self) -> bool:
        return self.generation == LEGACY

    def reset(self) -> None:
        self._nodes.clear()
        self._saved.clear()
        self._next_num = 1

    # -- reads ------------------------------------------------------------------------------------

    def entries(self) -> list[dict[str, Any]]:
        """The `GET nodes` answer."""
        now = self._clock()
        out = []
        for node in self._nodes.values():
            body = {**node.config, "node_num": node.node_num}
            entry: dict[str, Any] = {"node": body, "state": self._state(node, now)}
            if not self.legacy:  # later versions add fields a client must ignore
                body["version"] = ""
                entry["onboarding"] = {"participant_state": "ACTIVE", "user_message": ""}
            out.append(entry)
        return out

    def saved_config(self) -> list[dict[str, Any]]:
        """What the api would write to its config file (duplicates included, 2025-08)."""
        return [dict(c) for c in self._saved]

    def _state(self, node: _Node, now: float) -> dict[str, Any]:
        if node.failed_at is not None:
            current, changed = "FAILED", node.failed_at
        elif now - node.since >= self.state_delay:
            current, changed = "INFERENCE", node.since + self.state_delay
        else:
            current, changed = "UNKNOWN", node.since
        models = list(node.config["models"])
        serving = current == "INFERENCE"
        state: dict[str, Any] = {
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
        if not self.legacy:
            state |= {"ml_node_version": "3.0.12", "poc_validation_inference": False}
        return state

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
        node.admin_epoch = self.epoch

    def fail(self, node_id: str, reason: str) -> None:
        node = self._nodes.get(node_id)
        if node is None:
            raise ApiError(404, f"node not found: {node_id}")
        node.failed_at, node.failure_reason = self._clock(), reason

    def recover(self, node_id: str) -> None:
        node = self._nodes.get(node_id)
        if node is None:
            raise ApiError(404, f"node not found: {node_id}")
        node.failed_at, node.failure_reason, node.since = None, "", self._clock()

    def _register_legacy(self, config: dict[str, Any]) -> dict[str, Any]:
        if any(m not in self.models for m in config["models"]):
            raise ApiError(500, "error creating new node")
        old = self._nodes.get(config["id"])
        num = old.node_num if old is not None else self._take_num()
        self._nodes[config["id"]] = _Node(config, num, self._clock())
        self._saved.append(dict(config))  # the quirk: an existing id is appended again
        return config

    def _register_latest(self, config: dict[str, Any]) -> dict[str, Any]:
        self._validate(config)
        old = self._nodes.get(config["id"])
        if old is None:
            self._nodes[config["id"]] = _Node(config, self._take_num(), self._clock())
        elif old.config != config:
            old.config, old.since = config, self._clock()  # the ML node is reconfigured
            old.failed_at, old.failure_reason = None, ""
        self._sync_saved()
        return config

    def _validate(self, c: dict[str, Any]) -> None:
        if not c["id"].strip():
            raise ApiError(400, "node id is required")
        if not c["host"].strip():
            raise ApiError(400, "node host is required")
        for port in ("inference_port", "poc_port"):
            if not 1 <= c[port] <= 65535:
                raise ApiError(400, f"{port} must be between 1 and 65535, got {c[port]}")
        if c["max_concurrent"] <= 0:
            raise ApiError(400, f"max_concurrent must be greater than 0, got {c['max_concurrent']}")
        if not c["models"]:
            raise ApiError(400, "at least one model is required")
        for other in self._nodes.values():
            o = other.config
            if o["id"] == c["id"] or o["host"] != c["host"]:
                continue
            clash = {c["inference_port"], c["poc_port"]} & {o["inference_port"], o["poc_port"]}
            if clash:
                raise ApiError(400, f"host {c['host']}:{min(clash)} is already used by node {o['id']}")
        for model in c["models"]:
            if model not in self.models:
                raise ApiError(400, f"failed to create node: model {model} is not approved by governance")

    def _take_num(self) -> int:
        self._next_num += 1
        return self._next_num - 1

    def _sync_saved(self) -> None:
        self._saved = [dict(n.config) for n in self._nodes.values()]
