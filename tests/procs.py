"""Processes the integration tests run for real: kubectl, the operator, the admin-API stand-in."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import httpx

from helpers import wait_for

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Kubectl:
    def __init__(self, binary: Path, kubeconfig: str) -> None:
        self.binary, self.kubeconfig = binary, kubeconfig

    def run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.binary), "--kubeconfig", self.kubeconfig, *args], input=input,
                              capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """Poll, because `kubectl wait --for=condition=Established` fails instead of waiting while a
        fresh CRD has no conditions yet."""
        query = 'jsonpath={.status.conditions[?(@.type=="Established")].status}'
        for name in crds:
            wait_for(lambda name=name: self.run("get", "crd", name, "-o", query, check=False).stdout == "True",
                     timeout, f"CRD {name} Established")

    def install_crds(self, path: Path) -> None:
        """Server-side apply the CRDs in `path` and wait until they are served. Right after start-up
        the API server may still be installing its own API groups, so the apply is retried."""
        wait_for(lambda: self.run("apply", "--server-side", "-f", str(path), check=False).returncode == 0, 30,
                 lambda: self.run("apply", "--server-side", "-f", str(path), check=False).stderr)
        self.wait_established("networknodes.gonka.ai", "inferencenodes.gonka.ai")

    def get(self, kind: str, name: str, namespace: str) -> Any:
        proc = self.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None


class ManagedProcess:
    """A child process with its output in a log file, stopped for sure at teardown."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "<no log>"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class StandIn(ManagedProcess):
    """`gonka-operator simulate-network-node`, driven through its /debug endpoints."""

    def __init__(self, generation: str, log_dir: Path, models: str = "Qwen/Qwen3-32B-FP8,"
                 "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(f"standin-{generation}", [str(VENV_BIN / "gonka-operator"), "simulate-network-node",
                                                   "--host", "127.0.0.1", "--port", str(self.port),
                                                   "--generation", generation, "--models", models,
                                                   "--state-delay", "1"], {}, log_dir)

    def start(self) -> None:
        super().start()
        wait_for(lambda: httpx.get(f"{self.url}/debug/requests", timeout=1).status_code == 200, 30,
                 lambda: f"stand-in on {self.url}: {self.log_tail()}")

    def nodes(self) -> dict[str, Any]:
        return {e["node"]["id"]: e for e in httpx.get(f"{self.url}/admin/v1/nodes", timeout=5).json()}

    def saved_config(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = httpx.get(f"{self.url}/debug/config", timeout=5).json()
        return result

    def requests(self) -> dict[str, int]:
        result: dict[str, int] = httpx.get(f"{self.url}/debug/requests", timeout=5).json()
        return result

    def fault(self, mode: str, seconds: float, delay: float = 0) -> None:
        httpx.post(f"{self.url}/debug/faults", json={"mode": mode, "seconds": seconds, "delay": delay},
                   timeout=5).raise_for_status()

    def remove(self, node_id: str) -> None:
        httpx.delete(f"{self.url}/admin/v1/nodes/{node_id}", timeout=5).raise_for_status()


class Operator(ManagedProcess):
    """The real operator (`gonka-operator run`) as a separate process, as users run it."""

    def __init__(self, kubeconfig: str, log_dir: Path, env: dict[str, str], name: str = "operator") -> None:
        self.health_port = free_port()
        super().__init__(name, [str(VENV_BIN / "gonka-operator"), "run", "--verbose",
                                f"--liveness=http://127.0.0.1:{self.health_port}/healthz"],
                         {"KUBECONFIG": kubeconfig, **env}, log_dir)

    def start(self) -> None:
        super().start()

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "operator exited"
            return httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1).status_code == 200

        wait_for(healthy, 60, lambda: f"operator liveness; log:\n{self.log_tail()}")
        time.sleep(0)  # liveness answers once kopf's startup handlers ran
