"""The network-node stand-in's own behaviour, straight over HTTP (REFERENCE.md §4 and §6)."""

from __future__ import annotations

import asyncio
import selectors
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from gonka_operator.simulator import Registry, Simulator, run_simulator, serve_in_thread

QWEN32 = "Qwen/Qwen3-32B-FP8"
QWEN235 = "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8"


def body(node_id: str = "node1", **overrides: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "id": node_id,
        "host": f"{node_id}.gonka.svc",
        "inference_port": 5050,
        "poc_port": 8080,
        "inference_segment": "",
        "poc_segment": "",
        "max_concurrent": 500,
        "models": {QWEN32: {"args": ["--tensor-parallel-size", "4"]}},
        "hardware": [{"type": "H100", "count": 8}],
    }
    b.update(overrides)
    return b


async def eventually(check: Callable[[], Awaitable[Any]], within: float, what: str) -> Any:
    """Poll `check` until it returns a truthy value; fail with the last value seen."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    pytest.fail(f"{what} not within {within} s; last saw {last!r}")


@pytest.fixture(params=["2025-08", "latest"])
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    async with run_simulator(generation=request.param, state_delay=1.0) as s:
        yield s


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=5) as c:
        yield c


async def nodes(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    resp = await http.get("/admin/v1/nodes")
    assert resp.status_code == 200
    result: list[dict[str, Any]] = resp.json()
    return result


# -- registration and both generations' quirks -----------------------------------------------------


async def test_post_registers_echoes_body_and_assigns_node_num(sim: Simulator, http: httpx.AsyncClient) -> None:
    resp = await http.post("/admin/v1/nodes", json=body("a"))
    assert resp.status_code == 200 and resp.json() == body("a")
    await http.post("/admin/v1/nodes", json=body("b", host="b.gonka.svc"))
    listed = await nodes(http)
    assert [e["node"]["id"] for e in listed] == ["a", "b"]
    assert {k: v for k, v in listed[0]["node"].items() if k in body()} == body("a")
    assert [e["node"]["node_num"] for e in listed] == [1, 2]


async def test_post_of_existing_id(sim: Simulator, http: httpx.AsyncClient) -> None:
    await http.post("/admin/v1/nodes", json=body())
    resp = await http.post("/admin/v1/nodes", json=body(max_concurrent=100))
    assert resp.status_code == 200
    listed = await nodes(http)
    assert len(listed) == 1 and listed[0]["node"]["max_concurrent"] == 100
    saved = (await http.get("/debug/config")).json()
    if sim.generation == "2025-08":  # live entry replaced, saved config APPENDS a duplicate
        assert [c["max_concurrent"] for c in saved] == [500, 100]
    else:
        assert saved == [body(max_concurrent=100)]


async def test_legacy_delete_rewrites_saved_config_from_live_list(http: httpx.AsyncClient) -> None:
    await http.post("/admin/v1/nodes", json=body())
    await http.post("/admin/v1/nodes", json=body())
    await http.post("/admin/v1/nodes", json=body("b", host="b"))
    assert (await http.delete("/admin/v1/nodes/b")).json() is True
    assert (await http.get("/debug/config")).json() == [body()]


async def test_put(sim: Simulator, http: httpx.AsyncClient) -> None:
    resp = await http.put("/admin/v1/nodes/node1", json=body())
    if sim.generation == "2025-08":
        assert resp.status_code == 405
        assert await nodes(http) == []
        return
    assert resp.status_code == 200
    resp = await http.put("/admin/v1/nodes/node1", json=body(max_concurrent=7))
    assert resp.status_code == 200
    listed = await nodes(http)
    assert len(listed) == 1 and listed[0]["node"]["max_concurrent"] == 7
    assert (await http.get("/debug/config")).json() == [body(max_concurrent=7)]
    # the body's id wins over the path's
    await http.put("/admin/v1/nodes/other", json=body("node2", host="h2"))
    assert [e["node"]["id"] for e in await nodes(http)] == ["node1", "node2"]


async def test_delete_always_200(sim: Simulator, http: httpx.AsyncClient) -> None:
    await http.post("/admin/v1/nodes", json=body())
    first = await http.delete("/admin/v1/nodes/node1")
    again = await http.delete("/admin/v1/nodes/node1")
    assert (first.status_code, first.json()) == (200, True)
    assert (again.status_code, again.json()) == (200, False)
    assert await nodes(http) == []


async def test_enable_disable_and_404(sim: Simulator, http: httpx.AsyncClient) -> None:
    await http.post("/admin/v1/nodes", json=body())
    resp = await http.post("/admin/v1/nodes/node1/disable")
    assert resp.json() == {"message": "node disabled successfully", "node_id": "node1"}
    assert (await nodes(http))[0]["state"]["admin_state"]["enabled"] is False
    resp = await http.post("/admin/v1/nodes/node1/enable")
    assert resp.json() == {"message": "node enabled successfully", "node_id": "node1"}
    assert (await nodes(http))[0]["state"]["admin_state"]["enabled"] is True
    resp = await http.post("/admin/v1/nodes/ghost/enable")
    assert (resp.status_code, resp.json()) == (404, {"error": "node not found: ghost"})


async def test_governance_rejects_unknown_model(sim: Simulator, http: httpx.AsyncClient) -> None:
    resp = await http.post("/admin/v1/nodes", json=body(models={"MiniMax/M2.7": {"args": []}}))
    if sim.generation == "2025-08":
        assert (resp.status_code, resp.json()) == (500, {"error": "error creating new node"})
    else:  # RegisterNode drops unapproved models; none left is the error
        assert (resp.status_code, resp.json()) == (
            400, {"error": "failed to create node: node node1 has no governance-valid models"})
    assert await nodes(http) == []
    # governance changes: approve it and the same body registers
    assert (await http.post("/debug/governance", json={"models": [QWEN32, "MiniMax/M2.7"]})).status_code == 200
    resp = await http.post("/admin/v1/nodes", json=body(models={"MiniMax/M2.7": {"args": []}}))
    assert resp.status_code == 200


async def test_latest_create_drops_unapproved_models_silently_update_refuses_them() -> None:
    async with run_simulator(generation="latest") as s, httpx.AsyncClient(base_url=s.base_url) as http:
        mixed = body(models={QWEN32: {"args": []}, "Kimi/K2.6": {"args": ["--x"]}})
        resp = await http.post("/admin/v1/nodes", json=mixed)
        assert resp.status_code == 200 and resp.json()["models"] == {QWEN32: {"args": []}}  # echo without it
        assert list((await nodes(http))[0]["node"]["models"]) == [QWEN32]
        for method, url in (("POST", "/admin/v1/nodes"), ("PUT", "/admin/v1/nodes/node1")):
            resp = await http.request(method, url, json=mixed)  # node1 exists: the UpdateNode path
            assert (resp.status_code, resp.json()) == (
                500, {"error": "failed to update node: model Kimi/K2.6 is not a valid governance model"})
        assert list((await nodes(http))[0]["node"]["models"]) == [QWEN32]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"id": ""}, "node id is required and cannot be empty"),
        ({"host": " "}, "host is required and cannot be empty"),
        ({"inference_port": 0}, "inference_port must be between 1 and 65535, got 0"),
        ({"poc_port": 65536}, "poc_port must be between 1 and 65535, got 65536"),
        ({"max_concurrent": 0}, "max_concurrent must be greater than 0, got 0"),
        ({"models": {}}, "at least one model must be specified"),
        ({"host": "node1.gonka.svc", "inference_port": 5050, "poc_port": 9999},
         "duplicate inference host+port combination: node1.gonka.svc:5050 (already used by node 'node1')"),
        ({"host": "node1.gonka.svc", "inference_port": 6000, "poc_port": 8080},
         "duplicate PoC host+port combination: node1.gonka.svc:8080 (already used by node 'node1')"),
        ({"models": {QWEN32: {"args": ["--revision=abc"], "model_override": {"hf_repo": "", "hf_commit": "ABC"}}}},
         f"model {QWEN32} override hf_repo is required; model {QWEN32} override hf_commit must be a 40-character "
         f"lowercase hexadecimal commit hash; model {QWEN32} override cannot use reserved argument --revision"),
    ],
)
async def test_latest_validation_create_400_update_500(overrides: dict[str, Any], message: str) -> None:
    async with run_simulator(generation="latest") as s, httpx.AsyncClient(base_url=s.base_url) as http:
        assert (await http.post("/admin/v1/nodes", json=body())).status_code == 200
        # a new id is a create: 400 "failed to create node: validation failed: ..." (PUT fills an empty
        # body id from the path, so the empty-id case is POST-only)
        for method in ("POST", "PUT") if overrides.get("id") != "" else ("POST",):
            url = "/admin/v1/nodes" if method == "POST" else "/admin/v1/nodes/node9"
            resp = await http.request(method, url, json=body("node9", **overrides))
            assert (resp.status_code, resp.json()) == (400, {"error": f"failed to create node: validation failed: "
                                                                       f"{message}"}), resp.text
        assert len(await nodes(http)) == 1
        if overrides.get("id") == "" or "already used by node" in message:
            return
        # the same problem in an update of node1 is a 500 "failed to update node: validation failed: ..."
        await http.post("/admin/v1/nodes", json=body("node2", host="node2.gonka.svc"))
        for method, url in (("POST", "/admin/v1/nodes"), ("PUT", "/admin/v1/nodes/node1")):
            resp = await http.request(method, url, json=body("node1", **overrides))
            assert (resp.status_code, resp.json()) == (500, {"error": f"failed to update node: validation failed: "
                                                                       f"{message}"}), resp.text


async def test_latest_update_duplicate_host_port_is_500() -> None:
    async with run_simulator(generation="latest") as s, httpx.AsyncClient(base_url=s.base_url) as http:
        await http.post("/admin/v1/nodes", json=body("a", host="h"))
        await http.post("/admin/v1/nodes", json=body("b", host="h", inference_port=6050, poc_port=6080))
        resp = await http.put("/admin/v1/nodes/b", json=body("b", host="h"))
        assert (resp.status_code, resp.json()) == (500, {"error": "failed to update node: validation failed: "
                                                     "duplicate inference host+port combination: h:5050 (already "
                                                     "used by node 'a'); duplicate PoC host+port combination: h:8080 "
                                                     "(already used by node 'a')"})
        # re-sending a node's own host+port is no clash with itself
        assert (await http.put("/admin/v1/nodes/a", json=body("a", host="h", max_concurrent=3))).status_code == 200


async def test_latest_model_override_is_kept() -> None:
    override = {"hf_repo": "Qwen/Qwen3-32B-FP8", "hf_commit": "0123456789abcdef0123456789abcdef01234567"}
    async with run_simulator(generation="latest") as s, httpx.AsyncClient(base_url=s.base_url) as http:
        b = body(models={QWEN32: {"args": [], "model_override": override}})
        assert (await http.post("/admin/v1/nodes", json=b)).json()["models"][QWEN32]["model_override"] == override
        assert (await nodes(http))[0]["node"]["models"][QWEN32]["model_override"] == override


async def test_legacy_has_no_validation_beyond_governance() -> None:
    async with run_simulator(generation="2025-08") as s, httpx.AsyncClient(base_url=s.base_url) as http:
        resp = await http.post("/admin/v1/nodes", json=body(max_concurrent=0, inference_port=0))
        assert resp.status_code == 200


async def test_invalid_body_is_400(sim: Simulator, http: httpx.AsyncClient) -> None:
    resp = await http.post("/admin/v1/nodes", content=b"{not json")
    assert resp.status_code == 400 and resp.json()["error"].startswith("invalid request body")
    resp = await http.post("/admin/v1/nodes", json=body(inference_port="5050"))
    assert resp.status_code == 400


async def test_batch(sim: Simulator, http: httpx.AsyncClient) -> None:
    good, bad = body("a", host="a"), body("b", host="b", models={"Unknown/Model": {"args": []}})
    resp = await http.post("/admin/v1/nodes/batch", json=[good, bad])
    if sim.generation == "2025-08":  # failures silently dropped
        assert (resp.status_code, resp.json()) == (201, [good])
    else:
        assert resp.status_code == 206
        assert resp.json()["nodes"] == [good]
        assert len(resp.json()["errors"]) == 1 and "node[1] (id: b)" in resp.json()["errors"][0]
    resp = await http.post("/admin/v1/nodes/batch", json=[bad])
    if sim.generation == "2025-08":
        assert (resp.status_code, resp.json()) == (201, [])
    else:
        assert resp.status_code == 400
        assert resp.json()["error"] == "all nodes failed validation"
    resp = await http.post("/admin/v1/nodes/batch", json=[body("c", host="c")])
    assert resp.status_code == 201
    assert [e["node"]["id"] for e in await nodes(http)] == ["a", "c"]


# -- state ------------------------------------------------------------------------------------------


async def test_legacy_state_unknown_then_inference_and_failed_on_demand() -> None:
    # the 2025-08 stand-in drives no ML node: it keeps its old timer
    async with run_simulator(generation="2025-08", state_delay=1.0) as s, \
            httpx.AsyncClient(base_url=s.base_url, timeout=5) as http:
        await http.post("/admin/v1/nodes", json=body())
        state = (await nodes(http))[0]["state"]
        assert state["current_status"] == "UNKNOWN"
        assert state["admin_state"]["enabled"] is True

        async def serving() -> bool:
            return bool((await nodes(http))[0]["state"]["current_status"] == "INFERENCE")

        await eventually(serving, 5, "INFERENCE")
        resp = await http.post("/debug/nodes/node1/fail", json={"reason": "CUDA out of memory"})
        assert resp.status_code == 200
        state = (await nodes(http))[0]["state"]
        assert (state["current_status"], state["failure_reason"]) == ("FAILED", "CUDA out of memory")
        assert (await http.post("/debug/nodes/ghost/fail", json={})).status_code == 404


async def test_latest_entry_nobody_answers_is_failed_never_inference() -> None:
    # the old stand-in flipped every entry to INFERENCE after a second; now the broker asks the host
    async with run_simulator(generation="latest", state_delay=0.0, broker_interval=0.1) as s, \
            httpx.AsyncClient(base_url=s.base_url, timeout=5) as http:
        await http.post("/admin/v1/nodes", json=body())  # node1.gonka.svc: no such host here
        await http.post("/admin/v1/nodes", json=body("dead", host="127.0.0.1", poc_port=closed_port(),
                                                     inference_port=closed_port()))

        async def failed() -> dict[str, str]:
            got = {e["node"]["id"]: e["state"] for e in await nodes(http)}
            return {k: v["failure_reason"] for k, v in got.items() if v["current_status"] == "FAILED"}

        reasons = await eventually(lambda: _all(failed, 2), 10, "both entries FAILED")
        assert reasons["node1"] == "dial tcp: lookup node1.gonka.svc: no such host"
        assert "connect: connection refused" in reasons["dead"] and "/v3.0.8/api/v1/" in reasons["dead"]
        resp = await http.post("/debug/nodes/node1/fail", json={"reason": "CUDA out of memory"})
        assert resp.status_code == 200
        await s.broker_round()
        state = {e["node"]["id"]: e["state"] for e in await nodes(http)}["node1"]
        assert (state["current_status"], state["failure_reason"]) == ("FAILED", "CUDA out of memory")  # sticky


async def _all(check: Callable[[], Awaitable[dict[str, str]]], n: int) -> dict[str, str]:
    got = await check()
    return got if len(got) >= n else {}


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_registry_state_follows_its_clock() -> None:
    now = [1000.0]
    reg = Registry("2025-08", state_delay=1.0, clock=lambda: now[0])
    reg.register(body())
    assert reg.entries()[0]["state"]["current_status"] == "UNKNOWN"
    now[0] += 0.99
    assert reg.entries()[0]["state"]["current_status"] == "UNKNOWN"
    now[0] += 0.02
    assert reg.entries()[0]["state"]["current_status"] == "INFERENCE"
    reg.register(body(max_concurrent=1))  # reconfigured → UNKNOWN again
    assert reg.entries()[0]["state"]["current_status"] == "UNKNOWN"


# -- faults and introspection -----------------------------------------------------------------------


async def test_refuse_really_refuses_then_recovers_on_same_port(sim: Simulator, http: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as pooled, httpx.AsyncClient(base_url=sim.base_url) as fresh:
        assert (await pooled.get("/admin/v1/nodes")).status_code == 200  # a keep-alive connection
        resp = await http.post("/debug/faults", json={"mode": "refuse", "seconds": 1.5})
        assert resp.status_code == 200
        with pytest.raises(httpx.TransportError):
            await pooled.get("/admin/v1/nodes")  # open connections are dropped too
        with pytest.raises(httpx.TransportError):
            await http.get("/admin/v1/nodes")
        with pytest.raises(httpx.ConnectError):
            await fresh.get("/admin/v1/nodes")

        async def answers() -> bool:
            try:
                return (await fresh.get("/admin/v1/nodes")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(answers, 5, "the stand-in answering again")


async def test_error500_window(sim: Simulator, http: httpx.AsyncClient) -> None:
    await http.post("/debug/faults", json={"mode": "error500", "seconds": 0.5})
    resp = await http.get("/admin/v1/nodes")
    assert (resp.status_code, resp.json()) == (500, {"error": "internal error"})
    assert (await http.get("/debug/config")).status_code == 200  # debug routes are never faulted

    async def healthy() -> bool:
        return (await http.get("/admin/v1/nodes")).status_code == 200

    await eventually(healthy, 5, "500 window ending")


async def test_slow_mode_delays_answers(sim: Simulator, http: httpx.AsyncClient) -> None:
    await http.post("/debug/faults", json={"mode": "slow", "seconds": 5, "delay": 0.4})
    started = time.monotonic()
    assert (await http.get("/admin/v1/nodes")).status_code == 200
    assert time.monotonic() - started >= 0.35
    await http.post("/debug/faults", json={"mode": "none"})
    started = time.monotonic()
    await http.get("/admin/v1/nodes")
    assert time.monotonic() - started < 0.35


async def test_request_counts_by_route_template_and_reset(sim: Simulator, http: httpx.AsyncClient) -> None:
    await http.post("/admin/v1/nodes", json=body())
    await http.delete("/admin/v1/nodes/node1")
    await http.delete("/admin/v1/nodes/node2")
    await http.get("/admin/v1/nodes")
    counts = (await http.get("/debug/requests")).json()
    assert counts == {"POST /admin/v1/nodes": 1, "DELETE /admin/v1/nodes/{id}": 2, "GET /admin/v1/nodes": 1}
    assert sim.request_counts() == counts
    await http.post("/debug/reset")
    assert (await http.get("/debug/requests")).json() == {}
    assert await nodes(http) == []


async def test_unknown_fault_mode_is_400(sim: Simulator, http: httpx.AsyncClient) -> None:
    assert (await http.post("/debug/faults", json={"mode": "explode"})).status_code == 400


# -- runners ----------------------------------------------------------------------------------------


def test_serve_in_thread_and_its_controls() -> None:
    with serve_in_thread(generation="2025-08") as sim, httpx.Client(base_url=sim.base_url) as http:
        http.post("/admin/v1/nodes", json=body())
        http.post("/admin/v1/nodes", json=body())
        assert len(sim.saved_config()) == 2
        assert sim.request_counts() == {"POST /admin/v1/nodes": 2}
        sim.fail_with_500_for(5)
        assert http.get("/admin/v1/nodes").status_code == 500
        sim.clear_faults()
        assert http.get("/admin/v1/nodes").status_code == 200
        sim.refuse_for(5)
        with pytest.raises(httpx.TransportError):
            http.get("/admin/v1/nodes")
        sim.clear_faults()
        deadline = time.monotonic() + 5
        while True:
            try:
                assert http.get("/admin/v1/nodes").status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "stand-in did not listen again"
                time.sleep(0.05)
        base_url = sim.base_url
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url + "/admin/v1/nodes")


def test_cli_serves_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gonka_operator.simulator",
            "--port",
            "0",
            "--generation",
            "latest",
            "--models",
            "A/B,C/D",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=15), "no address line within 15 s"
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split("listening on ")[1].strip()
        resp = httpx.post(url + "nodes", json=body(models={"C/D": {"args": []}}))
        assert resp.status_code == 200
        assert httpx.get(url.replace("/admin/v1/", "/debug/governance")).json() == {"models": ["A/B", "C/D"]}
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
