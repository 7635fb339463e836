"""Processes the integration tests run for real: kubectl, the operator, the admin-API stand-in."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import httpx
import pytest

from gonka_operator.builders.mlnode_proxy import render_nginx_conf
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
        # a second start would orphan the running process (no stop() reaches it any more)
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is already running"
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


class MLStandIn(ManagedProcess):
    """`gonka-operator simulate-ml-node` on a free loopback port (unprefixed paths only, like mlnode)."""

    def __init__(self, log_dir: Path, name: str = "ml-standin", *, load_seconds: float = 0.2,
                 batch_interval: float = 0.2, extra: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(name, [str(VENV_BIN / "gonka-operator"), "simulate-ml-node", "--host", "127.0.0.1",
                                "--port", str(self.port), "--load-seconds", str(load_seconds),
                                "--batch-interval", str(batch_interval), *extra], {}, log_dir)

    def start(self) -> None:
        super().start()
        wait_for(lambda: httpx.get(f"{self.url}/livez", timeout=1).status_code == 200, 30,
                 lambda: f"ML stand-in on {self.url}: {self.log_tail()}")

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = httpx.get(f"{self.url}/stand-in/v1/requests", timeout=5).json()
        return result


NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/bin/nginx")
ROOT = Path(__file__).resolve().parents[1]


def find_nginx(install: bool = True) -> str | None:
    """The Debian nginx binary; when missing, `hack/install-apt.sh nginx` is tried once."""
    found = shutil.which("nginx") or next((c for c in NGINX_CANDIDATES if Path(c).exists()), None)
    if found is None and install:
        subprocess.run(["bash", str(ROOT / "hack" / "install-apt.sh"), "nginx"], capture_output=True, timeout=600,
                       check=False)
        return find_nginx(install=False)
    return found


class Nginx(ManagedProcess):
    """The real nginx as a plain process: `-p <dir>/ -c <conf> -e stderr`, config rendered by the caller.

    Its prefix (pid, temp files) is a fresh directory under /tmp that nginx's workers can enter: run as
    root, nginx starts them as `nobody`, and pytest's own temp dirs are private to root.
    """

    def __init__(self, binary: str, config: str, log_dir: Path, ports: Sequence[int], name: str = "nginx") -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="gonka-nginx-"))
        self.workdir.chmod(0o755)
        self.conf = self.workdir / "nginx.conf"
        self.conf.write_text(config)
        self.ports = list(ports)
        args = [binary, "-p", f"{self.workdir}/", "-c", str(self.conf), "-e", "stderr"]
        if "daemon off;" not in config:
            args += ["-g", "daemon off;"]
        super().__init__(name, args, {}, log_dir)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        super().stop(sig, timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self) -> None:
        super().start()

        def listening() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"nginx exited: {self.log_tail()}"
            for port in self.ports:
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) != 0:
                        return False
            return True

        wait_for(listening, 20, lambda: f"nginx on {self.ports}: {self.log_tail()}")


def nginx_or_skip() -> str:
    binary = find_nginx()
    if binary is None:
        pytest.skip("nginx is not installed and `bash hack/install-apt.sh nginx` could not install it")
    return binary


class MLProxy(Nginx):
    """The ML pod's routing proxy on loopback: Debian nginx with the operator's rendered config
    (`builders/mlnode_proxy.render_nginx_conf`) in front of an ML stand-in on `upstream_port`."""

    def __init__(self, upstream_port: int, log_dir: Path) -> None:
        self.management_port, self.inference_port = free_port(), free_port()
        config = render_nginx_conf(upstream=f"127.0.0.1:{upstream_port}", management_listen=self.management_port,
                                   inference_listen=self.inference_port)
        super().__init__(nginx_or_skip(), config, log_dir, [self.management_port, self.inference_port])


class StandIn(ManagedProcess):
    """`gonka-operator simulate-network-node`, driven through its /debug and /stand-in/v1 endpoints.

    The latest generation's broker really calls every registered ML node. Entries of kwok pods have
    cluster DNS names that do not resolve on this machine, so by default (`ml_node=None` → True for
    latest) a loopback `simulate-ml-node` stands in for all of them: `--connect-to '*=<it>'` and no
    version prefix (there is no proxy in front of it). `ml_node=False` shows what the real api sees
    without one (FAILED with the reason); `args` adds or overrides flags (e.g. `--mlnode-version`).
    """

    def __init__(self, generation: str, log_dir: Path, models: str = "Qwen/Qwen3-32B-FP8,"
                 "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8", *, ml_node: bool | None = None,
                 args: Sequence[str] = (), name: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        latest = generation == "latest"
        self.ml = MLStandIn(log_dir, f"{name or 'standin-' + generation}-ml") if (
            ml_node if ml_node is not None else latest) else None
        extra: list[str] = []
        if latest:
            self.public_port, self.callback_port, self.chain_port = free_port(), free_port(), free_port()
            self.public_url = f"http://127.0.0.1:{self.public_port}"
            self.callback_url = f"http://127.0.0.1:{self.callback_port}"
            self.chain_url = f"http://127.0.0.1:{self.chain_port}"  # CometBFT-shaped :26657/status
            extra += ["--public-port", str(self.public_port), "--ml-callback-port", str(self.callback_port),
                      "--chain-port", str(self.chain_port),
                      "--broker-interval", "1", "--broker-retry", "3"]
            if self.ml is not None:
                extra += ["--connect-to", f"*=127.0.0.1:{self.ml.port}", "--mlnode-version", ""]
        super().__init__(name or f"standin-{generation}",
                         [str(VENV_BIN / "gonka-operator"), "simulate-network-node",
                          "--host", "127.0.0.1", "--port", str(self.port),
                          "--generation", generation, "--models", models,
                          "--state-delay", "1", *extra, *args], {}, log_dir)

    def start(self) -> None:
        if self.ml is not None:
            self.ml.start()
        super().start()
        wait_for(lambda: httpx.get(f"{self.url}/debug/requests", timeout=1).status_code == 200, 30,
                 lambda: f"stand-in on {self.url}: {self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        super().stop(sig, timeout)
        if self.ml is not None:
            self.ml.stop(sig, timeout)

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

    # -- latest generation: epoch, PoC and broker controls (stand-in only) --------------------------

    def poc(self, action: str) -> dict[str, Any]:
        """`open`, `validate`, `close`, `confirmation-start`, `confirmation-end` → /v1/epochs/latest."""
        resp = httpx.post(f"{self.url}/stand-in/v1/poc", json={"action": action}, timeout=5)
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    def broker_round(self) -> None:
        httpx.post(f"{self.url}/stand-in/v1/broker/round", timeout=60).raise_for_status()

    def poc_batches(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = httpx.get(f"{self.url}/stand-in/v1/poc-batches", timeout=5).json()
        return result

    def epoch(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.public_url}/v1/epochs/latest", timeout=5).json()
        return result


class Operator(ManagedProcess):
    """The real operator (`gonka-operator run`) as a separate process, as users run it."""

    def __init__(self, kubeconfig: str, log_dir: Path, env: dict[str, str], name: str = "operator") -> None:
        """Each named operator holds its own Lease (`gonka-<name>` in `default`, 4 s), so the
        processes of separate tests, which watch separate namespaces, do not wait for each other;
        pass GONKA_LEASE_NAME in `env` to make operators compete for one."""
        self.health_port = free_port()
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        lease_name = re.sub(r"[^a-z0-9-]+", "-", f"gonka-{name}".lower())[:50].strip("-") + f"-{digest}"
        lease = {"GONKA_LEASE_NAME": lease_name, "GONKA_LEASE_NAMESPACE": "default", "GONKA_LEASE_SECONDS": "4"}
        super().__init__(name, [str(VENV_BIN / "gonka-operator"), "run", "--verbose",
                                f"--liveness=http://127.0.0.1:{self.health_port}/healthz"],
                         {"KUBECONFIG": kubeconfig, **lease, **env}, log_dir)

    def start(self) -> None:
        super().start()

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "operator exited"
            return httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1).status_code == 200

        wait_for(healthy, 60, lambda: f"operator liveness; log:\n{self.log_tail()}")
        time.sleep(0)  # liveness answers once kopf's startup handlers ran
