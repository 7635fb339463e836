"""The safety net for a kopf stall that the API-server restart test ran into (no cluster needed).

After an API server outage while kopf was adding its finalizer, kopf can leave an InferenceNode
idle without ever calling the reconcile handler (see `inference_node.wake_unhandled`). The poller
then touches such objects once per UNHANDLED_SECONDS, which gives kopf the event it waits for.
"""

from __future__ import annotations

from typing import Any

import pytest

from gonka_operator import inference_node
from gonka_operator.context import Context, InferenceRecord
from gonka_operator.settings import Settings

pytestmark = pytest.mark.faults


class RecordingKube:
    def __init__(self) -> None:
        self.annotated: list[tuple[str, str, dict[str, str]]] = []

    async def annotate(self, api_version: str, kind: str, namespace: str, name: str,
                       annotations: dict[str, str]) -> None:
        self.annotated.append((namespace, name, annotations))


def record(name: str, seen_at: float, *, handled: bool = False, deleting: bool = False) -> InferenceRecord:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    r = InferenceRecord(body={"metadata": meta, "spec": {}})
    r.seen_at, r.handled = seen_at, handled
    return r


async def test_only_long_unhandled_live_objects_are_touched_and_only_once_per_period() -> None:
    kube = RecordingKube()
    ctx = Context(settings=Settings(), kube=kube, admin=None)  # type: ignore[arg-type]
    limit = inference_node.UNHANDLED_SECONDS
    ctx.inference = {("ns", n): r for n, r in {
        "stuck": record("stuck", 0.0),
        "fresh": record("fresh", 100.0 - limit / 2),       # its event is recent: kopf may be on it
        "handled": record("handled", 0.0, handled=True),   # reconcile ran: nothing to wake
        "deleting": record("deleting", 0.0, deleting=True),  # the deletion handler owns it
    }.items()}

    assert await inference_node.wake_unhandled(ctx, now=100.0) == [("ns", "stuck")]
    assert [(ns, n, list(a)) for ns, n, a in kube.annotated] == [("ns", "stuck", [inference_node.TOUCH_ANNOTATION])]
    assert await inference_node.wake_unhandled(ctx, now=100.0 + limit / 2) == []  # not again right away
    assert await inference_node.wake_unhandled(ctx, now=101.0 + limit) == [("ns", "stuck"), ("ns", "fresh")]
