"""Argo CD's own components as host processes against the session's local control plane, the way
Argo CD's e2e setup runs them (argo-cd Procfile, v3.6.1): redis (Debian's redis-server), the
repo-server and the application-controller (the `argocd` binary of hack/build-argocd.sh, component
chosen by ARGOCD_BINARY_NAME, ARGOCD_FAKE_IN_CLUSTER=true so that the in-cluster destination is the
kubeconfig's cluster). No API server, no UI, no dex: the tests drive Argo CD through its custom
resources (Application, AppProject) and its ConfigMap, as a GitOps setup does.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import yaml

from helpers import wait_for
from procs import Kubectl, ManagedProcess, free_port

NAMESPACE = "argocd"
PART_OF = {"app.kubernetes.io/part-of": "argocd"}
REFRESH = "argocd.argoproj.io/refresh"
TIMINGS: list[tuple[str, float]] = []


def timing(what: str, seconds: float) -> None:
    """Record a figure; tests/gitops/conftest.py prints them all at the end of the session."""
    TIMINGS.append((what, seconds))


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "gitops test", "GIT_AUTHOR_EMAIL": "test@localhost",
           "GIT_COMMITTER_NAME": "gitops test", "GIT_COMMITTER_EMAIL": "test@localhost",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo.parent), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


class GitRepo:
    """A local repository Argo CD reads through a file:// URL."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")
        self.url = f"file://{path}"

    def commit(self, message: str) -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD")


