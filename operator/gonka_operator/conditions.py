"""Status conditions the kubebuilder way: lastTransitionTime moves only when status flips."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Cond:
    """A condition as computed by a reducer, before it is merged with the previous ones."""

    type: str
    ok: bool | None  # None = Unknown
    reason: str
    message: str = ""

    @property
    def status(self) -> str:
        return "Unknown" if self.ok is None else str(self.ok)


def merge_conditions(previous: list[Obj], new: list[Cond], generation: int | None, now: str) -> list[Obj]:
    """New conditions in the order given; lastTransitionTime kept unless the status flipped."""
    old = {c.get("type"): c for c in previous or []}
    out = []
    for c in new:
        before = old.get(c.type)
        changed = before is None or before.get("status") != c.status
        out.append({
            "type": c.type, "status": c.status, "reason": c.reason, "message": c.message,
            "observedGeneration": generation,
            "lastTransitionTime": now if changed else before.get("lastTransitionTime", now) if before else now,
        })
    return out


def find(conditions: list[Obj] | None, ctype: str) -> Obj | None:
    return next((c for c in conditions or [] if c.get("type") == ctype), None)
