"""Helpers of the chart tests: helm and kubectl against the local control plane, releases of the
chart, ServiceAccount kubeconfigs minted with the TokenRequest API, and the recording API proxy.

Test modules import from here, never `from conftest import`: several directories have a
conftest.py, and which one that name means depends on the order pytest collects them. The shared
fixtures (kubectl, logs, standin, …) live in tests/conftest.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from conditions import operator_env, wait_condition  # noqa: F401  (re-exported for the chart tests)
from helpers import wait_for
from procs import Kubectl, ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "gonka-operator"
CRD_NAMES = ("networknodes.gonka.ai", "inferencenodes.gonka.ai")



class Helm:
    def __init__(self, binary: Path, kubeconfig: str) -> None:
        self.binary, self.kubeconfig = binary, kubeconfig

    def run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.binary), "--kubeconfig", self.kubeconfig, *args], input=input,
                              capture_output=True, text=True, timeout=180)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def template(self, *args: str, release: str = "gonka", namespace: str = "gonka-system",
                 chart: Path = CHART) -> list[dict[str, Any]]:
        out = self.run("template", release, str(chart), "--namespace", namespace, *args).stdout
        return [d for d in yaml.safe_load_all(out) if d]


def values_file(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def create_namespace(kubectl: Kubectl, name: str) -> str:
    kubectl.run("create", "namespace", name)
    kubectl.run("label", "namespace", name, "gonka.test/namespace=true")
    return name


def adopt_crds(kubectl: Kubectl, release: str, namespace: str) -> None:
    """Hand CRDs that exist already (from `kubectl apply -f crds/` of the integration suite, or from
    an earlier release) to `release`: Helm adopts objects carrying its ownership metadata."""
    for name in CRD_NAMES:
        if kubectl.run("get", "crd", name, check=False).returncode != 0:
            continue
        kubectl.run("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
        kubectl.run("annotate", "--overwrite", "crd", name, f"meta.helm.sh/release-name={release}",
                    f"meta.helm.sh/release-namespace={namespace}")


@dataclass
class Release:
    name: str
    namespace: str
    helm: Helm
    kubectl: Kubectl
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def fullname(self) -> str:
        return self.name if "gonka-operator" in self.name else f"{self.name}-gonka-operator"

    @property
    def service_account(self) -> str:
        return self.fullname

    def manifest(self) -> list[dict[str, Any]]:
        out = self.helm.run("get", "manifest", self.name, "-n", self.namespace).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    def resource_versions(self) -> dict[str, str]:
        text = self.helm.run("get", "manifest", self.name, "-n", self.namespace).stdout
        items = json.loads(self.kubectl.run("get", "-f", "-", "-o", "json", input=text).stdout).get("items", [])
        return {f"{i['kind']}/{i['metadata'].get('namespace', '')}/{i['metadata']['name']}":
                i["metadata"]["resourceVersion"] for i in items}

    def uninstall(self) -> subprocess.CompletedProcess[str]:
        return self.helm.run("uninstall", self.name, "-n", self.namespace, "--ignore-not-found")


def ensure_crds(kubectl: Kubectl) -> None:
    """The CRDs exist (installed by an earlier release, or now from crds/ as the integration suite
    does); a later chart install adopts them."""
    if any(kubectl.run("get", "crd", name, check=False).returncode != 0 for name in CRD_NAMES):
        kubectl.run("apply", "--server-side", "-f", str(ROOT / "crds"))
    wait_crds_established(kubectl)


def wait_crds_established(kubectl: Kubectl) -> None:
    kubectl.wait_established(*CRD_NAMES)


def wait_deployment_available(kubectl: Kubectl, name: str, namespace: str) -> None:
    def available() -> bool:
        dep = kubectl.get("deployment", name, namespace) or {}
        return any(c["type"] == "Available" and c["status"] == "True"
                   for c in dep.get("status", {}).get("conditions", []))

    wait_for(available, 60, f"Deployment {namespace}/{name} Available (kwok runs its pod)")


# --- ServiceAccount credentials ------------------------------------------------------------------

def admin_cluster(kubeconfig: str) -> tuple[str, str]:
    """(server URL, CA file) of the admin kubeconfig."""
    cfg = yaml.safe_load(Path(kubeconfig).read_text())
    cluster = cfg["clusters"][0]["cluster"]
    ca = cluster.get("certificate-authority")
    if ca is None:
        import base64
        import tempfile

        data = base64.b64decode(cluster["certificate-authority-data"])
        with tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False) as f:
            f.write(data)
            ca = f.name
    return cluster["server"], ca


def sa_token(kubectl: Kubectl, service_account: str, namespace: str) -> str:
    """A token of `service_account` from the TokenRequest API."""
    return kubectl.run("create", "token", service_account, "-n", namespace, "--duration=2h").stdout.strip()


def write_kubeconfig(path: Path, server: str, token: str, ca: str | None) -> str:
    cluster: dict[str, Any] = {"server": server}
    if ca:
        cluster["certificate-authority"] = ca
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
    }))
    return str(path)


class Recorder(ManagedProcess):
    """tests/chart/apirecorder.py: forwards to the API server and logs each request."""

    def __init__(self, log_dir: Path, upstream: str, ca: str, name: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests_path = log_dir / f"{name}.jsonl"
        self.requests_path.write_text("")
        super().__init__(name, [sys.executable, str(Path(__file__).with_name("apirecorder.py")),
                                "--port", str(self.port), "--upstream", upstream, "--ca", ca,
                                "--log", str(self.requests_path)], {}, log_dir)

    def start(self) -> None:
        super().start()

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"recorder exited: {self.log_tail()}"
            httpx.get(f"{self.url}/version", timeout=2)
            return True

        wait_for(up, 30, lambda: f"recorder on {self.url}: {self.log_tail()}")

    def requests(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.requests_path.read_text().splitlines() if line.strip()]