class ArgoCD:
    """redis + repo-server + application-controller, and the objects they need in `argocd`."""

    def __init__(self, bin_dir: Path, tools_bin: Path, kubectl: Kubectl, kubeconfig: str, workdir: Path,
                 argocd_cm: dict[str, str]) -> None:
        self.bin_dir, self.tools_bin, self.kubectl, self.workdir = bin_dir, tools_bin, kubectl, workdir
        self.argocd_cm = argocd_cm
        workdir.mkdir(parents=True, exist_ok=True)
        # the controller takes its namespace from the kubeconfig's context
        config = yaml.safe_load(Path(kubeconfig).read_text())
        for ctx in config.get("contexts", []):
            ctx["context"]["namespace"] = NAMESPACE
        self.kubeconfig = workdir / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.redis_port, self.repo_port = free_port(), free_port()
        self.procs: list[ManagedProcess] = []
        self.timings: dict[str, float] = {}

    # --- setup ----------------------------------------------------------------------------------------

    def install(self) -> None:
        start = time.monotonic()
        crds = self.bin_dir / "crds"
        self.kubectl.run("apply", "--server-side", "-f", str(crds))
        self.kubectl.wait_established("applications.argoproj.io", "appprojects.argoproj.io")
        self.kubectl.run("create", "namespace", NAMESPACE, check=False)
        objects: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "argocd-cm", "namespace": NAMESPACE,
                          "labels": {"app.kubernetes.io/name": "argocd-cm", **PART_OF}},
             "data": self.argocd_cm},
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "argocd-rbac-cm", "namespace": NAMESPACE,
                          "labels": {"app.kubernetes.io/name": "argocd-rbac-cm", **PART_OF}}},
            {"apiVersion": "v1", "kind": "Secret",
             "metadata": {"name": "argocd-secret", "namespace": NAMESPACE,
                          "labels": {"app.kubernetes.io/name": "argocd-secret", **PART_OF}}},
            # argocd-server would create the default project; without it, the tests do
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
             "metadata": {"name": "default", "namespace": NAMESPACE},
             "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
                      "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}},
        ]
        self.kubectl.run("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects))
        self.timings["install CRDs, argocd-cm, default project"] = time.monotonic() - start

    def start(self) -> None:
        self.install()
        start = time.monotonic()
        home = self.workdir / "home"
        for d in ("home", "tls", "ssh", "gpg", "gpg-source", "plugins", "tmp"):
            (self.workdir / d).mkdir(exist_ok=True)
        common = {"ARGOCD_FAKE_IN_CLUSTER": "true", "KUBECONFIG": str(self.kubeconfig), "HOME": str(home),
                  "TMPDIR": str(self.workdir / "tmp"),
                  "ARGOCD_TLS_DATA_PATH": str(self.workdir / "tls"), "ARGOCD_SSH_DATA_PATH": str(self.workdir / "ssh"),
                  # helm (the repo-server runs `helm template`) and git from the tool cache and Debian
                  "PATH": f"{self.bin_dir}:{self.tools_bin}:/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1"}
        redis = shutil.which("redis-server")
        assert redis, "redis-server is missing: bash hack/install-apt.sh gitops"
        self._spawn("redis", [redis, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(self.workdir)], {}, self.redis_port)
        argocd = str(self.bin_dir / "argocd")
        controller_metrics = free_port()
        self._spawn("argocd-repo-server", [
            argocd, "--loglevel", "info", "--address", "127.0.0.1", "--port", str(self.repo_port),
            "--metrics-address", "127.0.0.1", "--metrics-port", str(free_port()),
            # TLS with the self-signed certificate it generates, as in upstream's e2e setup
            "--redis", f"127.0.0.1:{self.redis_port}"], {
            **common, "ARGOCD_BINARY_NAME": "argocd-repo-server", "ARGOCD_GPG_ENABLED": "false",
            "ARGOCD_GNUPGHOME": str(self.workdir / "gpg"), "ARGOCD_GPG_DATA_PATH": str(self.workdir / "gpg-source"),
            "ARGOCD_PLUGINSOCKFILEPATH": str(self.workdir / "plugins")}, self.repo_port)
        self._spawn("argocd-application-controller", [
            argocd, "--loglevel", "info", "--redis", f"127.0.0.1:{self.redis_port}",
            "--repo-server", f"127.0.0.1:{self.repo_port}",
            "--metrics-port", str(controller_metrics), "--status-processors", "4", "--operation-processors", "2",
            "--app-resync", "60", "--self-heal-timeout-seconds", "2",
            # keep each resource's health in the Application's status (v3 default: only in redis, for
            # the API server) so that the tests can read the health Argo CD computed per resource
            "--persist-resource-health"], {
            **common, "ARGOCD_BINARY_NAME": "argocd-application-controller",
            "HOSTNAME": "argocd-application-controller-0"}, controller_metrics)
        self.timings["start redis, repo-server, application-controller"] = time.monotonic() - start

    def _spawn(self, name: str, args: list[str], env: dict[str, str], port: int) -> None:
        """Start a component and wait until it listens on `port` (on 127.0.0.1)."""
        proc = ManagedProcess(name, args, env, self.workdir)
        proc.start()
        self.procs.append(proc)

        def listening() -> bool:
            assert proc.proc is not None and proc.proc.poll() is None, f"{name} exited:\n{proc.log_tail()}"
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, 60, lambda: f"{name} listening on {port}:\n{proc.log_tail()}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()  # a component that failed to start must not leave the others running
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail(lines)}" for p in self.procs)

    def assert_running(self) -> None:
        for p in self.procs:
            assert p.proc is not None and p.proc.poll() is None, f"{p.name} exited:\n{p.log_tail()}"

    # --- Applications --------------------------------------------------------------------------------

    def apply_application(self, app: dict[str, Any]) -> None:
        self.kubectl.run("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(app))

    def app(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.kubectl.json("get", "applications.argoproj.io", name, "-n", NAMESPACE)
        return result

    def refresh(self, name: str, kind: str = "normal") -> None:
        self.kubectl.run("annotate", "--overwrite", "-n", NAMESPACE, "applications.argoproj.io", name,
                         f"{REFRESH}={kind}")

    def wait_refreshed(self, name: str, timeout: float = 60) -> dict[str, Any]:
        """After refresh(): the controller removes the annotation once it compared again."""
        return wait_for(lambda: (a := self.app(name)) and REFRESH not in a["metadata"].get("annotations", {}) and a,
                        timeout, lambda: f"Application {name} refreshed; {self.logs(10)}")

    def wait_state(self, name: str, sync: str | None, health: str | None, timeout: float = 180,
                   revision: str | None = None) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            self.assert_running()
            app = self.app(name)
            status = app.get("status") or {}
            ok = (sync is None or status.get("sync", {}).get("status") == sync) and \
                 (health is None or status.get("health", {}).get("status") == health) and \
                 (revision is None or status.get("sync", {}).get("revision") == revision)
            return app if ok else None

        def describe() -> str:
            status = (self.app(name).get("status") or {})
            brief = {k: status.get(k) for k in ("sync", "health", "operationState", "conditions")}
            resources = [(r.get("kind"), r.get("name"), r.get("status"), (r.get("health") or {}).get("status"),
                          (r.get("health") or {}).get("message")) for r in status.get("resources", [])]
            return f"Application {name} sync={sync} health={health}: {brief}\nresources: {resources}\n{self.logs(15)}"

        return wait_for(reached, timeout, describe, interval=0.5)


def resource(app: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    """The Application's entry for one managed resource (sync status, health as Argo CD computed it)."""
    for r in (app.get("status") or {}).get("resources", []):
        if r.get("kind") == kind and r.get("name") == name:
            return dict(r)
    raise AssertionError(f"{kind}/{name} not among the resources of {app['metadata']['name']}")
