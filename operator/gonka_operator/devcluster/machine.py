"""What the real node changes on this machine, and how to look at it: sysctls, the system paths
containerd/the kubelet/CNI create, iptables chains, mounts, processes (`machine_snapshot`, compared
before `up` and after `down`), and whether a real node can run here at all.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .node_config import CGROUP_ROOT
from .procs import ClusterError

GUARD_CHAIN = "GONKA-REALNODE-GUARD"
# Directories the kubelet, containerd or the CNI plugins may create outside the cluster dir whatever
# their configuration; those absent before the start are removed (when empty) by stop().
SYSTEM_PATHS = ("/var/lib/gonka-real-0", "/var/log/containers", "/var/log/pods", "/var/lib/kubelet", "/run/netns",
                "/run/containerd/s", "/run/containerd", "/var/lib/cni/networks", "/var/lib/cni", "/etc/cni/net.d",
                "/etc/cni", "/opt/cni")
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



def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = sysctl_path(name).read_text().strip()
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


def sh(argv: Sequence[str], check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
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
            for line in sh([tool]).stdout.splitlines():
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
    ipsets = sh(["ipset", "list", "-n"]).stdout.split() if shutil.which("ipset") else []
    links = [ln.split(":")[1].strip().split("@")[0] for ln in sh(["ip", "-o", "link"]).stdout.splitlines()
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


def mounts() -> list[str]:
    return [ln.split()[1].replace("\\040", " ") for ln in Path("/proc/self/mounts").read_text().splitlines()]


def ours(word: str) -> bool:
    return word.startswith(("KUBE-", "CNI-", GUARD_CHAIN)) or word.startswith("KUBE-ROUTER")


def split_rule(rule: str) -> list[str]:
    import shlex

    return shlex.split(rule)


def descendants(pid: int) -> list[int]:
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
