"""The ML-node stand-in (`simulate-ml-node`) on its own: mlnode's paths, answers and PoC callbacks."""

from __future__ import annotations

import asyncio
import selectors
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gonka_operator.simulator import run_simulator
from gonka_operator.simulator.mlnode import MLNodeServer, artifact_vector

QWEN32 = "Qwen/Qwen3-32B-FP8"
POC = {"block_hash": "AB" * 32, "block_height": 101, "public_key": "pk", "node_id": 2, "node_count": 3,
       "params": {"model": QWEN32, "seq_len": 256}}


@pytest.fixture
async def ml() -> AsyncIterator[MLNodeServer]:
    server = MLNodeServer(load_seconds=0.2, batch_interval=0.05, batch_size=4)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def http(ml: MLNodeServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ml.base_url, timeout=5) as c:
        yield c


async def up(http: httpx.AsyncClient) -> None:
    resp = await http.post("/api/v1/inference/up", json={"model": QWEN32, "dtype": "float16",
                                                         "additional_args": ["--tensor-parallel-size", "1"]})
    assert (resp.status_code, resp.json()) == (200, {"status": "OK"})
    for _ in range(100):
        if (await http.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.02)
    pytest.fail("vLLM did not become ready")


async def test_state_inference_up_down_and_stop(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/v1/state")).json() == {"state": "STOPPED"}
    await up(http)
    assert (await http.get("/api/v1/state")).json() == {"state": "INFERENCE"}
    assert (await http.post("/api/v1/inference/down")).json() == {"status": "OK"}
    assert (await http.get("/api/v1/state")).json() == {"state": "STOPPED"}
    await up(http)
    assert (await http.post("/api/v1/stop")).json() == {"status": "OK"}
    assert (await http.get("/api/v1/state")).json() == {"state": "STOPPED"}


async def test_inference_up_without_model_is_fastapis_422(http: httpx.AsyncClient) -> None:
    resp = await http.post("/api/v1/inference/up", json={"dtype": "float16"})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "model"]


async def test_vllm_paths_answer_only_while_inference_is_up(http: httpx.AsyncClient) -> None:
    resp = await http.get("/v1/models")
    assert (resp.status_code, resp.text) == (503, "No vLLM backend available")
    await http.post("/api/v1/inference/up", json={"model": QWEN32})
    resp = await http.post("/v1/chat/completions", json={"model": QWEN32, "messages": []})
    assert (resp.status_code, resp.text) == (503, "vLLM backend not ready")  # loading
    await up(http)
    assert (await http.get("/v1/models")).json()["data"][0]["id"] == QWEN32
    chat = await http.post("/v1/chat/completions", json={"model": QWEN32, "messages": []})
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["role"] == "assistant"
    assert (await http.get("/v1/unknown")).status_code == 404


async def test_health_livez_readyz(http: httpx.AsyncClient) -> None:
    for path in ("/health", "/livez"):
        body = (await http.get(path)).json()
        assert body["status"] == "healthy" and body["service_state"] == "STOPPED" and body["gpu"]["count"] == 1
    await http.post("/api/v1/inference/up", json={"model": QWEN32})
    assert (await http.get("/livez")).status_code == 503  # inference running, not healthy yet
    assert (await http.get("/readyz")).json() == {"ready": False}
    await up(http)
    assert (await http.get("/livez")).json()["managers"]["inference"] == {"running": True, "healthy": True}


async def test_only_unprefixed_paths(http: httpx.AsyncClient, ml: MLNodeServer) -> None:
    resp = await http.get("/v3.0.8/api/v1/state")
    assert (resp.status_code, resp.json()) == (404, {"detail": "Not Found"})
    assert ml.node.requests[-1] == {"method": "GET", "path": "/v3.0.8/api/v1/state", "status": 404}


