"""The real node `real-0`: containerd + kubelet + kube-proxy + kube-router's firewall + CoreDNS.

Beside the kwok nodes, pods scheduled here really run: from images imported into containerd, with a
veth on the `cni0` bridge, Services through kube-proxy's iptables rules, cluster DNS from a CoreDNS
pod, and NetworkPolicies enforced by kube-router (firewall only). The node is tainted
(`gonka.ai/real-node=true:NoSchedule`) so only pods that tolerate it land here, and advertises
`nvidia.com/gpu: 8` (status capacity patch, the documented way for an extended resource) so
GPU-requesting ML pods can run for real.

What this machine kind needs (found by hand, see issue 14):
* containerd without CAP_SYS_RESOURCE: `restrict_oom_score_adj = true`, else every sandbox fails
  with "can't get final child's PID from pipe: EOF";
* cgroup v1 with cgroupfs (`failCgroupV1: false`);
* the kubelet changes sysctls (kernel.panic, vm.overcommit_memory, ...) and the bridge plugin turns
  on ip_forward: `stop()` puts every value back.

Traffic stays on this machine: the kubelet's `resolvConf` is empty (no pod inherits the host's
resolver), CoreDNS has no `forward`, and a mangle rule drops anything from the pod range or to the
Service/pod ranges that would leave through another interface than the bridge.

Teardown order (shims outlive containerd): kubelet -> sandboxes (crictl, so CNI DEL runs) ->
containerd -> leftover shims -> kube-proxy/kube-router and their `--cleanup` modes -> mounts (lazy)
-> chains, ipsets, cni0, netns, cgroups -> sysctls.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import images
from .certs import SERVICE_CIDR, Pki, issue_client_cert, issue_serving_cert, write_kubeconfig
from .procs import ClusterError, Proc, free_ports, probe, spawn, stop_all, wait_until

NODE_NAME = "real-0"
POD_CIDR = "10.88.0.0/24"
KWOK_POD_CIDR = "10.244.0.0/16"  # kwok's fake pod IPs: never routed anywhere
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
TAINT = {"key": "gonka.ai/real-node", "value": "true", "effect": "NoSchedule"}
TOLERATION = {"key": TAINT["key"], "operator": "Equal", "value": TAINT["value"], "effect": TAINT["effect"]}
NODE_SELECTOR = {"kubernetes.io/hostname": NODE_NAME}
GPU_COUNT = 8
BRIDGE = "cni0"
GUARD_CHAIN = "GONKA-REALNODE-GUARD"
CGROUP_ROOT = "gonka-real-0"
STATE_FILE = "realnode.json"
# Directories the kubelet, containerd or the CNI plugins may create outside the cluster dir whatever
# their configuration; those absent before the start are removed (when empty) by stop().
SYSTEM_PATHS = ("/var/lib/gonka-real-0", "/var/log/containers", "/var/log/pods", "/var/lib/kubelet", "/run/netns",
                "/run/containerd/s", "/run/containerd", "/var/lib/cni/networks", "/var/lib/cni", "/etc/cni/net.d",
                "/etc/cni", "/opt/cni")
OWNER_FILE = Path("/run/gonka-realnode.owner")  # "<cluster dir>\n<pid of the claiming process>\n"
OWNER_LOCK = Path("/run/gonka-realnode.lock")
# Unix sockets (containerd's, the kubelet's pod-resources and plugin ones) must have short paths
# (108 bytes): they and the kubelet's root dir live here, not under a possibly long cluster dir.
RUN_DIR = Path("/var/lib/gonka-real-0")  # one real node per machine: cni0 and iptables are global
NODE_BINARIES = ("kubelet", "kube-proxy", "crictl", "bridge", "host-local", "loopback", "portmap", "coredns",
                 "kube-router")
# Values the kubelet, kube-proxy and the CNI plugins may change; restored by stop().
SYSCTLS = (
    "net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding", "net.ipv4.conf.default.forwarding",
    "net.ipv6.conf.all.forwarding", "net.ipv4.conf.all.route_localnet",
    "kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory", "vm.panic_on_oom",
    "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
    "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait", "net.netfilter.nf_conntrack_tcp_be_liberal",
)


def _say(msg: str) -> None:
    print(f"realnode: {msg}", file=sys.stderr, flush=True)


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def host_ip() -> str:
    """The first global IPv4 address of this machine (pods reach the API server there)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], stdout=subprocess.PIPE,
                         text=True, check=False).stdout
    for line in out.splitlines():
        m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", line)
        if m and not line.split()[1].startswith(("cni", "veth", "docker")):
            return m.group(1)
    raise ClusterError("no global IPv4 address on this machine: the real node needs one for the API server")


