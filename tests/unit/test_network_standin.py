"""The network-node stand-in's v0.2.14 faces besides the registry: epoch clock, public API, setup
report, chain RPC, broker decisions (disable → STOPPED, version prefix), its CLI."""

from __future__ import annotations

import asyncio
import json
import selectors
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gonka_operator.simulator import Simulator, run_simulator
from gonka_operator.simulator.epoch import EpochClock
from gonka_operator.simulator.mlnode import MLNodeServer

QWEN32 = "Qwen/Qwen3-32B-FP8"


async def eventually(check: Callable[[], Awaitable[Any]], within: float, what: str) -> Any:
    loop = asyncio.get_running_loop()
    deadline, last = loop.time() + within, None
    while loop.time() < deadline:
        if last := await check():
            return last
        await asyncio.sleep(0.05)
    pytest.fail(f"{what} not within {within} s; last saw {last!r}")


def test_epoch_clock_phases_and_timing() -> None:
    now = [0.0]
    clock = EpochClock(epoch_length=50, poc_length=10, validation_length=5, wind_down=2, block_time=2.0,
                       clock=lambda: now[0])
    assert clock.phase == "Inference" and clock.epoch_index == 1
    start = clock.height
    assert clock.blocks_until_next_poc() == 51 - start
    assert clock.timing()["seconds_until_next_poc"] == (51 - start) * 2.0
    now[0] += 2.0 * (51 - start)  # real blocks pass: the next epoch's PoC begins
    assert (clock.phase, clock.epoch_index, clock.poc_start) == ("PoCGenerate", 2, 51)
    phases = []
    for _ in range(20):
        phases.append(clock.phase)
        now[0] += 2.0
    assert phases == ["PoCGenerate"] * 10 + ["PoCGenerateWindDown"] * 2 + ["PoCValidate"] * 5 + \
        ["PoCValidateWindDown"] * 2 + ["Inference"]
    latest = clock.latest()
    assert latest["epoch_stages"]["next_poc_start"] == 101 and latest["latest_epoch"]["index"] == 2


def test_frozen_clock_moves_only_on_demand() -> None:
    clock = EpochClock(block_time=0)
    before = clock.height
    assert clock.height == before and clock.phase == "Inference"
    clock.open_poc()
    assert (clock.phase, clock.epoch_index) == ("PoCGenerate", 2)
    assert clock.timing() | {"seconds_until_next_poc": 0} == {
        "current_phase": "PoCGenerate", "blocks_until_next_poc": 0, "seconds_until_next_poc": 0,
        "should_be_online": True, "in_poc_window": True, "confirmation_poc_active": False}
    clock.start_validation()
    assert clock.phase == "PoCValidate"
    clock.close_poc()
    assert clock.phase == "Inference" and clock.epoch_index == 2
    clock.advance(clock.blocks_until_next_poc())
    assert (clock.phase, clock.epoch_index) == ("PoCGenerate", 3)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with run_simulator(generation="latest", block_time=0, chain_port=0, state_delay=0,
                             broker_interval=0.1, broker_retry=0.2) as s:
        yield s


async def test_public_epochs_latest_and_admin_poc_timing(sim: Simulator) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        latest = (await http.get(f"{sim.url_of('public')}/v1/epochs/latest")).json()
        assert latest["phase"] == "Inference" and latest["is_confirmation_poc_active"] is False
        assert set(latest["epoch_stages"]) >= {"poc_start", "next_poc_start"}
        timing = (await http.get(f"{sim.base_url}/admin/v1/poc/timing")).json()
        assert timing["available"] is True and timing["timing"]["current_phase"] == "Inference"
        opened = (await http.post(f"{sim.base_url}/stand-in/v1/poc", json={"action": "open"})).json()
        assert opened["phase"] == "PoCGenerate"
        await http.post(f"{sim.base_url}/stand-in/v1/poc", json={"action": "confirmation-start"})
        latest = (await http.get(f"{sim.url_of('public')}/v1/epochs/latest")).json()
        assert latest["is_confirmation_poc_active"] is True and latest["latest_epoch"]["index"] == 2
        bad = await http.post(f"{sim.base_url}/stand-in/v1/poc", json={"action": "explode"})
        assert bad.status_code == 400


