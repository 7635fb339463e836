"""AdminClient: contract tests against the real stand-in on loopback (both api generations). What
the stand-in cannot produce is tested with `httpx.MockTransport` in test_admin_client_wire.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

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


# -- v0.2.14 fields from the stand-in ----------------------------------------------------------

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
