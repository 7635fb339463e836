"""The ML pod's routing proxy for real: Debian's nginx with the operator's rendered config
(`builders/mlnode_proxy.render_nginx_conf`) in front of the ML-node stand-in, on loopback.

What the api of v0.2.14 sends (broker `PoCUrlWithVersion` / `InferenceUrlWithVersion`) must reach
mlnode unprefixed, on both Service ports, for every version; unprefixed paths pass unchanged. The
ML stand-in records the path it received, so each check looks at both ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import wait_for
from procs import MLProxy, MLStandIn

VERSIONS = ("v3.0.8", "v3.0.12-post3", "v4.1.0")
QWEN32 = "Qwen/Qwen3-32B-FP8"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nginx-logs")


@pytest.fixture(scope="module")
def ml(logs: Path) -> Iterator[MLStandIn]:
    with MLStandIn(logs, load_seconds=0.1) as node:
        yield node


@pytest.fixture(scope="module")
def proxy(ml: MLStandIn, logs: Path) -> Iterator[tuple[str, str]]:
    """(management URL, inference URL) of an nginx in front of `ml`."""
    with MLProxy(ml.port, logs) as nginx:
        yield f"http://127.0.0.1:{nginx.management_port}", f"http://127.0.0.1:{nginx.inference_port}"


def last_path(ml: MLStandIn) -> str:
    return str(ml.requests()[-1]["path"])


def test_ml_standin_alone_serves_only_unprefixed_paths(ml: MLStandIn) -> None:
    assert httpx.get(f"{ml.url}/api/v1/state").json() == {"state": "STOPPED"}
    resp = httpx.get(f"{ml.url}/v3.0.8/api/v1/state")
    assert (resp.status_code, resp.json()) == (404, {"detail": "Not Found"})


@pytest.mark.parametrize("version", VERSIONS)
def test_management_port_strips_any_version_prefix(proxy: tuple[str, str], ml: MLStandIn, version: str) -> None:
    mgmt, _ = proxy
    resp = httpx.get(f"{mgmt}/{version}/api/v1/state?x=1")
    assert resp.status_code == 200 and resp.json()["state"] in ("STOPPED", "INFERENCE")
    assert last_path(ml) == "/api/v1/state?x=1"
    resp = httpx.get(f"{mgmt}/{version}/livez")
    assert resp.status_code == 200 and last_path(ml) == "/livez"


def test_management_port_passes_unprefixed_paths_unchanged(proxy: tuple[str, str], ml: MLStandIn) -> None:
    mgmt, _ = proxy
    assert httpx.get(f"{mgmt}/api/v1/state").status_code == 200 and last_path(ml) == "/api/v1/state"
    # mlnode's own /v1/... (vLLM) paths are not mistaken for a version
    httpx.get(f"{mgmt}/v1/models")
    assert last_path(ml) == "/v1/models"
    assert httpx.get(f"{mgmt}/nope").status_code == 404 and last_path(ml) == "/nope"


def test_inference_up_through_the_proxy_with_a_large_body(proxy: tuple[str, str], ml: MLStandIn) -> None:
    mgmt, inference = proxy
    # nginx's default client_max_body_size is 1 MiB; upstream's config (and ours) lifts it
    big_args = ["--x", "y" * (3 * 1024 * 1024)]
    resp = httpx.post(f"{mgmt}/v3.0.8/api/v1/inference/up",
                      json={"model": QWEN32, "dtype": "float16", "additional_args": big_args}, timeout=30)
    assert (resp.status_code, resp.json()) == (200, {"status": "OK"})
    assert last_path(ml) == "/api/v1/inference/up"

    def models() -> httpx.Response:
        return httpx.get(f"{inference}/v1/models", timeout=5)

    answer = wait_for(lambda: (r := models()).status_code == 200 and r, 10, "vLLM up through the inference port")
    assert answer.json()["data"][0]["id"] == QWEN32


def test_inference_port_passes_unprefixed_paths_unchanged(proxy: tuple[str, str], ml: MLStandIn) -> None:
    mgmt, inference = proxy
    httpx.post(f"{mgmt}/api/v1/inference/up", json={"model": QWEN32, "dtype": "float16", "additional_args": []})
    resp = httpx.post(f"{inference}/v1/chat/completions", json={"model": QWEN32, "messages": []}, timeout=10)
    assert last_path(ml) == "/v1/chat/completions"
    assert resp.status_code in (200, 503)  # 503 "vLLM backend not ready" while it loads: still mlnode's answer
    assert httpx.get(f"{inference}/api/v1/state").status_code == 200 and last_path(ml) == "/api/v1/state"


@pytest.mark.parametrize("version", VERSIONS)
def test_inference_port_strips_any_version_prefix(proxy: tuple[str, str], ml: MLStandIn, version: str) -> None:
    # the api calls http://host:5050/<version>/health and /<version>/v1/... (InferenceUrlWithVersion)
    _, inference = proxy
    resp = httpx.get(f"{inference}/{version}/health")
    assert last_path(ml) == "/health", f"mlnode got {last_path(ml)!r}: the inference port kept the prefix"
    assert resp.status_code == 200
    httpx.get(f"{inference}/{version}/v1/models")
    assert last_path(ml) == "/v1/models"