async def test_setup_report_configurable_and_block_sync_follows_the_chain(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=5) as http:
        report = (await http.get("/admin/v1/setup/report")).json()
        assert report["overall_status"] == "PASS" and report["summary"]["failed_checks"] == 0
        ids = {c["id"] for c in report["checks"]}
        assert {"permissions_granted", "feegrant_allowance", "warm_key_in_keyring", "consensus_key_match",
                "active_in_epoch", "block_sync"} <= ids
        resp = await http.post("/stand-in/v1/setup-report", json={"checks": {
            "permissions_granted": "FAIL", "feegrant_allowance": {"status": "UNAVAILABLE", "message": "no chain"}}})
        assert resp.status_code == 200
        await http.post("/stand-in/v1/chain", json={"catching_up": True})
        report = (await http.get("/admin/v1/setup/report")).json()
        by_id = {c["id"]: c for c in report["checks"]}
        assert by_id["permissions_granted"]["status"] == "FAIL"
        assert by_id["feegrant_allowance"] == {"id": "feegrant_allowance", "status": "UNAVAILABLE",
                                               "message": "no chain"}
        assert by_id["block_sync"]["status"] == "FAIL"
        assert report["overall_status"] == "FAIL" and report["summary"]["failed_checks"] == 2
        assert (await http.post("/stand-in/v1/setup-report", json={"checks": {"x": "MAYBE"}})).status_code == 400
        chain = (await http.get(f"{sim.url_of('chain')}/status")).json()["result"]
        assert chain["sync_info"]["catching_up"] is True
        assert chain["sync_info"]["latest_block_height"] == str(sim.epoch_clock.height)
        assert chain["validator_info"]["pub_key"]["value"]


async def test_legacy_has_only_the_admin_api() -> None:
    async with run_simulator(generation="2025-08") as s, httpx.AsyncClient(base_url=s.base_url) as http:
        assert s.url_of("public") is None and s.url_of("callback") is None and s.broker is None
        assert (await http.get("/admin/v1/setup/report")).status_code == 404


async def test_broker_follows_admin_state_phase_and_version(sim: Simulator) -> None:
    ml = MLNodeServer(load_seconds=0.05)
    await ml.start()
    try:
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=5) as http:
            sim.set_mlnode_version("")  # a bare ML stand-in: no proxy, so no prefix
            body = {"id": "n1", "host": "127.0.0.1", "inference_port": ml.port, "poc_port": ml.port,
                    "max_concurrent": 5, "models": {QWEN32: {"args": ["--max-model-len", "1024"]}}}
            assert (await http.post("/admin/v1/nodes", json=body)).status_code == 200

            async def status() -> str:
                entry = (await http.get("/admin/v1/nodes")).json()[0]
                return f"{entry['state']['current_status']}/{entry['state']['poc_current_status']}"

            await eventually(lambda: _equals(status, "INFERENCE/IDLE"), 10, "INFERENCE")
            await eventually(lambda: _true(ml.node.inference_healthy), 10, "vLLM of the stand-in healthy")
            up = [r for r in ml.node.requests if r["path"] == "/api/v1/inference/up"]
            assert up and ml.node.model == QWEN32 and ml.node.args == ["--max-model-len", "1024"]
            # disabled: it keeps serving in this epoch, and is stopped once the next epoch begins
            await http.post("/admin/v1/nodes/n1/disable")
            await sim.broker_round()
            assert await status() == "INFERENCE/IDLE"
            await http.post("/stand-in/v1/poc", json={"action": "open"})
            await eventually(lambda: _equals(status, "STOPPED/IDLE"), 10, "STOPPED")
            assert ml.node.model is None and ml.node.requests[-1]["path"] in ("/api/v1/stop", "/api/v1/state")
            # enabled again: from the next epoch on it serves (enabled mid-epoch: Inference phase only)
            await http.post("/admin/v1/nodes/n1/enable")
            await http.post("/stand-in/v1/poc", json={"action": "close"})
            await eventually(lambda: _equals(status, "INFERENCE/IDLE"), 10, "INFERENCE again")
            # a version prefix the bare ML node does not serve: the next status query fails
            sim.set_mlnode_version("v3.0.8")
            await eventually(lambda: _equals(status, "FAILED/IDLE"), 10, "FAILED with the prefix")
            entry = (await http.get("/admin/v1/nodes")).json()[0]
            assert entry["state"]["failure_reason"] == "unexpected status code: 404"
            assert entry["onboarding"]["mlnode_state"] == "TEST_FAILED"
            assert ml.node.requests[-1]["path"].startswith("/v3.0.8/")
    finally:
        await ml.stop()


async def _true(value: bool) -> bool:
    return value


