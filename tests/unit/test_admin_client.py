"""AdminClient: contract tests against the real stand-in on loopback (both api generations), plus
`httpx.MockTransport` tests for what the stand-in cannot produce."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from gonka_operator.admin import (
    AdminClient,
    AdminNotFound,
    AdminRejected,
    AdminUnavailable,
    Hardware,
    InferenceNodeConfig,
    ModelArgs,
    ModelOverride,
    api_root,
    create_http_client,
)
from gonka_operator.simulator import Simulator, run_simulator

QWEN32 = "Qwen/Qwen3-32B-FP8"


def config(node_id: str = "node1", **overrides: Any) -> InferenceNodeConfig:
    values: dict[str, Any] = {
        "id": node_id,
        "host": f"{node_id}.gonka.svc.cluster.local",
        "inference_port": 5050,
        "poc_port": 8080,
        "max_concurrent": 500,
        "models": {QWEN32: ModelArgs(args=["--tensor-parallel-size", "4"])},
        "hardware": [Hardware(type="H100", count=8)],
    }
    values.update(overrides)
    return InferenceNodeConfig(**values)


def test_body_is_exactly_the_reference_body() -> None:
    assert config("node1", host="10.0.0.21").to_body() == {
        "id": "node1",
        "host": "10.0.0.21",
        "inference_port": 5050,
        "poc_port": 8080,
        "inference_segment": "",
        "poc_segment": "",
        "max_concurrent": 500,
        "models": {QWEN32: {"args": ["--tensor-parallel-size", "4"]}},
        "hardware": [{"type": "H100", "count": 8}],
    }


def test_api_root_normalises_base_urls() -> None:
    for url in ("http://x:9200", "http://x:9200/", "http://x:9200/admin/v1", "http://x:9200/admin/v1/"):
        assert api_root(url) == "http://x:9200/admin/v1"


# -- against the stand-in ---------------------------------------------------------------------------


@pytest.fixture(params=["2025-08", "latest"])
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    async with run_simulator(generation=request.param, state_delay=0.2) as s:
        yield s


@pytest.fixture
async def admin() -> AsyncIterator[AdminClient]:
    async with create_http_client() as http:
        yield AdminClient(http)


def counted(method: str, code: str) -> float:
    value = REGISTRY.get_sample_value("gonka_operator_admin_api_requests_total", {"method": method, "code": code})
    return value or 0.0


async def test_register_and_list(sim: Simulator, admin: AdminClient) -> None:
    await admin.upsert(sim.base_url, config(), None)
    entries = await admin.list_nodes(sim.base_url)
    assert len(entries) == 1
    assert entries[0].node.same_config(config()) and entries[0].node.node_num == 1
    assert entries[0].state.current_status in ("UNKNOWN", "INFERENCE")
    assert entries[0].state.admin_state is not None and entries[0].state.admin_state.enabled is True
    assert sim.saved_config() == [config().to_body()]
    assert await admin.get_node(sim.base_url, "node1") == entries[0]
    assert await admin.get_node(sim.base_url, "ghost") is None
    if sim.generation == "2025-08":
        assert admin.known_generation(sim.base_url) == "2025-08"
        assert sim.request_counts()["PUT /admin/v1/nodes/{id}"] == 1  # the probe
    else:
        assert admin.known_generation(sim.base_url) is None
        assert "POST /admin/v1/nodes" not in sim.request_counts()


async def test_update_changes_entry_without_duplicates(sim: Simulator, admin: AdminClient) -> None:
    await admin.upsert(sim.base_url, config(), None)
    current = (await admin.list_nodes(sim.base_url))[0].node
    sim.counts.clear()
    await admin.upsert(sim.base_url, config(max_concurrent=64), current)
    entries = await admin.list_nodes(sim.base_url)
    assert len(entries) == 1 and entries[0].node.same_config(config(max_concurrent=64))
    assert sim.saved_config() == [config(max_concurrent=64).to_body()]  # no duplicate in either
    expected = (
        {"DELETE /admin/v1/nodes/{id}": 1, "POST /admin/v1/nodes": 1}  # generation remembered: no PUT
        if sim.generation == "2025-08"
        else {"PUT /admin/v1/nodes/{id}": 1}
    )
    assert sim.request_counts() == expected | {"GET /admin/v1/nodes": 1}


async def test_upsert_of_unchanged_config_sends_nothing(sim: Simulator, admin: AdminClient) -> None:
    await admin.upsert(sim.base_url, config(), None)
    current = (await admin.list_nodes(sim.base_url))[0].node
    sim.counts.clear()
    await admin.upsert(sim.base_url, config(), current)
    assert sim.request_counts() == {}


async def test_delete_true_then_false(sim: Simulator, admin: AdminClient) -> None:
    await admin.upsert(sim.base_url, config(), None)
    assert await admin.delete(sim.base_url, "node1") is True
    assert await admin.delete(sim.base_url, "node1") is False
    assert await admin.list_nodes(sim.base_url) == []


async def test_enable_disable_and_not_found(sim: Simulator, admin: AdminClient) -> None:
    await admin.upsert(sim.base_url, config(), None)
    await admin.set_enabled(sim.base_url, "node1", False)
    state = (await admin.list_nodes(sim.base_url))[0].state
    assert state.admin_state is not None and state.admin_state.enabled is False
    await admin.set_enabled(sim.base_url, "node1", True)
    state = (await admin.list_nodes(sim.base_url))[0].state
    assert state.admin_state is not None and state.admin_state.enabled is True
    with pytest.raises(AdminNotFound) as info:
        await admin.set_enabled(sim.base_url, "ghost", True)
    assert info.value.status == 404 and info.value.message == "node not found: ghost"


async def test_governance_rejection(sim: Simulator, admin: AdminClient) -> None:
    unapproved = config(models={"Kimi/K2.6": ModelArgs(args=[])})
    with pytest.raises(AdminRejected) as rejected:
        await admin.upsert(sim.base_url, unapproved, None)
    if sim.generation == "latest":
        assert rejected.value.status == 400
        assert "governance" in rejected.value.message
    else:  # 2025-08: a 500, but a refusal of the body all the same
        assert rejected.value.status == 500 and "error creating new node" in rejected.value.message
    assert await admin.list_nodes(sim.base_url) == []
    sim.set_models([QWEN32, "Kimi/K2.6"])
    await admin.upsert(sim.base_url, unapproved, None)
    assert len(await admin.list_nodes(sim.base_url)) == 1


async def test_latest_validation_is_rejected(admin: AdminClient) -> None:
    async with run_simulator(generation="latest") as sim:
        await admin.upsert(sim.base_url, config("a", host="10.0.0.1"), None)
        with pytest.raises(AdminRejected, match="already used by node 'a'"):
            await admin.upsert(sim.base_url, config("b", host="10.0.0.1"), None)


async def test_refused_update_keeps_the_serving_entry(sim: Simulator, admin: AdminClient) -> None:
    """2025-08 changes by DELETE then POST: a POST the api refuses must not leave the node unregistered."""
    await admin.upsert(sim.base_url, config(), None)
    current = (await admin.list_nodes(sim.base_url))[0].node
    with pytest.raises(AdminRejected) as rejected:
        await admin.upsert(sim.base_url, config(models={"Kimi/K2.6": ModelArgs(args=[])}), current)
    # both answer 500: latest "failed to update node: …", 2025-08 "error creating new node" (then restored)
    assert rejected.value.status == 500, rejected.value
    entries = await admin.list_nodes(sim.base_url)
    assert [e.node.id for e in entries] == ["node1"] and entries[0].node.same_config(config())
    assert sim.saved_config() == [config().to_body()]


async def test_latest_update_onto_a_used_host_port_is_a_rejection(admin: AdminClient) -> None:
    async with run_simulator(generation="latest") as sim:
        await admin.upsert(sim.base_url, config("a", host="10.0.0.1"), None)
        await admin.upsert(sim.base_url, config("b", host="10.0.0.2"), None)
        current = next(e.node for e in await admin.list_nodes(sim.base_url) if e.node.id == "b")
        with pytest.raises(AdminRejected) as rejected:
            await admin.upsert(sim.base_url, config("b", host="10.0.0.1"), current)
        assert rejected.value.status == 500 and "failed to update node" in rejected.value.message
        assert "already used by node 'a'" in rejected.value.message


async def test_connection_refused_is_unavailable_then_recovers(sim: Simulator, admin: AdminClient) -> None:
    await admin.list_nodes(sim.base_url)  # leaves a pooled connection behind
    before = counted("GET", "error")
    sim.refuse_for(10)
    with pytest.raises(AdminUnavailable) as info:
        await admin.list_nodes(sim.base_url)
    assert info.value.status is None
    with pytest.raises(AdminUnavailable, match="ConnectError"):
        await admin.delete(sim.base_url, "node1")
    assert counted("GET", "error") == before + 1
    sim.clear_faults()
    await sim.wait_accepting(5)
    assert await admin.list_nodes(sim.base_url) == []


async def test_500_window_is_unavailable(sim: Simulator, admin: AdminClient) -> None:
    before = counted("GET", "500")
    sim.fail_with_500_for(30)
    with pytest.raises(AdminUnavailable) as info:
        await admin.list_nodes(sim.base_url)
    assert info.value.status == 500 and "500: internal error" in info.value.message
    with pytest.raises(AdminUnavailable):
        await admin.upsert(sim.base_url, config(), None)
    assert admin.known_generation(sim.base_url) is None  # a 500 says nothing about the generation
    assert counted("GET", "500") == before + 1
    sim.clear_faults()
    await admin.upsert(sim.base_url, config(), None)
    assert len(await admin.list_nodes(sim.base_url)) == 1


async def test_slow_answer_times_out_as_unavailable(sim: Simulator) -> None:
    sim.slow_for(30, delay=2)
    async with create_http_client() as http:
        admin = AdminClient(http, total_timeout=0.3)
        with pytest.raises(AdminUnavailable, match=r"ReadTimeout|TimeoutError"):
            await admin.list_nodes(sim.base_url)


async def test_nothing_listening_is_unavailable(admin: AdminClient) -> None:
    async with run_simulator() as sim:
        base_url = sim.base_url
    with pytest.raises(AdminUnavailable, match="ConnectError"):
        await admin.list_nodes(base_url)


async def test_parses_unknown_fields_of_the_real_answers(sim: Simulator, admin: AdminClient) -> None:
    # the latest stand-in adds fields (version, onboarding, ml_node_version) the models do not know
    await admin.upsert(sim.base_url, config(), None)
    sim.fail_node("node1", "OOM")
    entry = (await admin.list_nodes(sim.base_url))[0]
    assert (entry.state.current_status, entry.state.failure_reason) == ("FAILED", "OOM")


# -- with httpx.MockTransport -----------------------------------------------------------------------

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


async def test_v0214_fields_from_the_stand_in_reach_status_registry(admin: AdminClient) -> None:
    """REFERENCE.md §6 fields as the latest stand-in answers them. Its broker really calls the ML
    nodes: one ML stand-in answers (no version prefix here: the prefix needs the proxy, tested with
    the real nginx elsewhere), and nothing listens behind the other entry, which turns FAILED."""
    from gonka_operator.registry_status import registry_status
    from gonka_operator.simulator.mlnode import MLNodeServer

    ml = MLNodeServer(load_seconds=0.05)
    await ml.start()
    try:
        async with run_simulator(generation="latest", mlnode_version="", allow_targets=["127.0.0.1/32"],
                                 broker_interval=0.1, broker_retry=0.2, block_time=0.05) as sim:
            await admin.upsert(sim.base_url, config("alive", host="127.0.0.1", poc_port=ml.port,
                                                    inference_port=ml.port), None)
            await admin.upsert(sim.base_url, config("dead", host="127.0.0.1", poc_port=9, inference_port=9), None)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while True:
                entries = {e.node.id: e for e in await admin.list_nodes(sim.base_url)}
                statuses = {i: e.state.current_status for i, e in entries.items()}
                if statuses == {"alive": "INFERENCE", "dead": "FAILED"} or loop.time() > deadline:
                    break
                await asyncio.sleep(0.1)
    finally:
        await ml.stop()
    alive, dead = registry_status(entries["alive"]), registry_status(entries["dead"])
    assert alive["currentStatus"] == "INFERENCE" and "failureReason" not in alive, alive
    assert dead["currentStatus"] == "FAILED" and dead["failureReason"], dead
    for block in (alive, dead):
        onboarding = block["onboarding"]
        assert isinstance(onboarding, dict), block
        assert onboarding["phase"] in ("Inference", "PoCGenerate", "PoCGenerateWindDown", "PoCValidate",
                                       "PoCValidateWindDown"), onboarding
        assert {"participantState", "mlnodeState", "nextPoCAt", "shouldBeOnline"} <= set(onboarding), onboarding
        assert "pocWeight" in block
    assert dead["onboarding"]["mlnodeState"] == "TEST_FAILED"  # type: ignore[index]


async def test_2025_08_stand_in_has_none_of_the_new_fields(admin: AdminClient) -> None:
    from gonka_operator.registry_status import registry_status

    async with run_simulator(generation="2025-08", state_delay=0) as sim:
        await admin.upsert(sim.base_url, config(), None)
        [entry] = await admin.list_nodes(sim.base_url)
    block = registry_status(entry)
    assert entry.onboarding is None and entry.state.ml_node_version is None
    assert "onboarding" not in block and "mlNodeVersion" not in block
    assert block["currentStatus"] == "INFERENCE" and block["pocWeight"] == 10  # its fixed allocation