def unavailable_reason() -> str | None:
    """Why a real node cannot run here (None: it can)."""
    if sys.platform != "linux":
        return "the real node needs Linux"
    if os.geteuid() != 0:
        return "the real node needs root (containerd, network namespaces, iptables)"
    if not Path("/proc/self/ns/net").exists():
        return "no network namespaces on this machine"
    missing = [b for b in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ipset", "ip")
               if shutil.which(b) is None]
    if missing:
        return f"missing {', '.join(missing)}: run `bash hack/install-apt.sh realnode`"
    return None


def _sh(argv: Sequence[str], check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
                         timeout=timeout)
    if check and out.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed (code {out.returncode}): {out.stdout[-2000:]}")
    return out


# ---- what the machine looks like (cleanliness is checked against this) -------------------------


def machine_snapshot() -> dict[str, list[str]]:
    """Everything a real node can leave behind, as sorted lists (compare before `up` and after `down`)."""
    ours = ("containerd", "kubelet", "kube-proxy", "kube-router", "coredns", "pause", "crictl")
    procs = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                comm = (entry / "comm").read_text().strip()
                if comm.startswith(ours):
                    procs.append(comm)
    mounts = [ln.split()[1] for ln in Path("/proc/self/mounts").read_text().splitlines()]
    chains: list[str] = []
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool):
            table = ""
            for line in _sh([tool]).stdout.splitlines():
                if line.startswith("*"):
                    table = line[1:]
                elif line.startswith(":") and line.split()[1] == "-":
                    # A chain someone made (built-in chains, listed as ":NAME POLICY", exist as soon as
                    # anything creates their table, and iptables cannot remove a table).
                    chains.append(f"{tool}:{table}:{line[1:].split()[0]}")
                elif line.startswith(":") and line.split()[1] != "ACCEPT":
                    chains.append(f"{tool}:{table}:{line}")  # a changed policy counts
                elif line.startswith("-A"):
                    chains.append(f"{tool}:{table}:{line}")
    ipsets = _sh(["ipset", "list", "-n"]).stdout.split() if shutil.which("ipset") else []
    links = [ln.split(":")[1].strip().split("@")[0] for ln in _sh(["ip", "-o", "link"]).stdout.splitlines()
             if ":" in ln]
    netns = sorted(p.name for p in Path("/run/netns").iterdir()) if Path("/run/netns").is_dir() else []
    cgroups = sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_ROOT}"))
    paths = sorted(p for p in SYSTEM_PATHS if Path(p).exists())
    return {
        "processes": sorted(procs),
        "mounts": sorted(mounts),
        "iptables": sorted(chains),
        "ipsets": sorted(ipsets),
        "links": sorted(links),
        "netns": netns,
        "cgroups": cgroups,
        "paths": paths,
        "sysctls": sorted(f"{k}={v}" for k, v in read_sysctls().items()),
    }


# ---- configuration files -----------------------------------------------------------------------


def containerd_config(d: Path, sandbox_image: str, cni_bin: Path) -> str:
    return f"""version = 2
root = "{d / 'containerd' / 'root'}"
state = "{d / 'containerd' / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{RUN_DIR / 'containerd.sock'}"

[ttrpc]
  address = "{RUN_DIR / 'containerd.sock.ttrpc'}"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'containerd' / 'opt'}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # Without CAP_SYS_RESOURCE (this VM) runc cannot lower oom_score_adj below containerd's own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  max_concurrent_downloads = 1
  # Pod network namespaces under the state dir, not /run/netns.
  netns_mounts_under_state_dir = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d / 'containerd' / 'state' / 'runc'}"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{d / 'cni' / 'net.d'}"
    max_conf_num = 1
"""


