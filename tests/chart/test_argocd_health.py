"""The Argo CD health checks (charts/gonka-operator/argocd/resource_customizations/gonka.ai/<Kind>/)
in Argo CD's own Lua VM (gopher-lua, Lua 5.1, via tests/chart/lua_health.py): upstream's
health_test.yaml harness with testdata for every state the operator writes, the argocd-cm mode
(standard libraries closed), the controller's view of terminating objects, and sample statuses."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from lua_health import CUSTOMIZATIONS, KINDS, SCRIPTS, SNIPPET, evaluate, harness, health

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "gonka_operator"

# Every Ready reason the operator writes, and the health Argo CD shows for Ready=False with it.
DEGRADED = {"Rejected", "IdConflict", "InsufficientGPU", "Unschedulable", "ApplyFailed", "AdminUnreachable",
            "NetworkNodeNotFound", "NodeFailed", "PreloadFailed"}
PROGRESSING = {"Progressing", "Pending", "NetworkNodeNotReady", "DeregistrationPending", "WaitingForPods",
               "WaitingForCache", "WaitingForWorkload"}
HEALTHY_ONLY = {"Ready", "Available", "External", "Registered", "Disabled", "AsExpected", "Reconciled"}


# Reasons of the other conditions the scripts read (InferenceNode UpdatePending and Registered, the
# NetworkNode's host conditions), and the health each gives an object that is otherwise Ready.
OTHER = {
    "PoCInProgress": "Progressing", "WaitingForSibling": "Progressing",  # UpdatePending=True: a held change
    "UpToDate": "Healthy",  # UpdatePending=False
    "Draining": "Progressing",  # Registered=True during deletion (deletionMessage)
    "Passed": "Healthy", "ReportUnavailable": "Healthy", "NotReported": "Healthy",  # host conditions
    "CatchingUp": "Progressing",  # ChainSynced=False
}
HOST = {"KeysReady": "Degraded", "PermissionsGranted": "Healthy", "ActiveInEpoch": "Healthy",
        "ChainSynced": "Progressing"}  # the health for <Type>=False (Unknown: Healthy, no effect)


def check_reasons() -> dict[str, str]:
    """The host conditions' reasons built from setup-report check ids (`_camel(id) + "Failed"`), each
    mapped to its condition type; the suffixes are read from host_status.py, the ids from its CHECKS."""
    from gonka_operator import host_status
    text = (PACKAGE / "host_status.py").read_text()
    suffixes = set(re.findall(r'Cond\(\w+, \w+, _camel\([^\n]*\) \+ "(\w+)"', text))
    assert {"Failed", "Unavailable"} <= suffixes  # the parser works
    return {host_status._camel(i) + suffix: ctype for ctype, ids in host_status.CHECKS.items()
            for i in ids for suffix in suffixes}


def operator_reasons() -> set[str]:
    """The condition reasons in the operator's source (status reducers, registry, poller, use cases)."""
    text = "\n".join(f.read_text() for f in sorted(PACKAGE.glob("*.py")))
    found = set(re.findall(r'Facts\(\w+, "(\w+)"', text))
    found |= set(re.findall(r'Cond\([\w"]+, [^,]+, "(\w+)"', text))  # Cond("Ready", …) and Cond(ctype, …)
    for line in text.splitlines():  # `Cond(..., "A" if x else "B", ...)`, `reason = "A" if x else "B"`
        if "Cond(" in line or "Facts(" in line or re.search(r"\breason\b", line):
            for pair in re.findall(r'"(\w+)" if [^\n]+ else "(\w+)"', line):
                found |= set(pair)
    # module constants used as a reason: `Facts(True, disruption.DRAINING, …)`, `reason = POC_IN_PROGRESS`
    constants = dict(re.findall(r'^([A-Z][A-Z_]+) = "(\w+)"$', text, re.M))
    used = re.findall(r'(?:Facts\(\w+, |Cond\([\w"]+, \w+, |\breason = )(?:\w+\.)?([A-Z][A-Z_]+)\b', text)
    found |= {constants[name] for name in used if name in constants}
    return (found | set(check_reasons())) - {"Normal", "Warning"}  # Event types (`"Normal" if … else "Warning"`)


def test_every_operator_reason_has_a_verdict() -> None:
    reasons = operator_reasons()
    assert {"Rejected", "AdminUnreachable", "InsufficientGPU", "ApplyFailed"} <= reasons  # the parser works
    assert {"PoCInProgress", "Draining", "CatchingUp", "PermissionsGrantedFailed"} <= reasons
    unknown = reasons - DEGRADED - PROGRESSING - HEALTHY_ONLY - set(OTHER) - set(check_reasons())
    assert not unknown, f"new condition reasons: decide their Argo CD health in the Lua scripts: {unknown}"