async def _equals(check: Callable[[], Awaitable[str]], want: str) -> bool:
    return await check() == want


def test_cli_prints_every_address(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"permissions_granted": "FAIL"}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gonka_operator.simulator", "--port", "0", "--chain-port", "0",
         "--setup-report", str(report), "--setup-check", "block_sync=UNAVAILABLE", "--allow-targets", "10.244.0.0/16"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=15), "no address line within 15 s"
        # all five lines are printed together; readline() may have buffered them all already
        watchdog = threading.Timer(15, proc.kill)
        watchdog.start()
        try:
            lines = [proc.stdout.readline().strip() for _ in range(5)]
        finally:
            watchdog.cancel()
        urls = {line.split(" listening on ")[0]: line.split(" listening on ")[1] for line in lines[:4]}
        assert set(urls) == {"network-node stand-in (latest)", "public API", "ML callback", "chain RPC"}
        assert "targets loopback, 10.244.0.0/16" in lines[4]
        admin = urls["network-node stand-in (latest)"]
        checks = {c["id"]: c["status"] for c in httpx.get(f"{admin}setup/report").json()["checks"]}
        assert (checks["permissions_granted"], checks["block_sync"]) == ("FAIL", "UNAVAILABLE")
        assert httpx.get(f"{urls['public API']}epochs/latest").json()["phase"] == "Inference"
        assert httpx.get(urls["chain RPC"]).json()["result"]["sync_info"]["catching_up"] is False
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


async def test_broker_ignores_a_proxy_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Traffic stays on the given targets: an HTTP(S)_PROXY/ALL_PROXY (common on CI machines) must
    not carry the broker's checked requests, or the ML node's callbacks, to a proxy."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens there: a proxied call fails
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    ml = MLNodeServer(load_seconds=0.05)
    await ml.start()
    try:
        async with run_simulator(generation="latest", block_time=0, state_delay=0, broker_interval=0.1,
                                 broker_retry=0.2) as sim, \
                httpx.AsyncClient(base_url=sim.base_url, timeout=5, trust_env=False) as http:
            sim.set_mlnode_version("")
            body = {"id": "p1", "host": "127.0.0.1", "inference_port": ml.port, "poc_port": ml.port,
                    "max_concurrent": 5, "models": {QWEN32: {"args": []}}}
            assert (await http.post("/admin/v1/nodes", json=body)).status_code == 200

            async def status() -> str:
                return str((await http.get("/admin/v1/nodes")).json()[0]["state"]["current_status"])

            await eventually(lambda: _equals(status, "INFERENCE"), 10, "INFERENCE without the proxy")
    finally:
        await ml.stop()


async def test_public_participant_by_address_as_upstream(sim: Simulator) -> None:
    """`GET /v2/participants/:address` (decentralized-api public server.go v2 group →
    getParticipantByAddress): the chain's QueryGetParticipantResponse as encoding/json writes it
    (`{"participant": {...}}`, zero fields omitted, status the enum's number); an unknown address is
    the keeper's NotFound → 404 `{"error": "not found"}` (TransparentErrorHandler)."""
    async with httpx.AsyncClient(timeout=5) as http:
        report = (await http.get(f"{sim.base_url}/admin/v1/setup/report")).json()
        cold = next(c for c in report["checks"] if c["id"] == "cold_key_configured")
        address = cold["details"]["address"]
        assert address.startswith("gonka1") and len(address) == 44  # bech32 of a 20-byte account hash
        public = sim.url_of("public")
        resp = await http.get(f"{public}/v2/participants/{address}")
        assert resp.status_code == 200
        participant = resp.json()["participant"]
        assert participant["index"] == participant["address"] == address
        assert "weight" not in participant  # no ML node has PoC weight yet: omitted (omitempty)
        await http.post(f"{sim.base_url}/admin/v1/nodes", json={
            "id": "w", "host": "w.example", "inference_port": 5050, "poc_port": 8080, "max_concurrent": 500,
            "models": {QWEN32: {"args": []}}})
        node = sim.registry.get("w")
        assert node is not None
        node.runtime.epoch_ml_nodes = {QWEN32: {"node_id": "w", "poc_weight": 7}}
        participant = (await http.get(f"{public}/v2/participants/{address}")).json()["participant"]
        assert participant["weight"] == 7 and participant["status"] == 1  # ACTIVE
        unknown = await http.get(f"{public}/v2/participants/gonka1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqy2m5g")
        assert unknown.status_code == 404 and unknown.json() == {"error": "not found"}
