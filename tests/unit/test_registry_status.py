"""registry_status: one `GET nodes` item (exact upstream shapes) → the CR's status.registry block."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from gonka_operator.admin import NodeEntry
from gonka_operator.registry_status import registry_status

NOW = datetime(2026, 12, 1, 12, 0, 10, tzinfo=UTC)
NODE = {"id": "gpu-1", "host": "gpu-1-mlnode.hosts.svc.cluster.local", "inference_port": 5050, "poc_port": 8080,
        "inference_segment": "", "poc_segment": "", "max_concurrent": 500, "node_num": 4,
        "models": {"Qwen/Qwen3-32B-FP8": {"args": []}}, "hardware": [{"type": "H100", "count": 1}]}


def entry(**item: Any) -> NodeEntry:
    return TypeAdapter(NodeEntry).validate_python({"node": NODE, **item})


def test_v0214_item_with_onboarding() -> None:
    # shape of decentralized-api admin GET /nodes after v0.2.14 (NodeWithOnboarding)
    item = entry(
        state={"intended_status": "INFERENCE", "current_status": "INFERENCE", "poc_intended_status": "IDLE",
               "poc_current_status": "IDLE", "lock_count": 0, "failure_reason": "",
               "status_timestamp": "2026-12-01T11:59:00Z", "admin_state": {"enabled": True, "epoch": 41},
               "ml_node_version": "v3.0.12-post3", "poc_validation_inference": False, "preserved_models": None,
               "epoch_models": {"Qwen/Qwen3-32B-FP8": {"id": "Qwen/Qwen3-32B-FP8"}},
               "epoch_ml_nodes": {"Qwen/Qwen3-32B-FP8": {"node_id": "gpu-1", "throughput": 310, "poc_weight": 1200},
                                  "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8": {"node_id": "gpu-1", "poc_weight": 34}}},
        onboarding={"participant_state": "ACTIVE_PARTICIPATING", "mlnode_state": "WAITING_FOR_POC",
                    "timing": {"current_phase": "Inference", "blocks_until_next_poc": 700,
                               "seconds_until_next_poc": 4195, "should_be_online": False},
                    "user_message": "Participant is active in the current epoch"})
    assert registry_status(item, NOW) == {
        "currentStatus": "INFERENCE", "intendedStatus": "INFERENCE", "pocStatus": "IDLE", "enabled": True,
        "mlNodeVersion": "v3.0.12-post3", "pocWeight": 1234,
        "onboarding": {"participantState": "ACTIVE_PARTICIPATING", "mlnodeState": "WAITING_FOR_POC",
                       "phase": "Inference", "nextPoCAt": "2026-12-01T13:10:00Z", "shouldBeOnline": False,
                       "userMessage": "Participant is active in the current epoch"},
    }


def test_countdown_becomes_a_moment_that_does_not_change_between_polls() -> None:
    def at(now: datetime, seconds: int) -> object:
        block = registry_status(entry(onboarding={"timing": {"seconds_until_next_poc": seconds}}), now)
        return block["onboarding"]

    later = datetime(2026, 12, 1, 12, 0, 40, tzinfo=UTC)
    assert at(NOW, 4195) == at(later, 4165)  # 30 s later, 30 s less: same block, no status write


def test_failed_2025_08_item_without_new_fields() -> None:
    item = entry(state={"intended_status": "INFERENCE", "current_status": "FAILED", "poc_current_status": "IDLE",
                        "failure_reason": "connection refused", "admin_state": {"enabled": False, "epoch": 3},
                        "epoch_ml_nodes": None})
    assert registry_status(item, NOW) == {"currentStatus": "FAILED", "intendedStatus": "INFERENCE",
                                          "pocStatus": "IDLE", "failureReason": "connection refused",
                                          "enabled": False}


def test_not_in_the_epoch_weighs_zero_and_odd_values_are_tolerated() -> None:
    item = entry(state={"epoch_ml_nodes": {}, "ml_node_version": 3}, onboarding="not an object")
    assert registry_status(item, NOW) == {"pocWeight": 0}
    item = entry(state={"epoch_ml_nodes": {"m": {"poc_weight": "17"}, "n": {"poc_weight": None}, "o": 5}})
    assert registry_status(item, NOW) == {"pocWeight": 17}
    assert registry_status(entry(), NOW) == {}
