"""LocalCluster: etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on loopback.

Real binaries (built by hack/build-tools.sh) rather than a fake API, because the operator's claims
(CEL admission, server-side apply, garbage collection, GPU scheduling, Deployment availability)
are only worth something when a real API server and real controllers check them.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .certs import SERVICE_CIDR, Pki, generate_pki, write_kubeconfig
from .machine import host_ip
from .procs import ClusterError, Proc, _cmdline, free_ports, https_context, probe, spawn, stop_all, wait_until
from .realnode import RealNode
from .tools import data_file, find_bin_dir

STAGE_FILES = (
    "stage-node-initialize.yaml",
    "stage-node-heartbeat-with-lease.yaml",
    "stage-pod-ready.yaml",
    "stage-pod-complete.yaml",
    "stage-pod-delete.yaml",
)
STATE_FILE = "state.json"


class LocalCluster:
    """A throw-away Kubernetes control plane with 4 kwok nodes (2 CPU, 2 with 8 nvidia.com/gpu).

    `with LocalCluster() as c:` starts it and stops it; `c.kubeconfig` is an admin kubeconfig.
    Without `workdir` a temporary directory is used and removed by stop().
    """

    def __init__(self, workdir: Path | None = None, bin_dir: Path | None = None, timeout: float = 120.0,
                 detach: bool = False, real_node: bool = False):
        self._own_workdir = workdir is None
        self.workdir: Path = Path(workdir or tempfile.mkdtemp(prefix="gonka-devcluster-")).resolve()
        self._bin_dir = bin_dir
        self.timeout = timeout
        # detach=False: the components die with the process that started them (even on SIGKILL);
        # the CLI detaches so they outlive `up`.
        self.detach = detach
        self.kubeconfig: Path = self.workdir / "kubeconfig"
        self.server: str = ""
        self.procs: list[Proc] = []
        self.pki = Pki(self.workdir / "pki")
        # real_node: also start `real-0` (containerd + kubelet + kube-proxy + kube-router + CoreDNS),
        # where pods really run; see realnode.py. Needs root and `build-tools.sh --real-node`.
        self.want_real_node = real_node
        self.real_node: RealNode | None = None

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_bin_dir()
        return self._bin_dir

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, exc: type[BaseException] | None, val: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- start ---------------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        bin_dir = self.bin_dir  # before anything is spawned: a cold build may take a long time
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start(bin_dir)
        except BaseException:
            self.stop(remove=False)  # keep the logs the error message points at
            raise
        return self

    def _start(self, bin_dir: Path) -> None:
        node_ip = host_ip() if self.want_real_node else None
        pki = generate_pki(self.pki.directory, extra_ips=(node_ip,) if node_ip else ())
        etcd_port, peer_port, api_port, kcm_port, sched_port = free_ports(5)
        self.server = f"https://127.0.0.1:{api_port}"
        write_kubeconfig(self.kubeconfig, self.server, pki, "admin")
        kcm_kc = write_kubeconfig(self.workdir / "kube-controller-manager.kubeconfig", self.server, pki,
                                  "kube-controller-manager")
        sched_kc = write_kubeconfig(self.workdir / "kube-scheduler.kubeconfig", self.server, pki,
                                    "kube-scheduler")
        kwok_kc = write_kubeconfig(self.workdir / "kwok.kubeconfig", self.server, pki, "kwok")
        w = self.workdir

        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn("etcd", [
            "--name=devcluster", f"--data-dir={w / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=devcluster={peer_url}",
            # Test data is disposable; skipping fsync is what makes etcd fast on a shared disk.
            "--unsafe-no-fsync", "--quota-backend-bytes=2147483648", "--auto-compaction-retention=1",
        ])
        wait_until(lambda: probe(f"{etcd_url}/health"), self.timeout, etcd, "etcd /health")

        api = self._spawn("kube-apiserver", [
            f"--etcd-servers={etcd_url}",
            *self._apiserver_network_flags(node_ip, pki), f"--secure-port={api_port}",
            f"--cert-dir={w / 'kube-apiserver-certs'}",
            f"--tls-cert-file={pki.apiserver_cert}", f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=Node,RBAC",
            # Signing key + issuer make the TokenRequest API work: the controller-manager mints
            # its per-controller tokens with it, and tests mint ServiceAccount tokens.
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--requestheader-client-ca-file={pki.ca_cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.client_cert('front-proxy-client')}",
            f"--proxy-client-key-file={pki.client_key('front-proxy-client')}",
            "--allow-privileged=true", "--profiling=false",
        ])
        ctx = https_context(pki.ca_cert, pki.client_cert("admin"), pki.client_key("admin"))
        wait_until(lambda: probe(f"{self.server}/readyz?verbose", ctx), self.timeout, api,
                   "kube-apiserver /readyz", [etcd])

        kcm = self._spawn("kube-controller-manager", [
            f"--kubeconfig={kcm_kc}", f"--authentication-kubeconfig={kcm_kc}",
            f"--authorization-kubeconfig={kcm_kc}",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}",
            f"--cert-dir={w / 'kube-controller-manager-certs'}",
            "--leader-elect=false",  # single instance; skips waiting out a stale lease on restart
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.sa_key}", f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}", f"--cluster-signing-key-file={pki.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*", "--kube-api-qps=100", "--kube-api-burst=200",
            # PVCs must bind for pods to schedule; with no cloud, the test-only hostPath
            # provisioner serves the default StorageClass (storageclass.yaml).
            "--enable-hostpath-provisioner=true",
        ])
        sched = self._spawn("kube-scheduler", [
            f"--kubeconfig={sched_kc}", f"--authentication-kubeconfig={sched_kc}",
            f"--authorization-kubeconfig={sched_kc}",
            "--bind-address=127.0.0.1", f"--secure-port={sched_port}",
            f"--cert-dir={w / 'kube-scheduler-certs'}", "--leader-elect=false",
        ])
        kwok_cfg = [f"--config={data_file(f)}" for f in STAGE_FILES]
        kwok = self._spawn("kwok", [
            f"--kubeconfig={kwok_kc}", *kwok_cfg,
            "--manage-all-nodes=false", "--manage-nodes-with-label-selector=type=kwok",
            "--node-lease-duration-seconds=40", "--cidr=10.244.0.0/16",
        ], env={"KWOK_WORKDIR": str(w / "kwok")})  # never pick up a user's ~/.kwok/kwok.yaml
        unverified = https_context(None)
        for proc, port in ((kcm, kcm_port), (sched, sched_port)):
            check = functools.partial(probe, f"https://127.0.0.1:{port}/healthz", unverified)
            wait_until(check, self.timeout, proc, f"{proc.name} /healthz", [etcd, api])

        with self.api_client() as api_client:
            core = client.CoreV1Api(api_client)
            self._create_nodes(core)
            self._create_storage_class(client.StorageV1Api(api_client))
            everyone = [etcd, api, kcm, sched]
            wait_until(lambda: _nodes_not_ready(core), self.timeout, kwok,
                       "4 kwok nodes Ready and untainted", everyone)
            wait_until(lambda: _missing_default_sa(core), self.timeout, kcm,
                       "ServiceAccount default/default", [etcd, api, sched, kwok])
        if self.want_real_node:
            self.real_node = RealNode(self.workdir, self.bin_dir, detach=self.detach, timeout=self.timeout)
            self.save_state()
            self.real_node.start(self.server, pki, self.api_client)

    @staticmethod
    def _apiserver_network_flags(node_ip: str | None, pki: Pki) -> list[str]:
        if node_ip is None:
            # The `kubernetes` Endpoints may not hold a loopback address, so the reconciler would
            # only log errors; nothing in this cluster dials the service IP anyway.
            return ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]
        # Real pods reach the API server through the `kubernetes` Service: it needs endpoints (the
        # lease reconciler writes the advertised address), and that address must not be loopback.
        # The API server reaches the kubelet (logs, exec) on its InternalIP with the admin cert.
        return [
            "--bind-address=0.0.0.0", f"--advertise-address={node_ip}", "--endpoint-reconciler-type=lease",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={pki.client_cert('admin')}",
            f"--kubelet-client-key={pki.client_key('admin')}",
            f"--kubelet-certificate-authority={pki.ca_cert}",
        ]

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = spawn(name, [str(self.bin_dir / name), *args], self.workdir, env, self.detach)
        self.procs.append(proc)
        self.save_state()  # at once, so `down` can clean up even after a start that was killed
        return proc

    def _create_nodes(self, core: Any) -> None:
        for node in yaml.safe_load_all(data_file("nodes.yaml").read_text()):
            try:
                core.create_node(node)
            except ApiException as e:
                if e.status != 409:  # already there after a restart on the same data dir
                    raise

    def _create_storage_class(self, storage: Any) -> None:
        try:
            storage.create_storage_class(yaml.safe_load(data_file("storageclass.yaml").read_text()))
        except ApiException as e:
            if e.status != 409:
                raise

    # ---- use / stop ----------------------------------------------------------------------------

    def api_client(self) -> Any:
        """A fresh `kubernetes.client.ApiClient` for the admin kubeconfig (close it when done).

        Separate from the library's global default config so several clusters can coexist.
        """
        # The kubernetes package ships no annotations for its config helpers.
        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def healthy(self) -> bool:
        if not self.procs or not all(p.alive() for p in self.procs):
            return False
        if self.real_node is not None and not self.real_node.healthy():
            return False
        ctx = https_context(self.pki.ca_cert, self.pki.client_cert("admin"), self.pki.client_key("admin"))
        return probe(f"{self.server}/readyz", ctx) is None

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Stop the kube-apiserver, keep it down `down_seconds`, start it again with the same flags
        (same port, certificates and etcd) and return once /readyz answers.

        For fault tests: every client sees its connections and watches drop and must reconnect.
        Needs the processes: a cluster started by this object or re-attached with from_state()
        (attach() knows none).
        """
        old = next((p for p in self.procs if p.name == "kube-apiserver"), None)
        if old is None or not old.alive():
            raise ClusterError("no running kube-apiserver known to this LocalCluster")
        argv = _cmdline(old.pid)
        stop_all([old])
        if not old.group_gone():
            raise ClusterError(f"kube-apiserver (pid {old.pid}) still running after SIGKILL")
        time.sleep(down_seconds)  # the outage is the point
        # A cluster this process did not start (from_state) must outlive it, like `up` made it.
        detach = self.detach or any(p.popen is None for p in self.procs)
        new = spawn("kube-apiserver", argv, self.workdir, None, detach)
        self.procs[self.procs.index(old)] = new
        self.save_state()
        ctx = https_context(self.pki.ca_cert, self.pki.client_cert("admin"), self.pki.client_key("admin"))
        etcd = [p for p in self.procs if p.name == "etcd"]
        wait_until(lambda: probe(f"{self.server}/readyz?verbose", ctx), self.timeout, new,
                   "kube-apiserver /readyz after a restart", etcd)

    def stop(self, remove: bool | None = None) -> None:
        """Stop every component (whole process groups). `remove` defaults to: we made the dir."""
        if self.procs:
            self._remove_hostpath_volumes()
        if self.real_node is not None:
            problems = self.real_node.stop()  # first: its pods and CNI need the API server gone last
            self.real_node = None
            if problems:
                stop_all(list(reversed(self.procs)))
                self.procs = []
                raise ClusterError(f"real node: {'; '.join(problems)}")
        stop_all(list(reversed(self.procs)))
        leftovers = [p.name for p in self.procs if not p.group_gone()]
        self.procs = []
        if leftovers:
            raise ClusterError(f"still running after SIGKILL: {', '.join(leftovers)}")
        if self._own_workdir if remove is None else remove:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _remove_hostpath_volumes(self) -> None:
        """The hostPath provisioner's directories (/tmp/hostpath_pv/<uuid>) of this cluster's PVs: with
        the controller-manager gone nobody reclaims them, and every run would leave them in /tmp."""
        try:
            with self.api_client() as api_client:
                pvs = client.CoreV1Api(api_client).list_persistent_volume(_request_timeout=5).items
        except Exception:  # best effort: an API server that is already down has no answer
            return
        for pv in pvs:
            path = pv.spec.host_path.path if pv.spec and pv.spec.host_path else None
            if path and Path(path).parent == Path("/tmp/hostpath_pv"):
                shutil.rmtree(path, ignore_errors=True)

    # ---- detached use (the CLI) ----------------------------------------------------------------

    def save_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "bin_dir": str(self.bin_dir),
            "real_node": self.want_real_node,
            "procs": [{"name": p.name, "pid": p.pid, "exe": p.exe} for p in self.procs],
        }
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def attach(cls, kubeconfig: Path) -> LocalCluster:
        """Use an already running cluster (started elsewhere) through its admin kubeconfig.

        stop() on the result never touches that cluster's processes or files.
        """
        kubeconfig = kubeconfig.resolve()
        cfg = yaml.safe_load(kubeconfig.read_text())
        current = next(c for c in cfg["contexts"] if c["name"] == cfg["current-context"])
        cluster = cls(workdir=kubeconfig.parent)
        cluster.kubeconfig = kubeconfig
        cluster.server = next(
            c["cluster"]["server"] for c in cfg["clusters"] if c["name"] == current["context"]["cluster"]
        )
        return cluster

    @classmethod
    def from_state(cls, workdir: Path) -> LocalCluster | None:
        """Re-attach to a cluster started by another process in `workdir`, or None if none is recorded."""
        try:
            state = json.loads((workdir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        cluster = cls(workdir=workdir, bin_dir=Path(state["bin_dir"]))
        cluster.server = state["server"]
        cluster.kubeconfig = Path(state["kubeconfig"])
        cluster.procs = [
            Proc(name=p["name"], pid=p["pid"], exe=p["exe"], log=workdir / f"{p['name']}.log")
            for p in state["procs"]
        ]
        cluster.want_real_node = bool(state.get("real_node"))
        cluster.real_node = RealNode.from_state(workdir)
        return cluster


def _nodes_not_ready(core: Any) -> str | None:
    blocking = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
    problems = []
    names = []
    for node in core.list_node(label_selector="type=kwok").items:
        names.append(node.metadata.name)
        ready = [c.status for c in node.status.conditions or [] if c.type == "Ready"]
        taints = [t.key for t in node.spec.taints or [] if t.key in blocking]
        if ready != ["True"] or taints:
            problems.append(f"{node.metadata.name}: Ready={ready} taints={taints}")
    if len(names) < 4:
        problems.append(f"only nodes {names}")
    return "; ".join(problems) or None


def _missing_default_sa(core: Any) -> str | None:
    try:
        core.read_namespaced_service_account("default", "default")
    except ApiException as e:
        return f"HTTP {e.status}"
    return None