def cni_config(d: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "gonka-real-0",
        "plugins": [
            {
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                         "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(d / "cni" / "ipam")},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(d: Path, pki: Pki, node_ip: str, port: int, healthz_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(pki.client_cert("kubelet-serving")),
        "tlsPrivateKeyFile": str(pki.client_key("kubelet-serving")),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(pki.ca_cert)}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{RUN_DIR / 'containerd.sock'}",
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        # No pod inherits the host's resolver: DNS stays inside the cluster.
        "resolvConf": "",
        "podLogsDir": str(d / "pod-logs"),
        "registerWithTaints": [TAINT],
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "maxPods": 110,
        "serializeImagePulls": False,
        # Nothing is pulled: never garbage-collect the imported images, never evict for a full disk.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "shutdownGracePeriod": "0s",
        "containerLogMaxSize": "10Mi",
    }


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": ["primary"],
        # 0 = leave the conntrack sysctls as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"masqueradeAll": False, "syncPeriod": "30s", "minSyncPeriod": "1s"},
    }


COREFILE = f""".:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    loadbalance
}}
"""
# No `forward`: names outside the cluster are refused, never sent to an outside resolver.


def system_manifests(coredns_image: str) -> list[dict[str, Any]]:
    """CoreDNS (Deployment + kube-dns Service) and the RBAC of CoreDNS and kube-router."""
    labels = {"k8s-app": "kube-dns"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": "kube-system"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "gonka:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "gonka:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gonka:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "gonka:kube-router"},
         "rules": [{"apiGroups": [""], "resources": ["namespaces", "pods", "services", "nodes", "endpoints"],
                    "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
                    "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "gonka:kube-router"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gonka:kube-router"},
         "subjects": [{"kind": "User", "name": "gonka:kube-router", "apiGroup": "rbac.authorization.k8s.io"}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
         "data": {"Corefile": COREFILE}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": "coredns", "dnsPolicy": "Default",
                      "nodeSelector": NODE_SELECTOR, "tolerations": [TOLERATION],
                      "priorityClassName": "system-cluster-critical",
                      "containers": [{
                          "name": "coredns", "image": coredns_image, "imagePullPolicy": "Never",
                          "args": ["-conf", "/etc/coredns/Corefile"],
                          "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
                          "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                          "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
                          "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                          "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                      }],
                      "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                  }}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"clusterIP": DNS_SERVICE_IP, "selector": labels,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}},
    ]


# ---- the node ----------------------------------------------------------------------------------


def read_owner() -> tuple[Path, int] | None:
    """The cluster dir and claiming pid in OWNER_FILE (pid 0 when an older file has none)."""
    try:
        lines = OWNER_FILE.read_text().split()
    except OSError:
        return None
    if not lines:
        return None
    return Path(lines[0]), int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0


def owner_alive(workdir: Path, pid: int) -> bool:
    if pid > 0:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            pass
        except PermissionError:
            return True
    stale = RealNode.from_state(workdir)
    return stale is not None and any(p.alive() for p in stale.procs)


@dataclass
class RealNode:
    """containerd + kubelet + kube-proxy + kube-router for node `real-0`, files under `workdir/real-0`."""

    workdir: Path
    bin_dir: Path
    detach: bool = False
    timeout: float = 180.0
    procs: list[Proc] = field(default_factory=list)
    sysctls_before: dict[str, str] = field(default_factory=dict)
    netns_before: list[str] = field(default_factory=list)
    paths_before: list[str] = field(default_factory=list)
    image_refs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # Only a node that took the machine (or was recorded as having taken it) cleans global state
    # (iptables, cni0, sysctls) on stop: never another cluster's running node.
    claimed: bool = False

    @property
    def dir(self) -> Path:
        return self.workdir / NODE_NAME

    @property
    def sock(self) -> Path:
        return RUN_DIR / "containerd.sock"

    # ---- start ---------------------------------------------------------------------------------

    def start(self, server: str, pki: Pki, api_client: Callable[[], Any]) -> RealNode:
        reason = unavailable_reason()
        if reason:
            raise ClusterError(reason)
        missing = [b for b in NODE_BINARIES if not os.access(self.bin_dir / b, os.X_OK)]
        if missing:
            raise ClusterError(f"{self.bin_dir} lacks {', '.join(missing)}: run `bash hack/build-tools.sh --real-node`")
        self._claim_machine()
        self.sysctls_before = read_sysctls()
        self.paths_before = [p for p in SYSTEM_PATHS if Path(p).exists()]
        self.netns_before = sorted(p.name for p in Path("/run/netns").iterdir()) if Path("/run/netns").is_dir() else []
        self.save_state()
        try:
            self._start(server, pki, api_client)
        except BaseException:
            _say(f"start failed; logs in {self.dir}")
            raise
        return self

    def _claim_machine(self) -> None:
        """Take the machine for this node (cni0, iptables and the run dir are global).

        A live real node of another cluster dir fails the start at once, or is waited for up to
        `GONKA_REAL_NODE_WAIT` seconds (two `make test` on one machine: the second waits, with a
        heartbeat). Check-and-claim runs under a flock, and the owner file names the claiming
        process too, so a node still starting (no procs recorded yet) is not taken for dead.
        """
        wait = float(os.environ.get("GONKA_REAL_NODE_WAIT") or 0)
        started = time.monotonic()
        last_said = 0.0
        while True:
            with OWNER_LOCK.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                owner = read_owner()
                if owner is None or owner[0] == self.workdir or not owner_alive(*owner):
                    if owner is not None and owner[0] != self.workdir:
                        _say(f"cleaning up what a dead real node (cluster dir {owner[0]}) left behind")
                        dead = RealNode.from_state(owner[0]) or RealNode(owner[0], self.bin_dir)
                        dead.claimed = True
                        dead.stop()
                    OWNER_FILE.write_text(f"{self.workdir}\n{os.getpid()}\n")
                    self.claimed = True
                    return
            waited = time.monotonic() - started
            if waited >= wait:
                raise ClusterError(f"a real node is already running on this machine (cluster dir {owner[0]}); "
                                   f"stop it first: python -m gonka_operator.devcluster down --dir {owner[0]} "
                                   "(or set GONKA_REAL_NODE_WAIT=<seconds> to wait for it)")
            if waited - last_said >= 30:
                _say(f"waiting for the real node of {owner[0]} to stop ({waited:.0f}/{wait:.0f} s)")
                last_said = waited
            time.sleep(5)

    def _step(self, name: str, started: float) -> None:
        self.timings[name] = round(time.monotonic() - started, 1)

    def _start(self, server: str, pki: Pki, api_client: Callable[[], Any]) -> None:
        t0 = time.monotonic()
        d = self.dir
        for sub in ("containerd", "cni/net.d", "cni/ipam", "pod-logs", "volume-plugins"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (RUN_DIR / "kubelet").mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            (d / "run").symlink_to(RUN_DIR)  # where to look from the cluster dir
        node_ip = host_ip()
        self._make_cgroups()

        t = time.monotonic()
        pause = images.pause_image()
        coredns = images.binary_image("coredns", self.bin_dir / "coredns",
                                      images.ImageConfig(entrypoint=["/coredns"], env=[], ports=[53]))
        self.image_refs = {"pause": pause.ref, "coredns": coredns.ref}
        self._step("images", t)

        # Identities: the kubelet as system:node:real-0 (Node authorizer + system:nodes), kube-proxy as
        # system:kube-proxy (bound to system:node-proxier by default), kube-router by a ClusterRole.
        issue_client_cert(pki, "kubelet", f"system:node:{NODE_NAME}", ["system:nodes"])
        issue_client_cert(pki, "kube-proxy", "system:kube-proxy", [])
        issue_client_cert(pki, "kube-router", "gonka:kube-router", [])
        issue_serving_cert(pki, "kubelet-serving", NODE_NAME, [NODE_NAME], [node_ip, "127.0.0.1"])
        kubelet_kc = write_kubeconfig(d / "kubelet.kubeconfig", server, pki, "kubelet")
        proxy_kc = write_kubeconfig(d / "kube-proxy.kubeconfig", server, pki, "kube-proxy")
        router_kc = write_kubeconfig(d / "kube-router.kubeconfig", server, pki, "kube-router")

        # containerd
        t = time.monotonic()
        (d / "containerd.toml").write_text(containerd_config(d, pause.ref, self.bin_dir))
        (d / "cni" / "net.d" / "10-gonka.conflist").write_text(json.dumps(cni_config(d), indent=2))
        ctrd = self._spawn("containerd", ["containerd", "--config", str(d / "containerd.toml")])
        wait_until(lambda: None if _sh(["ctr", "--address", str(self.sock), "version"]).returncode == 0
                   else "ctr version failed", self.timeout, ctrd, "containerd socket")
        images.import_images(str(self.sock), [pause, coredns])
        self._step("containerd", t)

        self._install_guard()

        with api_client() as ac:
            core: Any = client.CoreV1Api(ac)
            self._apply(ac, system_manifests(coredns.ref))
            # Pre-create the Node with its pod CIDR (kube-router reads it; nothing allocates CIDRs here)
            # and the taint, so no pod lands here before the taint is on.
            node = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME,
                                                               "gonka.ai/real-node": "true",
                                                               "nvidia.com/gpu.present": "true",
                                                               "nvidia.com/gpu.product": "Real-Node-Stand-In"}},
                    "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR], "taints": [TAINT]}}
            with contextlib.suppress(ApiException):
                core.create_node(node)

            t = time.monotonic()
            kport, khealth, phealth, pmetrics, rhealth = free_ports(5)
            (d / "kubelet.yaml").write_text(yaml.safe_dump(kubelet_config(d, pki, node_ip, kport, khealth)))
            kubelet = self._spawn("kubelet", [
                "kubelet", f"--config={d / 'kubelet.yaml'}", f"--kubeconfig={kubelet_kc}",
                f"--hostname-override={NODE_NAME}", f"--node-ip={node_ip}", f"--root-dir={RUN_DIR / 'kubelet'}",
                f"--cert-dir={d / 'kubelet' / 'pki'}", f"--volume-plugin-dir={d / 'volume-plugins'}", "--v=1",
            ])
            (d / "kube-proxy.yaml").write_text(yaml.safe_dump(kube_proxy_config(proxy_kc, phealth, pmetrics)))
            proxy = self._spawn("kube-proxy", ["kube-proxy", f"--config={d / 'kube-proxy.yaml'}", "--v=1"])
            wait_until(lambda: _node_ready(core), self.timeout, kubelet, f"node {NODE_NAME} Ready",
                       [ctrd, kubelet, proxy])
            # kube-router's firewall wants the node's InternalIP, which the kubelet posts on registering.
            router = self._spawn("kube-router", [
                "kube-router", f"--kubeconfig={router_kc}", f"--hostname-override={NODE_NAME}",
                "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
                "--enable-ipv6=false", f"--health-port={rhealth}", "--metrics-port=0", "-v=1",
            ])
            everyone = [ctrd, kubelet, proxy, router]
            wait_until(lambda: probe(f"http://127.0.0.1:{rhealth}/healthz"), self.timeout, router,
                       "kube-router /healthz", everyone)
            self._step("kubelet", t)
            # Extended resources a device plugin would advertise: patch status.capacity (the kubelet
            # keeps extended resources it does not manage and derives allocatable from capacity).
            core.patch_node_status(NODE_NAME, {"status": {"capacity": {"nvidia.com/gpu": str(GPU_COUNT)}}})
            wait_until(lambda: _gpus_allocatable(core), self.timeout, kubelet, "nvidia.com/gpu allocatable",
                       everyone)
            t = time.monotonic()
            apps: Any = client.AppsV1Api(ac)
            wait_until(lambda: _deployment_ready(apps, "kube-system", "coredns"), self.timeout, kubelet,
                       "CoreDNS Ready", everyone)
            self._step("coredns", t)
        self.timings["total"] = round(time.monotonic() - t0, 1)
        self.save_state()
        _say(f"{NODE_NAME} Ready (node ip {node_ip}); timings {self.timings}")

    def _spawn(self, name: str, argv: list[str]) -> Proc:
        exe = shutil.which(argv[0], path=f"{self.bin_dir}:{os.environ.get('PATH', '')}") or argv[0]
        env = {"PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}
        proc = spawn(name, [exe, *argv[1:]], self.dir, env, self.detach)
        self.procs.append(proc)
        self.save_state()
        return proc

    def _apply(self, api_client: Any, objs: list[dict[str, Any]]) -> None:
        from kubernetes import utils

        for obj in objs:
            try:
                utils.create_from_dict(api_client, obj)  # type: ignore[no-untyped-call]
            except utils.FailToCreateError as e:
                if not all(getattr(x, "status", None) == 409 for x in e.api_exceptions):
                    raise

    def _install_guard(self) -> None:
        """Drop, after every NAT decision, what would leave the machine from or to the cluster's ranges
        (a Service whose endpoints are kwok pods DNATs to addresses that exist nowhere)."""
        ipt = ["iptables", "-w", "5", "-t", "mangle"]
        _sh([*ipt, "-N", GUARD_CHAIN])
        _sh([*ipt, "-F", GUARD_CHAIN], check=True)
        for rule in (["-o", "lo", "-j", "RETURN"], ["-o", BRIDGE, "-j", "RETURN"],
                     ["-s", POD_CIDR, "-j", "DROP"], ["-d", POD_CIDR, "-j", "DROP"],
                     ["-d", SERVICE_CIDR, "-j", "DROP"], ["-d", KWOK_POD_CIDR, "-j", "DROP"]):
            _sh([*ipt, "-A", GUARD_CHAIN, *rule], check=True)
        if _sh([*ipt, "-C", "POSTROUTING", "-j", GUARD_CHAIN]).returncode != 0:
            _sh([*ipt, "-I", "POSTROUTING", "1", "-j", GUARD_CHAIN], check=True)

    def load_images(self, imgs: Sequence[images.Image]) -> None:
        """Import images into the node's containerd (those already there are skipped)."""
        images.import_images(str(self.sock), imgs)
        for img in imgs:
            self.image_refs.setdefault(img.ref.split("/")[-1].split(":")[0], img.ref)
        self.save_state()

    # ---- health / state ------------------------------------------------------------------------

    def healthy(self) -> bool:
        return bool(self.procs) and all(p.alive() for p in self.procs)

    def save_state(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        state = {
            "bin_dir": str(self.bin_dir),
            "procs": [{"name": p.name, "pid": p.pid, "exe": p.exe} for p in self.procs],
            "sysctls_before": self.sysctls_before,
            "netns_before": self.netns_before,
            "paths_before": self.paths_before,
            "images": self.image_refs,
            "timings": self.timings,
        }
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def from_state(cls, workdir: Path) -> RealNode | None:
        try:
            state = json.loads((workdir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        node = cls(workdir=workdir, bin_dir=Path(state["bin_dir"]))
        node.procs = [Proc(name=p["name"], pid=p["pid"], exe=p["exe"], log=node.dir / f"{p['name']}.log")
                      for p in state["procs"]]
        node.sysctls_before = state.get("sysctls_before", {})
        node.netns_before = state.get("netns_before", [])
        node.paths_before = state.get("paths_before", list(SYSTEM_PATHS))
        node.image_refs = state.get("images", {})
        node.timings = state.get("timings", {})
        node.claimed = True
        return node

    # ---- stop ----------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop everything and put the machine back as it was. Returns what could not be cleaned."""
        problems: list[str] = []
        if not self.claimed:
            return problems
        by_name = {p.name: p for p in self.procs}

        def stop(name: str, grace: float = 10.0) -> None:
            if name in by_name:
                stop_all([by_name[name]], grace)

        stop("kubelet")
        ctrd = by_name.get("containerd")
        if ctrd is not None and ctrd.alive() and self.sock.exists():
            crictl = [str(self.bin_dir / "crictl"), f"--runtime-endpoint=unix://{self.sock}", "--timeout=20s"]
            ids = _sh([*crictl, "pods", "-q"]).stdout.split()
            for pod in ids:
                _sh([*crictl, "stopp", pod], timeout=40)
                _sh([*crictl, "rmp", "-f", pod], timeout=40)
        stop("containerd")
        self._kill_shims()
        stop("kube-proxy")
        stop("kube-router")
        leftovers = [p.name for p in self.procs if not p.group_gone()]
        if leftovers:
            problems.append(f"still running: {', '.join(leftovers)}")
        self._unmount()
        self._clean_network()
        self._clean_cgroups()
        self._restore_sysctls()
        self._clean_files()
        with contextlib.suppress(OSError):
            owner = read_owner()
            if owner is not None and owner[0] == self.workdir:
                OWNER_FILE.unlink()
        self.procs = []
        with contextlib.suppress(OSError):
            (self.workdir / STATE_FILE).unlink()
        return problems

    def _kill_shims(self) -> None:
        """containerd's shims (and the containers under them) outlive it: find them by our socket."""
        marker = str(self.sock)
        for _ in range(2):
            victims = []
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                    if argv and argv[0].endswith(b"containerd-shim-runc-v2") and marker.encode() in b" ".join(argv):
                        victims.append(int(entry.name))
            if not victims:
                return
            for pid in victims:
                for child in _descendants(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)

    def _unmount(self) -> None:
        roots = (str(self.dir) + "/", str(RUN_DIR) + "/", "/run/netns/cni-", "/run/containerd/")
        mounts = [ln.split()[1] for ln in Path("/proc/self/mounts").read_text().splitlines()]
        for target in reversed(mounts):
            target = target.replace("\\040", " ")
            if target.startswith(roots) and Path(target).name not in self.netns_before:
                _sh(["umount", "-l", target])
        if Path("/run/netns").is_dir():
            for ns in Path("/run/netns").iterdir():
                if ns.name.startswith("cni-") and ns.name not in self.netns_before:
                    with contextlib.suppress(OSError):
                        ns.unlink()

    def _clean_network(self) -> None:
        for tool in ("kube-proxy", "kube-router"):
            exe = self.bin_dir / tool
            if exe.exists():
                args = ["--cleanup"] if tool == "kube-proxy" else ["--cleanup-config"]
                _sh([str(exe), *args], timeout=60)
        for tool in ("iptables", "ip6tables"):
            saved = _sh([f"{tool}-save"]).stdout
            table = ""
            rules: list[tuple[str, str]] = []
            chains: list[tuple[str, str]] = []
            for line in saved.splitlines():
                if line.startswith("*"):
                    table = line[1:]
                elif line.startswith(":"):
                    name = line[1:].split()[0]
                    if _ours(name):
                        chains.append((table, name))
                elif line.startswith("-A") and not _ours(line.split()[1]) and any(_ours(w) for w in line.split()):
                    rules.append((table, line[3:]))  # a jump from a built-in chain into one of ours
            for table, rule in rules:
                _sh([tool, "-w", "5", "-t", table, "-D", *_split_rule(rule)])
            for table, name in chains:
                _sh([tool, "-w", "5", "-t", table, "-F", name])
            for table, name in chains:
                _sh([tool, "-w", "5", "-t", table, "-X", name])
        for name in _sh(["ipset", "list", "-n"]).stdout.split():
            if name.startswith(("KUBE-", "kube-router", "inet6:KUBE-")):
                _sh(["ipset", "destroy", name])
        for line in _sh(["ip", "-o", "link"]).stdout.splitlines():
            parts = line.split(":")
            if len(parts) > 1:
                link = parts[1].strip().split("@")[0]
                if link == BRIDGE or (link.startswith("veth") and f"master {BRIDGE}" in line):
                    _sh(["ip", "link", "del", link])
        if shutil.which("conntrack"):
            _sh(["conntrack", "-D", "-s", POD_CIDR])
            _sh(["conntrack", "-D", "-d", POD_CIDR])

    def _make_cgroups(self) -> None:
        """The kubelet's cgroupRoot must exist in every v1 hierarchy; a new cpuset gets its parent's
        CPUs and memory nodes (an empty cpuset admits no process)."""
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            if not (hierarchy / "cgroup.procs").exists():
                continue
            top = hierarchy / CGROUP_ROOT
            top.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / knob).exists() and not (top / knob).read_text().strip():
                    (top / knob).write_text((hierarchy / knob).read_text())

    def _clean_cgroups(self) -> None:
        for top in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_ROOT}"):
            dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for p in [*dirs, top]:
                with contextlib.suppress(OSError):
                    p.rmdir()

    def _restore_sysctls(self) -> None:
        # ip_forward first: writing it resets every interface's forwarding, the rest after.
        for name in sorted(self.sysctls_before, key=lambda n: n != "net.ipv4.ip_forward"):
            value = self.sysctls_before[name]
            path = _sysctl_path(name)
            with contextlib.suppress(OSError):
                if path.read_text().strip() != value:
                    path.write_text(value + "\n")

    def _clean_files(self) -> None:
        # The kubelet links container logs from /var/log/containers into our pod-logs dir.
        logs = Path("/var/log/containers")
        if logs.is_dir():
            for link in logs.iterdir():
                with contextlib.suppress(OSError):
                    if link.is_symlink() and os.readlink(link).startswith(str(self.dir)):
                        link.unlink()
        # E.g. shim sockets live in /run/containerd/s whatever the state dir. Only empty dirs go.
        # The kubelet's device-plugin socket and the CNI result cache ignore --root-dir and dataDir:
        # when we made their trees, everything in them is ours.
        for p in SYSTEM_PATHS:
            if p not in self.paths_before:
                mounted = [m for m in _mounts() if m.startswith(p + "/")]
                if p in ("/var/lib/kubelet", "/var/lib/cni", str(RUN_DIR)) and not mounted:
                    shutil.rmtree(p, ignore_errors=True)
                with contextlib.suppress(OSError):
                    Path(p).rmdir()


def _mounts() -> list[str]:
    return [ln.split()[1].replace("\\040", " ") for ln in Path("/proc/self/mounts").read_text().splitlines()]


def _ours(word: str) -> bool:
    return word.startswith(("KUBE-", "CNI-", GUARD_CHAIN)) or word.startswith("KUBE-ROUTER")


def _split_rule(rule: str) -> list[str]:
    import shlex

    return shlex.split(rule)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _node_ready(core: Any) -> str | None:
    try:
        node = core.read_node(NODE_NAME)
    except ApiException as e:
        return f"HTTP {e.status}"
    ready = [c.status for c in node.status.conditions or [] if c.type == "Ready"]
    return None if ready == ["True"] else f"Ready={ready}"


def _gpus_allocatable(core: Any) -> str | None:
    node = core.read_node(NODE_NAME)
    have = (node.status.allocatable or {}).get("nvidia.com/gpu")
    return None if have == str(GPU_COUNT) else f"allocatable nvidia.com/gpu={have}"


def _deployment_ready(apps: Any, namespace: str, name: str) -> str | None:
    try:
        dep = apps.read_namespaced_deployment(name, namespace)
    except ApiException as e:
        return f"HTTP {e.status}"
    ready = dep.status.ready_replicas or 0
    return None if ready >= 1 else f"readyReplicas={ready}"
