"""A PoC round end to end on loopback, every part a real process:

    simulate-network-node (latest, ML-node version v3.0.8)
        --broker-->  Debian nginx with the operator's rendered config  -->  simulate-ml-node
    simulate-ml-node  --PoC batches-->  the network node's ML callback server

registration → the broker reaches the ML node through the proxy with the version prefix →
INFERENCE → PoC → the ML node's batches arrive at the callback URL → weights. Entries nobody may or
can reach show FAILED with the reason, and an ML node without the proxy fails the versioned calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from helpers import wait_for
from procs import MLProxy, MLStandIn, StandIn, free_port

QWEN32 = "Qwen/Qwen3-32B-FP8"
VERSION = "v3.0.8"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("poc-round")


@pytest.fixture(scope="module")
def ml(logs: Path) -> Iterator[MLStandIn]:
    with MLStandIn(logs, load_seconds=0.3, batch_interval=0.1) as node:
        yield node


@pytest.fixture(scope="module")
def proxy(ml: MLStandIn, logs: Path) -> Iterator[tuple[int, int]]:
    with MLProxy(ml.port, logs) as nginx:
        yield nginx.management_port, nginx.inference_port


@pytest.fixture(scope="module")
def network(logs: Path) -> Iterator[StandIn]:
    # frozen clock: the PoC window moves only when the test says so
    with StandIn("latest", logs, ml_node=False, args=[
            "--mlnode-version", VERSION, "--block-time", "0", "--broker-interval", "0.3", "--broker-retry", "1",
            "--state-delay", "0"]) as sim:
        yield sim


def entry(node_id: str, host: str, poc_port: int, inference_port: int) -> dict[str, Any]:
    return {"id": node_id, "host": host, "poc_port": poc_port, "inference_port": inference_port,
            "max_concurrent": 100, "models": {QWEN32: {"args": ["--max-model-len", "4096"]}},
            "hardware": [{"type": "H100", "count": 1}]}


def register(network: StandIn, body: dict[str, Any]) -> None:
    resp = httpx.post(f"{network.url}/admin/v1/nodes", json=body, timeout=5)
    assert resp.status_code == 200, resp.text


def state_of(network: StandIn, node_id: str) -> dict[str, Any]:
    result: dict[str, Any] = network.nodes()[node_id]["state"]
    return result


def test_poc_round_through_the_proxy(network: StandIn, ml: MLStandIn, proxy: tuple[int, int]) -> None:
    mgmt, inference = proxy
    register(network, entry("proxied", "127.0.0.1", mgmt, inference))

    # registration → the broker brings inference up through the proxy with the version prefix
    wait_for(lambda: state_of(network, "proxied")["current_status"] == "INFERENCE", 20,
             lambda: f"proxied INFERENCE; state {state_of(network, 'proxied')}")
    seen = [(r["method"], r["path"]) for r in ml.requests()]
    assert ("POST", "/api/v1/inference/up") in seen and ("POST", "/api/v1/stop") in seen
    assert not any(p.startswith(f"/{VERSION}/") for _, p in seen), "the proxy passed a version prefix on"
    # and, once vLLM has loaded, it stays there: the status queries (state + /health on the inference
    # port, through the proxy) keep succeeding
    wait_for(lambda: httpx.get(f"{ml.url}/readyz", timeout=5).status_code == 200, 10, "vLLM of the stand-in ready")
    for _ in range(3):
        network.broker_round()
    state = state_of(network, "proxied")
    assert (state["current_status"], state["failure_reason"], state["ml_node_version"]) == ("INFERENCE", "", VERSION)
    assert ("GET", "/health") in [(r["method"], r["path"]) for r in ml.requests()]

    # PoC opens → the broker tells the ML node to generate with the callback URL → batches arrive
    assert network.poc("open")["phase"] == "PoCGenerate"
    wait_for(lambda: (s := state_of(network, "proxied"))["current_status"] == "POC"
             and s["poc_current_status"] == "GENERATING", 20, lambda: f"POC/GENERATING; {state_of(network, 'proxied')}")
    node_num = network.nodes()["proxied"]["node"]["node_num"]

    def generated() -> list[dict[str, Any]]:
        return [b for b in network.poc_batches() if b["kind"] == "generated" and b["body"]["node_id"] == node_num]

    batches = wait_for(lambda: len(generated()) >= 3 and generated(), 20, "three PoC batches at the callback server")
    expected_path = f"/v2/poc-batches/{quote(quote(QWEN32, safe=''), safe='')}/generated"
    assert {b["path"] for b in batches} == {expected_path}
    assert {b["model"] for b in batches} == {QWEN32}
    epoch = network.epoch()
    assert {b["body"]["block_height"] for b in batches} == {epoch["epoch_stages"]["poc_start"]}
    assert all(len(b["body"]["artifacts"]) > 0 for b in batches)
    init = [r for r in ml.requests() if r["path"] == "/api/v1/inference/pow/init/generate"]
    assert init and init[-1]["status"] == 200
    onboarding = network.nodes()["proxied"]["onboarding"]
    assert onboarding["timing"]["in_poc_window"] is True and onboarding["timing"]["current_phase"] == "PoCGenerate"

    # validation, then the window closes: back to inference, with a weight from the artifacts received
    network.poc("validate")
    wait_for(lambda: state_of(network, "proxied")["poc_current_status"] == "VALIDATING", 20, "VALIDATING")
    network.poc("close")
    wait_for(lambda: (s := state_of(network, "proxied"))["current_status"] == "INFERENCE"
             and s["epoch_ml_nodes"], 20, lambda: f"INFERENCE with weights; {state_of(network, 'proxied')}")
    delivered = sum(len(b["body"]["artifacts"]) for b in network.poc_batches()
                    if b["kind"] == "generated" and b["body"]["node_id"] == node_num)
    weight = state_of(network, "proxied")["epoch_ml_nodes"][QWEN32]
    assert weight["node_id"] == "proxied" and 0 < weight["poc_weight"] <= delivered
    assert ("POST", "/api/v1/inference/pow/stop") in [(r["method"], r["path"]) for r in ml.requests()]


def test_unreachable_and_disallowed_entries_are_failed_with_the_reason(network: StandIn) -> None:
    register(network, entry("outside", "10.0.0.21", 8080, 5050))
    register(network, entry("nowhere", "gpu7.example.invalid", 8080, 5050))
    register(network, entry("refused", "127.0.0.1", free_port(), free_port()))

    def reasons() -> dict[str, str]:
        nodes = network.nodes()
        return {n: nodes[n]["state"]["failure_reason"] for n in ("outside", "nowhere", "refused")
                if nodes[n]["state"]["current_status"] == "FAILED"}

    got = wait_for(lambda: len(r := reasons()) == 3 and r, 20, lambda: f"three FAILED entries; {network.nodes()}")
    assert got["outside"] == "not contacted: 10.0.0.21 is outside the stand-in's --allow-targets (loopback)"
    assert got["nowhere"] == "dial tcp: lookup gpu7.example.invalid: no such host"
    assert "connect: connection refused" in got["refused"] and f"/{VERSION}/api/v1/" in got["refused"]


def test_ml_node_without_proxy_fails_the_versioned_calls(network: StandIn, logs: Path) -> None:
    with MLStandIn(logs, "ml-unproxied") as bare:
        register(network, entry("unproxied", "127.0.0.1", bare.port, bare.port))
        state = wait_for(lambda: (s := state_of(network, "unproxied"))["current_status"] == "FAILED" and s, 20,
                         lambda: f"unproxied FAILED; {state_of(network, 'unproxied')}")
        assert state["failure_reason"] == "unexpected status code: 404"
        calls = [r for r in bare.requests() if r["path"] != "/livez"]  # /livez: the harness waiting for it
        paths = [r["path"] for r in calls]
        assert paths and all(p.startswith(f"/{VERSION}/api/v1/") for p in paths)
        assert all(r["status"] == 404 for r in calls)