# --- upstream's format: health_test.yaml + testdata/, run by Argo CD's VM -------------------------------

def cases() -> list[tuple[str, str]]:
    out = []
    for kind in KINDS:
        tests = yaml.safe_load((CUSTOMIZATIONS / "gonka.ai" / kind / "health_test.yaml").read_text())["tests"]
        out += [(kind, t["inputPath"]) for t in tests]
    return out


def load_testdata(kind: str, input_path: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((CUSTOMIZATIONS / "gonka.ai" / kind / input_path).read_text())
    return body


@functools.cache
def harness_results() -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["dir"], r["inputPath"], r["mode"]): r for r in harness()}


def controller_view(want: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """What the application-controller shows for a check's verdict: for a terminating object, the
    check's deletionMessage, else "Pending deletion" (docs/operator-manual/health.md, Terminating resources)."""
    meta = obj["metadata"]
    if not meta.get("deletionTimestamp"):
        return want
    if want.get("deletionMessage"):
        return {"status": want["status"], "message": want["deletionMessage"]}
    finalizers = meta.get("finalizers") or []
    message = "Pending deletion" + ("; blocked by finalizers: " + ", ".join(finalizers) if finalizers else "")
    return {"status": "Progressing", "message": message}


@pytest.mark.parametrize(("kind", "input_path"), cases())
@pytest.mark.parametrize("mode", ["upstream", "argocd-cm", "controller"])
def test_health_test_yaml_in_argocd_vm(kind: str, input_path: str, mode: str) -> None:
    result = harness_results()[(f"gonka.ai/{kind}", input_path, mode)]
    want = result["want"]
    if mode == "controller":
        want = controller_view(want, load_testdata(kind, input_path))
    assert result["got"] == want


def test_harness_ran_every_case_in_every_mode() -> None:
    assert sorted(harness_results()) == sorted((f"gonka.ai/{kind}", path, mode) for kind, path in cases()
                                               for mode in ("upstream", "argocd-cm", "controller"))


def test_testdata_covers_every_reason_the_operator_writes() -> None:
    seen = set()
    for kind, path in cases():
        seen |= {c["reason"] for c in (load_testdata(kind, path).get("status") or {}).get("conditions", [])}
    generated = check_reasons()  # the scripts key these by condition type: one testdata per type and suffix
    missing = operator_reasons() - seen - set(generated)
    assert not missing, f"add testdata (and a health_test.yaml entry) for: {missing}"
    families = {(ctype, reason[-11:] == "Unavailable") for reason, ctype in generated.items()}
    covered = {(ctype, reason[-11:] == "Unavailable") for reason, ctype in generated.items() if reason in seen}
    assert families == covered, f"add testdata for a <CheckId>Failed/Unavailable of: {families - covered}"


def test_testdata_covers_every_health_and_the_lifecycle() -> None:
    for kind in KINDS:
        tests = yaml.safe_load((CUSTOMIZATIONS / "gonka.ai" / kind / "health_test.yaml").read_text())["tests"]
        assert {t["healthStatus"]["status"] for t in tests} == {"Healthy", "Progressing", "Degraded"}
        objects = [load_testdata(kind, t["inputPath"]) for t in tests]
        assert any("status" not in o for o in objects)  # before the operator's first write
        assert any(o["metadata"].get("deletionTimestamp") for o in objects)
        assert any((o.get("status") or {}).get("observedGeneration", 0) < o["metadata"].get("generation", 0)
                   for o in objects)


# --- the engine is Argo CD's: Lua 5.1, libraries closed in argocd-cm mode ---------------------------------

def probe_snippet(tmp_path: Path, script: str, open_libs: bool) -> Path:
    data = {"resource.customizations.health.example.com_Probe": script}
    if open_libs:
        data["resource.customizations.useOpenLibs.example.com_Probe"] = "true"
    path = tmp_path / "argocd-cm.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "data": data}))
    return path


PROBE = {"apiVersion": "example.com/v1", "kind": "Probe", "metadata": {"name": "p"}}


def test_lua_5_4_floor_division_is_a_syntax_error(tmp_path: Path) -> None:
    script = 'return {status = "Healthy", message = tostring(7 // 2)}'
    got = evaluate([(None, PROBE)], probe_snippet(tmp_path, script, open_libs=True))[0]["argocd-cm"]
    assert "syntax error" in got.get("error", ""), got  # Lua 5.4 (lupa) would answer "3"


def test_string_library_needs_use_open_libs(tmp_path: Path) -> None:
    script = 'return {status = "Healthy", message = string.format("%d GPUs", 8)}'
    closed = evaluate([(None, PROBE)], probe_snippet(tmp_path, script, open_libs=False))[0]["argocd-cm"]
    assert "string" in closed.get("error", ""), closed
    opened = evaluate([(None, PROBE)], probe_snippet(tmp_path, script, open_libs=True))[0]["argocd-cm"]
    assert opened == {"status": "Healthy", "message": "8 GPUs"}


def test_argocd_cm_snippet_carries_the_scripts_verbatim_without_open_libs() -> None:
    snippet = yaml.safe_load(SNIPPET.read_text())
    assert snippet["kind"] == "ConfigMap" and snippet["metadata"]["name"] == "argocd-cm"
    assert snippet["data"] == {f"resource.customizations.health.gonka.ai_{kind}": SCRIPTS[kind].read_text()
                               for kind in KINDS}


# --- sample statuses (the earlier lupa tests, now in Argo CD's VM) --------------------------------------

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


def host_condition(ctype: str, status: str, reason: str, message: str = "why") -> dict[str, Any]:
    return {"type": ctype, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize("reason", [*sorted(check_reasons()), "CatchingUp", "ReportUnavailable", "NotReported"])
def test_network_node_host_condition_by_reason(reason: str) -> None:
    """Ready=True plus one host condition: False gives HOST[type] (KeysReady Degraded, ChainSynced
    Progressing, PermissionsGranted/ActiveInEpoch Healthy with the message); Unknown changes nothing."""
    ctype = check_reasons().get(reason, "ChainSynced")
    status = "False" if reason.endswith("Failed") or reason == "CatchingUp" else "Unknown"
    verdict = health("NetworkNode", obj(conditions=[ready("True", "Ready", "all good"),
                                                    host_condition(ctype, status, reason)]))
    if status == "Unknown":
        assert verdict == {"status": "Healthy", "message": "all good"}
    elif HOST[ctype] == "Healthy":
        assert verdict == {"status": "Healthy", "message": f"all good; {ctype}: {reason}: why"}
    else:
        assert verdict == {"status": HOST[ctype], "message": f"{ctype}: {reason}: why"}


def test_network_node_host_conditions_passed_keep_it_healthy() -> None:
    conditions = [ready("True", "Ready", "all good"), *(host_condition(t, "True", "Passed") for t in HOST)]
    assert health("NetworkNode", obj(conditions=conditions)) == {"status": "Healthy", "message": "all good"}


def test_network_node_host_conditions_wait_for_ready() -> None:
    """Before Ready the pods decide; a Degraded=True still wins over a catching-up chain."""
    conditions = [ready("False", "WaitingForPods"), host_condition("KeysReady", "False", "WarmKeyInKeyringFailed")]
    assert health("NetworkNode", obj(conditions=conditions)) == {"status": "Progressing",
                                                                 "message": "WaitingForPods: details"}
    conditions = [ready("True", "Ready"), host_condition("ChainSynced", "False", "CatchingUp"),
                  {"type": "Degraded", "status": "True", "reason": "ApplyFailed", "message": "port taken"}]
    assert health("NetworkNode", obj(conditions=conditions))["status"] == "Degraded"


@pytest.mark.parametrize("reason", ["PoCInProgress", "WaitingForSibling"])
def test_inference_node_held_change_is_progressing(reason: str) -> None:
    conditions = [ready("True", "Ready"), host_condition("UpdatePending", "True", reason, "held until Inference")]
    assert OTHER[reason] == "Progressing"
    assert health("InferenceNode", obj(conditions=conditions)) == {"status": "Progressing",
                                                                   "message": f"{reason}: held until Inference"}
    conditions[1]["status"] = "False"  # shown False once applied: no effect
    conditions[1]["reason"] = "UpToDate"
    assert health("InferenceNode", obj(conditions=conditions)) == {"status": "Healthy", "message": "details"}


def test_inference_node_failure_wins_over_a_held_change() -> None:
    conditions = [ready("False", "NodeFailed"), host_condition("UpdatePending", "True", "PoCInProgress")]
    assert health("InferenceNode", obj(conditions=conditions)) == {"status": "Degraded",
                                                                   "message": "NodeFailed: details"}


def test_inference_node_draining_delete_says_so() -> None:
    body = obj(conditions=[ready("True", "Ready"), host_condition("Registered", "True", "Draining", "in PoC")])
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    verdict = evaluate([(SCRIPTS["InferenceNode"], {"kind": "InferenceNode", **body})])[0]["argocd-cm"]
    assert verdict == {"status": "Progressing",
                       "deletionMessage": "Draining n before removing it from the admin registry: in PoC"}
