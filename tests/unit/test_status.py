"""Status reducers and condition bookkeeping."""

from __future__ import annotations

from gonka_operator.conditions import Cond, merge_conditions
from gonka_operator.drift import is_subset
from gonka_operator.status import Facts, inference_node_conditions, pending_reason, workload_facts


def test_transition_time_moves_only_on_flip() -> None:
    first = merge_conditions([], [Cond("Ready", False, "Waiting")], 1, "t1")
    same = merge_conditions(first, [Cond("Ready", False, "StillWaiting", "more")], 2, "t2")
    flipped = merge_conditions(same, [Cond("Ready", True, "Ready")], 3, "t3")
    assert first[0]["lastTransitionTime"] == "t1"
    assert same[0]["lastTransitionTime"] == "t1" and same[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "t3" and flipped[0]["status"] == "True"


def pod(message: str) -> dict[str, object]:
    return {"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                       "message": message}]}}


def test_scheduler_reason_reaches_the_status() -> None:
    msg = "0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity."
    assert pending_reason([pod(msg)]) == Facts(False, "InsufficientGPU", msg)
    other = "0/4 nodes are available: 4 node(s) had untolerated taint."
    assert pending_reason([pod(other)]) == Facts(False, "Unschedulable", other)
    dep = {"status": {"conditions": [{"type": "Available", "status": "False"}]}}
    assert workload_facts(False, dep, [pod(msg)]).reason == "InsufficientGPU"


def test_ready_needs_workload_and_registration() -> None:
    available = Facts(True, "Available")
    conds = inference_node_conditions([], 4, available, Facts(False, "Rejected", "model not approved"), "t")
    by_type = {c["type"]: c for c in conds}
    assert by_type["Ready"]["status"] == "False" and by_type["Ready"]["reason"] == "Rejected"
    assert by_type["Registered"]["message"] == "model not approved"
    assert all(c["observedGeneration"] == 4 for c in conds)
    conds = inference_node_conditions(conds, 5, available, Facts(True, "Registered"), "t2")
    assert {c["type"]: c["status"] for c in conds} == {"Ready": "True", "WorkloadAvailable": "True",
                                                       "Registered": "True"}


def test_external_node_needs_no_workload() -> None:
    assert workload_facts(True, None, []).ok is True


def test_subset_tolerates_server_defaults_and_normalised_quantities() -> None:
    desired = {"spec": {"replicas": 1, "template": {"containers": [{"resources": {"limits": {"cpu": "1000m"}}}]},
                        "hostAliases": []}}
    actual = {"spec": {"replicas": 1, "revisionHistoryLimit": 10,
                       "template": {"containers": [{"resources": {"limits": {"cpu": "1"}}, "imagePullPolicy": "x"}]}}}
    assert is_subset(desired, actual)
    actual["spec"]["replicas"] = 3
    assert not is_subset(desired, actual)


def test_merge_patch_removes_keys_that_became_empty() -> None:
    from gonka_operator.status import changed, merge_patch

    old = {"registry": {"currentStatus": "FAILED", "failureReason": "oom", "lastSeen": "t"}, "adminURL": "u"}
    new = {"registry": {"currentStatus": "INFERENCE", "lastSeen": "t"}}
    assert merge_patch(old, new) == {"registry": {"currentStatus": "INFERENCE", "failureReason": None},
                                     "adminURL": None}
    assert merge_patch(new, new) == {} and not changed(new, new)


def test_a_failed_registry_state_is_not_ready() -> None:
    from gonka_operator.context import InferenceRecord
    from gonka_operator.inference_node import compute_status

    body = {"metadata": {"name": "x", "namespace": "ns"},
            "spec": {"adminURL": "http://a:9200", "model": "m", "external": {"host": "h"}}}
    record = InferenceRecord(body=body, registration=Facts(True, "Registered", "ok"), observed_generation=1,
                             registry={"currentStatus": "FAILED", "failureReason": "vLLM crashed"})
    ready = compute_status(record)["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "NodeFailed")
    assert "vLLM crashed" in ready["message"]
    record.registry = {"currentStatus": "INFERENCE"}
    assert compute_status(record)["conditions"][0]["status"] == "True"