async def test_poc_needs_vllm_then_posts_batches_to_the_callback(http: httpx.AsyncClient) -> None:
    resp = await http.post("/api/v1/inference/pow/init/generate", json=POC)
    assert (resp.status_code, resp.json()) == (503, {"detail": "No vLLM backends available"})
    await up(http)
    async with run_simulator(generation="latest") as net:  # its ML callback server records what arrives
        url = f"{net.callback_url}/v2/poc-batches/{QWEN32.replace('/', '%252F')}"
        resp = await http.post("/api/v1/inference/pow/init/generate", json=POC | {"url": url})
        assert resp.status_code == 200 and resp.json()["status"] == "OK"
        assert (await http.get("/api/v1/inference/pow/status")).json()["status"] == "GENERATING"
        for _ in range(200):
            if len(net.poc_batches()) >= 2:
                break
            await asyncio.sleep(0.02)
        await http.post("/api/v1/inference/pow/stop")
        assert (await http.get("/api/v1/inference/pow/status")).json()["status"] == "IDLE"
        batches = net.poc_batches()
    assert len(batches) >= 2
    first = batches[0]
    assert first["kind"] == "generated" and first["model"] == QWEN32
    assert first["path"] == "/v2/poc-batches/Qwen%252FQwen3-32B-FP8/generated"
    body: dict[str, Any] = first["body"]
    assert {k: body[k] for k in ("block_hash", "block_height", "public_key", "node_id")} == {
        "block_hash": POC["block_hash"], "block_height": 101, "public_key": "pk", "node_id": 2}
    assert [a["nonce"] for a in body["artifacts"]] == [2, 5, 8, 11]  # node_id + k * node_count
    assert body["artifacts"][0]["vector_b64"] == artifact_vector(POC["block_hash"], "pk", 2)
    assert body["encoding"] == {"dtype": "f16", "k_dim": 12, "endian": "le"}


async def test_callback_outside_allowed_targets_is_not_contacted(http: httpx.AsyncClient, ml: MLNodeServer) -> None:
    await up(http)
    await http.post("/api/v1/inference/pow/init/generate", json=POC | {"url": "http://10.0.0.21:9100/v2/poc-batches/x"})
    for _ in range(100):
        if ml.node.callbacks:
            break
        await asyncio.sleep(0.02)
    await http.post("/api/v1/inference/pow/stop")
    record = ml.node.callbacks[0]
    assert record["url"] == "http://10.0.0.21:9100/v2/poc-batches/x/generated" and "status" not in record
    assert record["error"].startswith("not contacted: 10.0.0.21 is outside")


async def test_validation_request_posts_the_result(http: httpx.AsyncClient) -> None:
    await up(http)
    good = {"nonce": 2, "vector_b64": artifact_vector(POC["block_hash"], "pk", 2)}
    bad = {"nonce": 5, "vector_b64": "AAAA"}
    async with run_simulator(generation="latest") as net:
        body = POC | {"nonces": [2, 5], "validation": {"artifacts": [good, bad]},
                      "url": f"{net.callback_url}/v2/poc-batches/m"}
        resp = await http.post("/api/v1/inference/pow/generate", json=body)
        assert resp.status_code == 200 and resp.json()["status"] == "queued"
        for _ in range(100):
            if net.poc_batches():
                break
            await asyncio.sleep(0.02)
        result = net.poc_batches()[0]
    assert result["kind"] == "validated" and result["path"] == "/v2/poc-batches/m/validated"
    assert {k: result["body"][k] for k in ("n_total", "n_mismatch", "mismatch_nonces", "fraud_detected")} == {
        "n_total": 2, "n_mismatch": 1, "mismatch_nonces": [5], "fraud_detected": True}


def test_cli_prints_its_address_and_serves() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "gonka_operator.cli", "simulate-ml-node", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=15), "no address line within 15 s"
        line = proc.stdout.readline()
        assert line.startswith("ML-node stand-in listening on http://127.0.0.1:"), line
        url = line.split("listening on ")[1].strip().rstrip("/")
        assert httpx.get(f"{url}/api/v1/state").json() == {"state": "STOPPED"}
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
