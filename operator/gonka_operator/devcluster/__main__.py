"""`python -m gonka_operator.devcluster up|down|status [--dir DIR]`: a local cluster for people.

`up` leaves the components running after it exits (their pids are in DIR/state.json) and prints
`KUBECONFIG=<path>` as its last stdout line, so `export "$(python -m gonka_operator.devcluster up |
tail -n1)"` works. Progress and diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from .cluster import LocalCluster
from .procs import ClusterError


def default_dir() -> Path:
    env = os.environ.get("GONKA_CLUSTER_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "gonka-operator" / "cluster"


def _say(msg: str) -> None:
    print(f"devcluster: {msg}", file=sys.stderr, flush=True)


def _print_ready(cluster: LocalCluster) -> None:
    _say(f"server {cluster.server}, dir {cluster.workdir}, logs {cluster.workdir}/<component>.log")
    print(f"KUBECONFIG={cluster.kubeconfig}", flush=True)


def up(directory: Path, timeout: float, real_node: bool = False) -> int:
    existing = LocalCluster.from_state(directory)
    if existing is not None and existing.healthy():
        _say("already running and healthy")
        _print_ready(existing)
        return 0
    if existing is not None:
        # Something is recorded but not healthy (a component died, the machine rebooted): the
        # certs, ports and data belong to that dead cluster, so start over from nothing.
        _say("recorded cluster is not healthy; stopping what is left of it and starting afresh")
        existing.stop(remove=True)
    shutil.rmtree(directory, ignore_errors=True)
    cluster = LocalCluster(workdir=directory, timeout=timeout, detach=True, real_node=real_node)
    # Locate (or build) the binaries before timing the start, so the figure means "start from cache".
    _ = cluster.bin_dir
    started = time.monotonic()
    try:
        cluster.start()
    except ClusterError as e:
        _say(f"start failed: {e}")
        return 1
    _say(f"started in {time.monotonic() - started:.1f} s")
    if cluster.real_node is not None:
        _say(f"real node {cluster.real_node.timings}")
    _print_ready(cluster)
    return 0


def down(directory: Path) -> int:
    existing = LocalCluster.from_state(directory)
    if existing is not None:
        existing.stop(remove=True)
    shutil.rmtree(directory, ignore_errors=True)
    _say(f"stopped, removed {directory}")
    return 0


def status(directory: Path) -> int:
    existing = LocalCluster.from_state(directory)
    if existing is None:
        _say(f"no cluster recorded in {directory}")
        return 1
    for p in [*existing.procs, *(existing.real_node.procs if existing.real_node else [])]:
        _say(f"{p.name:<24} pid {p.pid:<8} {'running' if p.alive() else 'NOT RUNNING'}")
    healthy = existing.healthy()
    _say("healthy" if healthy else "NOT healthy")
    if healthy:
        _print_ready(existing)
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gonka_operator.devcluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=None,
                        help="cluster directory (default: $GONKA_CLUSTER_DIR or "
                             "${XDG_CACHE_HOME:-~/.cache}/gonka-operator/cluster)")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds to wait for each component to become ready (default 180)")
    parser.add_argument("--real-node", action="store_true",
                        default=os.environ.get("GONKA_REAL_NODE") == "1",
                        help="also start the real node real-0 (containerd, kubelet, kube-proxy, kube-router, "
                             "CoreDNS); needs root and `hack/build-tools.sh --real-node` (or GONKA_REAL_NODE=1)")
    args = parser.parse_args(argv)
    directory = (args.dir or default_dir()).expanduser().resolve()
    try:
        if args.command == "up":
            return up(directory, args.timeout, args.real_node)
        if args.command == "down":
            return down(directory)
        return status(directory)
    except ClusterError as e:
        _say(str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
