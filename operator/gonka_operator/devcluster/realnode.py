"""The real node `real-0`: containerd + kubelet + kube-proxy + kube-router's firewall + CoreDNS.

This module starts and stops it; its names and configuration files are in node_config.py, what it
changes on the machine (and how to look at that) in machine.py.

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
import shutil
import signal
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
from .machine import (
    GUARD_CHAIN,
    SYSTEM_PATHS,
    descendants,
    host_ip,
    mounts,
    ours,
    read_sysctls,
    sh,
    split_rule,
    sysctl_path,
    unavailable_reason,
)
from .node_config import (
    BRIDGE,
    CGROUP_ROOT,
    GPU_COUNT,
    KWOK_POD_CIDR,
    NODE_NAME,
    POD_CIDR,
    RUN_DIR,
    TAINT,
    cni_config,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
    system_manifests,
)
from .procs import ClusterError, Proc, free_ports, probe, spawn, stop_all, wait_until

STATE_FILE = "realnode.json"
OWNER_FILE = Path("/run/gonka-realnode.owner")  # "<cluster dir>\n<pid of the claiming process>\n"
OWNER_LOCK = Path("/run/gonka-realnode.lock")
NODE_BINARIES = ("kubelet", "kube-proxy", "crictl", "bridge", "host-local", "loopback", "portmap", "coredns",
                 "kube-router")


def _say(msg: str) -> None:
    print(f"realnode: {msg}", file=sys.stderr, flush=True)


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
        wait_until(lambda: None if sh(["ctr", "--address", str(self.sock), "version"]).returncode == 0
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
        sh([*ipt, "-N", GUARD_CHAIN])
        sh([*ipt, "-F", GUARD_CHAIN], check=True)
        for rule in (["-o", "lo", "-j", "RETURN"], ["-o", BRIDGE, "-j", "RETURN"],
                     ["-s", POD_CIDR, "-j", "DROP"], ["-d", POD_CIDR, "-j", "DROP"],
                     ["-d", SERVICE_CIDR, "-j", "DROP"], ["-d", KWOK_POD_CIDR, "-j", "DROP"]):
            sh([*ipt, "-A", GUARD_CHAIN, *rule], check=True)
        if sh([*ipt, "-C", "POSTROUTING", "-j", GUARD_CHAIN]).returncode != 0:
            sh([*ipt, "-I", "POSTROUTING", "1", "-j", GUARD_CHAIN], check=True)

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
            ids = sh([*crictl, "pods", "-q"]).stdout.split()
            for pod in ids:
                sh([*crictl, "stopp", pod], timeout=40)
                sh([*crictl, "rmp", "-f", pod], timeout=40)
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
                for child in descendants(pid):
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
                sh(["umount", "-l", target])
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
                sh([str(exe), *args], timeout=60)
        for tool in ("iptables", "ip6tables"):
            saved = sh([f"{tool}-save"]).stdout
            table = ""
            rules: list[tuple[str, str]] = []
            chains: list[tuple[str, str]] = []
            for line in saved.splitlines():
                if line.startswith("*"):
                    table = line[1:]
                elif line.startswith(":"):
                    name = line[1:].split()[0]
                    if ours(name):
                        chains.append((table, name))
                elif line.startswith("-A") and not ours(line.split()[1]) and any(ours(w) for w in line.split()):
                    rules.append((table, line[3:]))  # a jump from a built-in chain into one of ours
            for table, rule in rules:
                sh([tool, "-w", "5", "-t", table, "-D", *split_rule(rule)])
            for table, name in chains:
                sh([tool, "-w", "5", "-t", table, "-F", name])
            for table, name in chains:
                sh([tool, "-w", "5", "-t", table, "-X", name])
        for name in sh(["ipset", "list", "-n"]).stdout.split():
            if name.startswith(("KUBE-", "kube-router", "inet6:KUBE-")):
                sh(["ipset", "destroy", name])
        for line in sh(["ip", "-o", "link"]).stdout.splitlines():
            parts = line.split(":")
            if len(parts) > 1:
                link = parts[1].strip().split("@")[0]
                if link == BRIDGE or (link.startswith("veth") and f"master {BRIDGE}" in line):
                    sh(["ip", "link", "del", link])
        if shutil.which("conntrack"):
            sh(["conntrack", "-D", "-s", POD_CIDR])
            sh(["conntrack", "-D", "-d", POD_CIDR])

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
            path = sysctl_path(name)
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
                mounted = [m for m in mounts() if m.startswith(p + "/")]
                if p in ("/var/lib/kubelet", "/var/lib/cni", str(RUN_DIR)) and not mounted:
                    shutil.rmtree(p, ignore_errors=True)
                with contextlib.suppress(OSError):
                    Path(p).rmdir()


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
