"""`make cluster-down` leaves nothing behind: no process, mount, iptables chain or rule, ipset, bridge,
network namespace, cgroup or changed sysctl.

Runs the real CLI (`python -m gonka_operator.devcluster up --real-node` / `down`) in a fresh directory,
with a pod running on real-0 so that sandboxes, veths and CNI chains exist at `down`. Named test_0_ so
it runs before the session's real cluster starts (one real node per machine at a time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from realnode_tools import real_node_bin_dir

from gonka_operator.devcluster.machine import machine_snapshot
from gonka_operator.devcluster.node_config import NODE_NAME, TOLERATION
from gonka_operator.devcluster.realnode import owner_alive, read_owner


def _devcluster(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gonka_operator.devcluster", *args], env=env, text=True,
                          capture_output=True, timeout=600, check=False)


def test_cluster_down_leaves_the_machine_as_it_was(tmp_path: Path) -> None:
    # The snapshot needs the machine to itself: wait (GONKA_REAL_NODE_WAIT) for another real node.
    deadline = time.monotonic() + float(os.environ.get("GONKA_REAL_NODE_WAIT") or 0)
    while (owner := read_owner()) is not None and owner_alive(*owner):
        if time.monotonic() >= deadline:
            pytest.fail(f"a real node is already running ({owner[0]}); this test needs the machine to itself")
        time.sleep(5)
    env = {**os.environ, "GONKA_TOOLS_BIN": str(real_node_bin_dir())}
    before = machine_snapshot()
    directory = tmp_path / "cluster"
    up = _devcluster("up", "--real-node", "--dir", str(directory), env=env)
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        kubeconfig = up.stdout.strip().splitlines()[-1].split("=", 1)[1]
        kubectl = [str(Path(env["GONKA_TOOLS_BIN"]) / "kubectl"), "--kubeconfig", kubeconfig]
        # A pod on real-0 (CoreDNS is one already): a second sandbox with a veth and a hostPort,
        # so the portmap plugin's chains exist too.
        overrides = json.dumps({"spec": {
            "nodeSelector": {"kubernetes.io/hostname": NODE_NAME}, "tolerations": [TOLERATION],
            "containers": [{"name": "p", "image": _pause_ref(directory), "imagePullPolicy": "Never",
                            "ports": [{"containerPort": 80, "hostPort": 18080}]}]}})
        subprocess.run([*kubectl, "run", "sleeper", "--image=unused", "--restart=Never", f"--overrides={overrides}"],
                       check=True, capture_output=True)
        subprocess.run([*kubectl, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s"], check=True,
                       capture_output=True)
        during = machine_snapshot()
        assert during["links"] != before["links"], "a running pod must have added a bridge and a veth"
    finally:
        down = _devcluster("down", "--dir", str(directory), env=env)
    assert down.returncode == 0, down.stderr[-4000:]
    after = machine_snapshot()
    left = {k: sorted(set(after[k]) - set(before[k])) for k in after}
    gone = {k: sorted(set(before[k]) - set(after[k])) for k in after}
    assert not any(left.values()) and not any(gone.values()), f"left behind: {left}; changed/removed: {gone}"


def _pause_ref(directory: Path) -> str:
    return str(json.loads((directory / "realnode.json").read_text())["images"]["pause"])
