"""What memory costs, for `make bench` (issue 13): the import baseline of the operator, and per watched
kind the size of one object as an event brings it and as the operator keeps it.

Sizes are Python heap bytes (tracemalloc) of the parsed JSON, which is what the operator holds: a
kopf event carries the whole object (dicts and strings, several times the size of its JSON), the
operator's records keep only what status and drift need (handlers._plain, drift.on_child_event).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

from gonka_operator.handlers import _plain

Obj = dict[str, Any]

# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec, so a child started by the
# bench would report the bench's own peak.
IMPORT_BASELINE = """
import kopf, kubernetes.aio, aiohttp, httpx, pydantic
import gonka_operator.handlers
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(int(hwm.split()[1]) / 1024)
"""


def import_baseline_mib() -> float:
    """Peak RSS of a fresh interpreter that imported what `gonka-operator run` imports (kopf, the
    clients, every operator module) and nothing else: the floor under any N."""
    out = subprocess.run([sys.executable, "-c", IMPORT_BASELINE], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def heap_bytes(make: Callable[[], Any]) -> int:
    """Bytes allocated by `make()` that stay alive as long as its result does."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = make()
        size = tracemalloc.get_traced_memory()[0] - before
        del kept
        return size
    finally:
        tracemalloc.stop()


def kept_by_record(kind: str, obj: Obj) -> Any:
    """What an InferenceRecord keeps of one child (drift.on_child_event) or of its CR (the body)."""
    if kind == "InferenceNode":  # inference_node.record_for: the body without its status
        return {k: v for k, v in _plain(obj).items() if k != "status"}
    if kind == "Deployment":
        return {"status": obj.get("status", {}), "replicas": (obj.get("spec") or {}).get("replicas")}
    if kind == "Pod":  # only the scheduler's verdict while it cannot be placed: nothing for a running pod
        return [c for c in (obj.get("status") or {}).get("conditions") or []
                if c.get("type") == "PodScheduled" and c.get("status") == "False"]
    return (obj["kind"], obj["metadata"]["name"])  # Service, NetworkPolicy, PDB: only that it exists


def per_kind_costs(samples: dict[str, Obj]) -> dict[str, dict[str, int]]:
    """{kind: {"json": bytes of its JSON, "event": heap bytes of the parsed object, "kept": heap bytes
    the record keeps}} for one live object of each kind."""
    costs = {}
    for kind, obj in samples.items():
        text = json.dumps(obj)
        parsed = json.loads(text)
        costs[kind] = {"json": len(text), "event": heap_bytes(lambda t=text: json.loads(t)),  # type: ignore[misc]
                       "kept": heap_bytes(lambda k=kind, p=parsed: json.loads(json.dumps(kept_by_record(k, p))))}
    return costs
