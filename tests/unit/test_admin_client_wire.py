"""AdminClient on the wire, with `httpx.MockTransport`: what the stand-in cannot produce (malformed,
lenient and legacy answers, 404 fall-backs, error texts). Contract tests against the real stand-in
are in test_admin_client.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from test_admin_client import QWEN32, config

from gonka_operator.admin import (
    AdminClient,
    AdminRejected,
    AdminUnavailable,
    ModelArgs,
    ModelOverride,
)

Handler = Callable[[httpx.Request], httpx.Response]


def mock_admin(handler: Handler, **kwargs: Any) -> AdminClient:
    return AdminClient(httpx.AsyncClient(transport=httpx.MockTransport(handler)), **kwargs)


async def test_lenient_parsing_of_unknown_and_null_fields() -> None:
    answer = [
        {
            "node": {
                **config().to_body(),
                "node_num": 3,
                "version": "v2",
                "hardware": None,
                "models": {QWEN32: {"args": None}},
            },
            "state": {
                "current_status": "INFERENCE",
                "admin_state": {"enabled": False, "epoch": 7},
                "epoch_ml_nodes": {QWEN32: {"poc_weight": 12, "timeslot_allocation": [True], "future": 1}},
                "reconcile_info": {"Status": "X"},
                "preserved_models": None,
            },
            "onboarding": {"participant_state": "ACTIVE"},
        },
        {"node": {**config("n2").to_body()}},  # no state at all
    ]
    admin = mock_admin(lambda req: httpx.Response(200, json=answer))
    entries = await admin.list_nodes("http://api:9200")
    assert entries[0].node.node_num == 3 and entries[0].node.hardware == []
    assert entries[0].node.models[QWEN32].args == []
    assert entries[0].state.admin_state is not None and entries[0].state.admin_state.epoch == 7
    assert entries[0].state.epoch_ml_nodes is not None
    assert entries[0].state.epoch_ml_nodes[QWEN32].poc_weight == 12
    assert entries[1].state.current_status is None


async def test_malformed_list_fails_closed() -> None:
    admin = mock_admin(lambda req: httpx.Response(200, json=[{"node": {"host": "no id"}}]))
    with pytest.raises(AdminUnavailable, match="malformed"):
        await admin.list_nodes("http://api:9200")


async def test_put_404_switches_to_delete_then_post_and_ttl_reprobes() -> None:
    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(f"{req.method} {req.url.path}")
        if req.method == "PUT":
            return httpx.Response(404, text="404 page not found")
        if req.method == "DELETE":
            return httpx.Response(200, json=True)
        assert json.loads(req.content) == config(max_concurrent=1).to_body()
        return httpx.Response(200, json=json.loads(req.content))

    now = [0.0]
    admin = mock_admin(handler, legacy_ttl=100, clock=lambda: now[0])
    await admin.upsert("http://api:9200/", config(max_concurrent=1), config())
    assert seen == ["PUT /admin/v1/nodes/node1", "DELETE /admin/v1/nodes/node1", "POST /admin/v1/nodes"]
    seen.clear()
    await admin.upsert("http://api:9200", config(max_concurrent=1), None)
    assert seen == ["POST /admin/v1/nodes"]
    seen.clear()
    now[0] = 101.0  # the api may have upgraded itself: probe again
    await admin.upsert("http://api:9200", config(max_concurrent=1), None)
    assert seen == ["PUT /admin/v1/nodes/node1", "POST /admin/v1/nodes"]


async def test_4xx_and_5xx_carry_the_api_error_text() -> None:
    answers = {
        "PUT": httpx.Response(400, json={"error": "max_concurrent must be greater than 0"}),
        "DELETE": httpx.Response(503, json={"error": "chain not reachable"}),
        "GET": httpx.Response(502, text="<html>bad gateway</html>"),
    }
    admin = mock_admin(lambda req: answers[req.method])
    with pytest.raises(AdminRejected) as rejected:
        await admin.upsert("http://api:9200", config(), None)
    assert (rejected.value.status, rejected.value.message) == (400, "max_concurrent must be greater than 0")
    with pytest.raises(AdminUnavailable) as unavailable:
        await admin.delete("http://api:9200", "node1")
    assert unavailable.value.status == 503 and "503: chain not reachable" in unavailable.value.message
    with pytest.raises(AdminUnavailable, match="502: <html>bad gateway</html>"):
        await admin.list_nodes("http://api:9200")


UPDATE_REFUSED = ("failed to update node: validation failed: duplicate inference host+port combination: "
                  "10.0.0.1:5050 (already used by node 'a')")


@pytest.mark.parametrize("answer", [
    {"error": UPDATE_REFUSED},
    {"error": "failed to update node: validation failed: max_concurrent must be greater than 0; "
              "model Qwen/Qwen3-32B-FP8 override hf_commit must be a 40-character lowercase hexadecimal commit hash"},
    {"error": "failed to update node: node b has no governance-valid models"},
])
async def test_latest_update_500_that_refuses_the_body_is_a_rejection(answer: dict[str, str]) -> None:
    # decentralized-api node_handlers.go: an upsert of an existing id answers 500 "failed to update node: …"
    admin = mock_admin(lambda req: httpx.Response(500, json=answer))
    with pytest.raises(AdminRejected) as rejected:
        await admin.upsert("http://api:9200", config("b", host="10.0.0.1"), config("b"))
    assert (rejected.value.status, rejected.value.message) == (500, answer["error"])


async def test_other_500s_stay_unavailable() -> None:
    answers = iter([httpx.Response(500, json={"error": "failed to queue update command: broker is stopped"}),
                    httpx.Response(500, json={"error": "validation failed: x"})])
    admin = mock_admin(lambda req: next(answers))
    with pytest.raises(AdminUnavailable):
        await admin.upsert("http://api:9200", config(), config(max_concurrent=1))
    with pytest.raises(AdminUnavailable):  # reads are never refusals
        await admin.list_nodes("http://api:9200")


async def test_legacy_refused_post_restores_the_previous_entry() -> None:
    seen: list[tuple[str, Any]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        body = json.loads(req.content) if req.content else None
        seen.append((req.method, body))
        if req.method == "PUT":
            return httpx.Response(405, text="Method Not Allowed")
        if req.method == "DELETE":
            return httpx.Response(200, json=True)
        if body["models"] != config().to_body()["models"]:
            return httpx.Response(500, json={"error": "error creating new node"})
        return httpx.Response(200, json=body)

    admin = mock_admin(handler)
    new = config(models={"Kimi/K2.6": ModelArgs(args=[])})
    with pytest.raises(AdminRejected, match="error creating new node"):
        await admin.upsert("http://api:9200", new, config())
    assert [m for m, _ in seen] == ["PUT", "DELETE", "POST", "POST"]
    assert seen[-1][1] == config().to_body()  # the old entry, back


async def test_batch_style_nested_error_message() -> None:
    answer = {"error": {"error": "all nodes failed validation", "errors": ["node[0] (id: a): bad host"]}}
    admin = mock_admin(lambda req: httpx.Response(400, json=answer))
    with pytest.raises(AdminRejected) as rejected:
        await admin.upsert("http://api:9200", config(), None)
    assert rejected.value.message == "all nodes failed validation: node[0] (id: a): bad host"


async def test_model_override_is_sent_and_not_resent_by_an_api_that_does_not_echo_it() -> None:
    seen: list[tuple[str, Any]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        body = json.loads(req.content) if req.content else None
        seen.append((req.method, body))
        return httpx.Response(200, json=body)

    override = ModelOverride(hf_repo="host/custom-qwen", hf_commit="0123456789abcdef0123456789abcdef01234567")
    wanted = config(models={QWEN32: ModelArgs(args=[], model_override=override)})
    admin = mock_admin(handler)
    await admin.upsert("http://api:9200", wanted, config(models={QWEN32: ModelArgs(args=[])}))
    assert seen == [("PUT", wanted.to_body())]
    assert wanted.to_body()["models"][QWEN32]["model_override"] == {
        "hf_repo": "host/custom-qwen", "hf_commit": "0123456789abcdef0123456789abcdef01234567"}
    seen.clear()
    echoed_without = config(models={QWEN32: ModelArgs(args=[])})  # what GET shows on such an api
    await admin.upsert("http://api:9200", wanted, echoed_without)
    assert seen == []


async def test_legacy_api_never_sees_model_override() -> None:
    seen: list[tuple[str, Any]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        body = json.loads(req.content) if req.content else None
        seen.append((req.method, body))
        return httpx.Response(404, text="404 page not found") if req.method == "PUT" else httpx.Response(200, json=body)

    override = ModelOverride(hf_repo="host/custom-qwen", hf_commit="0123456789abcdef0123456789abcdef01234567")
    wanted = config(models={QWEN32: ModelArgs(args=[], model_override=override)})
    admin = mock_admin(handler)
    await admin.upsert("http://api:9200", wanted, config(models={QWEN32: ModelArgs(args=[])}))
    assert [m for m, _ in seen] == ["PUT"]  # the probe; without the override nothing changes: no DELETE+POST
    seen.clear()
    await admin.upsert("http://api:9200", wanted, None)
    assert seen == [("POST", config(models={QWEN32: ModelArgs(args=[])}).to_body())]


async def test_parses_v0214_fields_exactly_as_upstream_names_them() -> None:
    answer = [{
        "node": {**config().to_body(), "node_num": 1},
        "state": {"current_status": "INFERENCE", "ml_node_version": "v3.0.8",
                  "epoch_ml_nodes": {QWEN32: {"node_id": "node1", "throughput": 250, "poc_weight": 900}}},
        "onboarding": {"participant_state": "INACTIVE_WAITING", "mlnode_state": "WAITING_FOR_POC",
                       "timing": {"current_phase": "PoCGenerate", "blocks_until_next_poc": 0,
                                  "seconds_until_next_poc": 0, "should_be_online": True},
                       "user_message": "Participant is not active yet", "guidance": "Keep the node online"},
    }]
    entry = (await mock_admin(lambda req: httpx.Response(200, json=answer)).list_nodes("http://api:9200"))[0]
    assert entry.state.ml_node_version == "v3.0.8"
    assert entry.state.epoch_ml_nodes is not None
    allocation = entry.state.epoch_ml_nodes[QWEN32]
    assert (allocation.node_id, allocation.throughput, allocation.poc_weight) == ("node1", 250, 900)
    assert entry.onboarding is not None and entry.onboarding.timing is not None
    onboarding = entry.onboarding
    assert (onboarding.participant_state, onboarding.mlnode_state) == ("INACTIVE_WAITING", "WAITING_FOR_POC")
    assert (entry.onboarding.timing.current_phase, entry.onboarding.timing.should_be_online) == ("PoCGenerate", True)
    assert entry.onboarding.guidance == "Keep the node online"


async def test_delete_without_boolean_body_is_unavailable() -> None:
    admin = mock_admin(lambda req: httpx.Response(200, json={"deleted": True}))
    with pytest.raises(AdminUnavailable, match="true/false"):
        await admin.delete("http://api:9200", "node1")


async def test_node_ids_are_quoted_in_paths() -> None:
    paths: list[bytes] = []

    def handler(req: httpx.Request) -> httpx.Response:
        paths.append(req.url.raw_path)
        return httpx.Response(200, json={"message": "ok"})

    await mock_admin(handler).set_enabled("http://api:9200", "a/b c", False)
    assert paths == [b"/admin/v1/nodes/a%2Fb%20c/disable"]


async def test_upsert_refuses_mismatched_ids() -> None:
    admin = mock_admin(lambda req: pytest.fail("no request expected"))
    with pytest.raises(ValueError):
        await admin.upsert("http://api:9200", config("a"), config("b"))
    with pytest.raises(ValueError):
        await admin.upsert("http://api:9200", config(""), None)
