"""The InferenceNode's status tells what the network node found when it called the ML node.

The real operator against the real API server; the network-node stand-in (latest, ML-node version
v3.0.8, no route-everything shortcut) whose broker calls the registered host; for the reachable case
the real nginx with the operator's rendered proxy config in front of a loopback ML stand-in.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gonka_operator.builders.mlnode_proxy import render_nginx_conf
from helpers import wait_for
from procs import Kubectl, MLStandIn, Nginx, Operator, StandIn, find_nginx, free_port

pytestmark = pytest.mark.integration


def external(name: str, admin_url: str, host: str, poc_port: int, inference_port: int) -> str:
    return f"""
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {{name: {name}}}
spec:
  adminURL: {admin_url}
  model: Qwen/Qwen3-32B-FP8
  gpus: 1
  hardwareType: H100
  external: {{host: {host}, inferencePort: {inference_port}, pocPort: {poc_port}}}
"""


@pytest.fixture
def truthful(logs: Path, kubectl: Kubectl, namespace: str) -> Iterator[StandIn]:
    """A latest stand-in that calls exactly the registered hosts (loopback only), frozen clock."""
    sim = StandIn("latest", logs, ml_node=False, name=f"standin-truth-{uuid.uuid4().hex[:4]}", args=[
        "--mlnode-version", "v3.0.8", "--block-time", "0", "--state-delay", "0", "--broker-interval", "0.5"])
    sim.start()
    yield sim
    kubectl.run("delete", "inferencenodes", "--all", "-n", namespace, "--timeout=90s", check=False)
    sim.stop()


def registry(kubectl: Kubectl, name: str, namespace: str) -> dict[str, Any]:
    obj = kubectl.get("inferencenode", name, namespace) or {}
    result: dict[str, Any] = (obj.get("status") or {}).get("registry") or {}
    return result


def test_unreachable_external_ml_node_is_failed_with_the_reason_on_the_cr(
        operator: Operator, kubectl: Kubectl, truthful: StandIn, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=external("gpu-far", truthful.url, "10.0.0.21", 8080, 5050))
    reg = wait_for(lambda: (r := registry(kubectl, "gpu-far", namespace)).get("currentStatus") == "FAILED" and r,
                   60, lambda: f"gpu-far FAILED on the CR; registry {registry(kubectl, 'gpu-far', namespace)}; "
                   f"stand-in {truthful.nodes().get('gpu-far')}")
    assert reg["failureReason"] == "not contacted: 10.0.0.21 is outside the stand-in's --allow-targets (loopback)"


def test_external_ml_node_behind_the_proxy_serves_and_earns_poc_weight(
        operator: Operator, kubectl: Kubectl, truthful: StandIn, namespace: str, logs: Path) -> None:
    binary = find_nginx()
    if binary is None:
        pytest.skip("nginx is not installed and `bash hack/install-apt.sh nginx` could not install it")
    with MLStandIn(logs, f"ml-truth-{uuid.uuid4().hex[:4]}", batch_interval=0.2) as ml:
        mgmt, inference = free_port(), free_port()
        config = render_nginx_conf(upstream=f"127.0.0.1:{ml.port}", management_listen=mgmt,
                                   inference_listen=inference)
        with Nginx(binary, config, logs, [mgmt, inference], name=f"nginx-truth-{mgmt}"):
            kubectl.run("apply", "-n", namespace, "-f", "-",
                        input=external("gpu-near", truthful.url, "127.0.0.1", mgmt, inference))
            reg = wait_for(lambda: (r := registry(kubectl, "gpu-near", namespace)).get("currentStatus") == "INFERENCE"
                           and r, 60,
                           lambda: f"gpu-near INFERENCE on the CR; {registry(kubectl, 'gpu-near', namespace)}")
            assert reg.get("mlNodeVersion") == "v3.0.8" and not reg.get("failureReason")
            assert any(r["path"] == "/api/v1/inference/up" for r in ml.requests())

            truthful.poc("open")
            wait_for(lambda: truthful.poc_batches(), 30, "PoC batches at the stand-in's callback server")
            truthful.poc("close")
            reg = wait_for(lambda: (r := registry(kubectl, "gpu-near", namespace)).get("pocWeight") and r, 60,
                           lambda: f"pocWeight on the CR; {registry(kubectl, 'gpu-near', namespace)}")
            entry = truthful.nodes()["gpu-near"]
            assert reg["pocWeight"] == entry["state"]["epoch_ml_nodes"]["Qwen/Qwen3-32B-FP8"]["poc_weight"] > 0
            assert reg["currentStatus"] == "INFERENCE"
            kubectl.run("delete", "inferencenode", "gpu-near", "-n", namespace, "--timeout=60s")
