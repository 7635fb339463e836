"""The Argo CD health checks (charts/gonka-operator/argocd/*.lua) in a real Lua interpreter, against
sample statuses of both kinds; the argocd-cm snippet carries exactly these scripts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from lua_health import ARGOCD, SCRIPTS, health

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "gonka_operator"

# Every Ready reason the operator writes, and the health Argo CD shows for Ready=False with it.
DEGRADED = {"Rejected", "InsufficientGPU", "Unschedulable", "ApplyFailed", "AdminUnreachable", "NetworkNodeNotFound"}
PROGRESSING = {"Progressing", "Pending", "NetworkNodeNotReady", "DeregistrationPending", "WaitingForPods"}
HEALTHY_ONLY = {"Ready", "Available", "External", "Registered", "Disabled", "AsExpected", "Reconciled"}


def operator_reasons() -> set[str]:
    """The condition reasons in the operator's source (status reducers and registry)."""
    text = "\n".join((PACKAGE / f).read_text() for f in ("status.py", "registry.py", "inference_node.py"))
    found = set(re.findall(r'Facts\(\w+, "(\w+)"', text))
    found |= set(re.findall(r'Cond\("\w+", [^,]+, "(\w+)"', text))
    for pair in re.findall(r'"(\w+)" if [^\n]+ else "(\w+)"', text):
        found |= set(pair)
    return found


def test_every_operator_reason_has_a_verdict() -> None:
    reasons = operator_reasons()
    assert {"Rejected", "AdminUnreachable", "InsufficientGPU", "ApplyFailed"} <= reasons  # the parser works
    unknown = reasons - DEGRADED - PROGRESSING - HEALTHY_ONLY
    assert not unknown, f"new condition reasons: decide their Argo CD health in the Lua scripts: {unknown}"


def obj(generation: int | None = 3, observed: int | None = 3, conditions: list[dict[str, Any]] | None = None,
        status: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "gonka.ai/v1alpha1", "metadata": {"name": "n", "namespace": "x"}}
    if generation is not None:
        body["metadata"]["generation"] = generation
    if status:
        body["status"] = {"conditions": conditions or []}
        if observed is not None:
            body["status"]["observedGeneration"] = observed
    return body


def ready(status: str, reason: str, message: str = "details") -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3}


KINDS = sorted(SCRIPTS)


@pytest.mark.parametrize("kind", KINDS)
def test_no_status_yet_is_progressing(kind: str) -> None:
    assert health(kind, obj(status=False))["status"] == "Progressing"
    assert health(kind, obj(conditions=[]))["status"] == "Progressing"


@pytest.mark.parametrize("kind", KINDS)
def test_old_generation_is_progressing_even_if_it_was_ready(kind: str) -> None:
    verdict = health(kind, obj(generation=4, observed=3, conditions=[ready("True", "Ready")]))
    assert verdict == {"status": "Progressing", "message": "Waiting for the operator to observe generation 4"}
    assert health(kind, obj(generation=4, observed=None, conditions=[ready("True", "Ready")]))["status"] == \
        "Progressing"


@pytest.mark.parametrize("kind", KINDS)
def test_ready_unknown_is_progressing(kind: str) -> None:
    verdict = health(kind, obj(conditions=[ready("Unknown", "Pending", "waiting for the registry")]))
    assert verdict == {"status": "Progressing", "message": "waiting for the registry"}


@pytest.mark.parametrize("kind", KINDS)
def test_ready_true_is_healthy(kind: str) -> None:
    verdict = health(kind, obj(conditions=[ready("True", "Ready", "all good")]))
    assert verdict == {"status": "Healthy", "message": "all good"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reason", sorted(DEGRADED | PROGRESSING))
def test_ready_false_by_reason(kind: str, reason: str) -> None:
    verdict = health(kind, obj(conditions=[ready("False", reason, "why")]))
    assert verdict == {"status": "Degraded" if reason in DEGRADED else "Progressing", "message": f"{reason}: why"}


def test_network_node_degraded_condition_wins() -> None:
    conditions = [ready("False", "WaitingForPods"),
                  {"type": "Degraded", "status": "True", "reason": "ApplyFailed", "message": "port taken"}]
    assert health("NetworkNode", obj(conditions=conditions)) == {"status": "Degraded",
                                                                 "message": "ApplyFailed: port taken"}
    conditions[1]["status"] = "False"
    assert health("NetworkNode", obj(conditions=conditions))["status"] == "Progressing"


def test_inference_node_with_other_conditions_first() -> None:
    conditions = [{"type": "WorkloadAvailable", "status": "False", "reason": "InsufficientGPU"},
                  {"type": "Registered", "status": "True", "reason": "Registered"}, ready("True", "Ready")]
    assert health("InferenceNode", obj(conditions=conditions))["status"] == "Healthy"


def test_argocd_cm_snippet_carries_the_scripts_verbatim() -> None:
    snippet = yaml.safe_load((ARGOCD / "argocd-cm-snippet.yaml").read_text())
    assert snippet["kind"] == "ConfigMap" and snippet["metadata"]["name"] == "argocd-cm"
    assert snippet["data"] == {f"resource.customizations.health.gonka.ai_{kind}": SCRIPTS[kind].read_text()
                               for kind in KINDS}
