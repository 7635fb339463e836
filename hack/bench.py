"""`make bench`: convergence, write amplification, admin-API load, memory and latency of the operator.

Runs on a fresh local control plane (real kube-apiserver + etcd + controller-manager + scheduler,
kwok nodes) with the admin-API stand-in, the operator as a separate process, and prints a table
plus a JSON file (bench-results.json). The baseline of the ratio is measured in the same run:
`kubectl apply --server-side` of exactly the children the operator would create (rendered by
`gonka-operator render`), into a fresh namespace, until every Deployment is Available. The
InferenceNodes are applied the same way (server-side, in the same chunks).

    .venv/bin/python hack/bench.py [--n 500] [--poll 10] [--samples 20]
    .venv/bin/python hack/bench.py --scale [--sizes 100,500,1000]   # `make bench SCALE=1`

`--scale` runs each N on its own fresh control plane and prints one table: convergence and raw
apply time (side by side, same cluster), their ratio, writes per node, operator CPU seconds per
node, peak RSS and the registry poll's wall and CPU time at that N, each with its target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # reuse the tests' process wrappers (kubectl, stand-in, operator)

from bench_memory import import_baseline_mib, per_kind_costs  # noqa: E402
from bench_report import print_scale, print_single  # noqa: E402

from gonka_operator.cli import render_manifest  # noqa: E402
from gonka_operator.devcluster import LocalCluster  # noqa: E402
from helpers import wait_for  # noqa: E402
from procs import Kubectl, Operator, StandIn, free_port  # noqa: E402

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
WRITE_VERBS = ("POST", "PATCH", "APPLY", "PUT", "DELETE")
# every kind the operator writes for an InferenceNode (the PodDisruptionBudget, the preload Job and an
# adminURL node's proxy ConfigMap included, so that no child escapes the count)
OPERATOR_RESOURCES = ("inferencenodes", "deployments", "services", "networkpolicies", "persistentvolumeclaims",
                      "poddisruptionbudgets", "jobs", "configmaps")


def inference_nodes(n: int, prefix: str) -> list[dict[str, Any]]:
    return [{"apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode", "metadata": {"name": f"{prefix}-{i}"},
             "spec": {"networkNodeRef": {"name": "gonka"}, "model": "Qwen/Qwen3-32B-FP8", "gpus": 1,
                      "hardwareType": "H100", "hfCache": {"hostPath": "/mnt/shared"}}} for i in range(n)]


NETWORK_NODE = {"apiVersion": "gonka.ai/v1alpha1", "kind": "NetworkNode", "metadata": {"name": "gonka"},
                "spec": {"keyName": "k", "accountPubKey": "pub", "publicHost": "gonka.example.com",
                         "keyringPasswordSecretRef": {"name": "keyring", "key": "password"}}}


def dump(objs: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(o) for o in objs)


def add_gpu_nodes(kubectl: Kubectl, count: int) -> None:
    nodes = [{"apiVersion": "v1", "kind": "Node",
              "metadata": {"name": f"kwok-bench-{i}", "annotations": {"kwok.x-k8s.io/node": "fake"},
                           "labels": {"type": "kwok", "kubernetes.io/hostname": f"kwok-bench-{i}",
                                      "nvidia.com/gpu.present": "true"}},
              "status": {"capacity": {"cpu": "256", "memory": "2Ti", "pods": "110", "nvidia.com/gpu": "110"},
                         "allocatable": {"cpu": "256", "memory": "2Ti", "pods": "110", "nvidia.com/gpu": "110"}}}
             for i in range(count)]
    kubectl.run("apply", "-f", "-", input=dump(nodes))


def write_counts(kubectl: Kubectl) -> dict[str, float]:
    """apiserver_request_total of write verbs, by verb and resource (the API server's own count)."""
    counts: dict[str, float] = {}
    for line in kubectl.run("get", "--raw", "/metrics").stdout.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.index("}")].split(","))
        verb, resource = labels.get("verb", "").strip('"'), labels.get("resource", "").strip('"')
        sub = labels.get("subresource", "").strip('"')
        # Workload status (Deployment conditions…) is written by kube-controller-manager, not by us.
        if sub == "status" and resource != "inferencenodes":
            continue
        if verb in WRITE_VERBS and resource in OPERATOR_RESOURCES:
            key = f"{verb} {resource}{'/' + sub if sub else ''}"
            counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def ready_count(kubectl: Kubectl, ns: str) -> int:
    items = kubectl.json("get", "inferencenodes", "-n", ns)["items"]
    conditions = [(i.get("status") or {}).get("conditions", []) for i in items]
    return sum(any(c["type"] == "Ready" and c["status"] == "True" for c in conds) for conds in conditions)


def available_count(kubectl: Kubectl, ns: str) -> int:
    items = kubectl.json("get", "deployments", "-n", ns)["items"]
    return sum((d.get("status") or {}).get("availableReplicas", 0) >= 1 for d in items)


def wait_progress(what: str, count: Callable[[], int], n: int, deadline: float, every: float = 5.0,
                  start: float | None = None) -> None:
    """Wait until `count()` reaches n, printing "what k/n after s" (seconds since `start`) every `every`
    seconds (a burst of 1000 takes minutes: the bench must not look hung)."""
    start = time.monotonic() if start is None else start
    last = time.monotonic()
    done = 0
    while time.monotonic() - start < deadline:
        with contextlib.suppress(Exception):  # the API server or the stand-in is busy: not yet
            done = count()
        if done >= n:
            print(f"  {what} {done}/{n} after {time.monotonic() - start:.0f} s", flush=True)
            return
        if time.monotonic() - last >= every:
            last = time.monotonic()
            print(f"  {what} {done}/{n} after {last - start:.0f} s", flush=True)
        time.sleep(1)
    raise AssertionError(f"{what}: {done}/{n} after {deadline:.0f} s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/<pid>/stat fields 14, 15), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def histogram(metrics_url: str, name: str) -> tuple[float, float]:
    """(sum, count) of a Prometheus histogram on the operator's /metrics."""
    total = count = 0.0
    for line in httpx.get(metrics_url, timeout=10).text.splitlines():
        if line.startswith(f"{name}_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            count = float(line.rsplit(" ", 1)[1])
    return total, count


def peak_rss_mib(pid: int, field: str = "VmHWM") -> float:
    """The process's peak resident set (VmHWM), or its current one (field="VmRSS"), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def apply_server_side(kubectl: Kubectl, ns: str, objs: list[dict[str, Any]], chunk: int = 200) -> threading.Thread:
    """Start `kubectl apply --server-side` of `objs` in the background (the progress lines go on
    meanwhile), the same way for the baseline's children and for the operator's InferenceNodes: one
    object after the other, in calls of `chunk` objects (one call of 4000 objects outlasts kubectl's
    timeout on a loaded machine). `join_apply` waits for it and raises what it raised."""
    def run() -> None:
        try:
            for i in range(0, len(objs), chunk):
                kubectl.run("apply", "--server-side", "--field-manager=bench", "-n", ns, "-f", "-",
                            input=dump(objs[i:i + chunk]))
        except BaseException as exc:  # re-raised by join_apply in the bench's thread
            thread.error = exc  # type: ignore[attr-defined]

    thread = threading.Thread(target=run, daemon=True)
    thread.error = None  # type: ignore[attr-defined]
    thread.start()
    return thread


def join_apply(thread: threading.Thread) -> None:
    thread.join()
    if thread.error is not None:  # type: ignore[attr-defined]
        raise thread.error  # type: ignore[attr-defined]


def measure_raw_apply(kubectl: Kubectl, n: int, deadline: float) -> float:
    kubectl.run("create", "namespace", "bench-raw")
    docs = inference_nodes(n, "raw")
    children = render_manifest([{**d, "metadata": {**d["metadata"], "namespace": "bench-raw",
                                                   "uid": "00000000-0000-0000-0000-000000000000"}} for d in docs])
    for child in children:  # no owner exists in this namespace: the baseline is plain objects
        child["metadata"].pop("ownerReferences", None)
        # not labelled as the operator's: it would watch (and hold in memory) the baseline's objects too
        for meta in (child["metadata"], child.get("spec", {}).get("template", {}).get("metadata", {})):
            if MANAGED_BY_LABEL in meta.get("labels", {}):
                meta["labels"][MANAGED_BY_LABEL] = "gonka-bench-raw"
    start = time.monotonic()
    applying = apply_server_side(kubectl, "bench-raw", children)
    wait_progress("raw apply: Deployments Available", lambda: available_count(kubectl, "bench-raw"), n, deadline,
                  start=start)
    join_apply(applying)
    return time.monotonic() - start


def measure_operator(kubectl: Kubectl, standin: StandIn, n: int, deadline: float) -> tuple[float, dict[str, float]]:
    kubectl.run("create", "namespace", "bench-op")
    kubectl.run("create", "secret", "generic", "keyring", "-n", "bench-op", "--from-literal=password=pw")
    kubectl.run("apply", "-n", "bench-op", "-f", "-", input=dump([NETWORK_NODE]))
    wait_for(lambda: kubectl.get("networknode", "gonka", "bench-op").get("status"), 60, "NetworkNode status")
    before = write_counts(kubectl)
    start = time.monotonic()
    applying = apply_server_side(kubectl, "bench-op", inference_nodes(n, "ml"))
    wait_progress("operator: registered", lambda: sum(k.startswith("ml-") for k in standin.nodes()), n, deadline,
                  start=start)
    wait_progress("operator: Ready", lambda: ready_count(kubectl, "bench-op"), n, deadline, start=start)
    join_apply(applying)
    elapsed = time.monotonic() - start
    return elapsed, before


REGISTERED = 'jsonpath={.status.conditions[?(@.type=="Registered")].status}'


def measure_latency(kubectl: Kubectl, standin: StandIn, samples: int) -> tuple[list[float], list[float]]:
    """Apply one InferenceNode at a time: (apply → entry in the registry, apply → status Registered=True).
    The second includes the status coalescing window and kubectl's own start-up per check (~0.1 s)."""
    registered, shown = [], []
    for i, doc in enumerate(inference_nodes(samples, "lat")):
        start = time.monotonic()
        kubectl.run("apply", "-n", "bench-op", "-f", "-", input=dump([doc]))
        wait_for(lambda i=i: f"lat-{i}" in standin.nodes(), 30, f"lat-{i} registered", interval=0.01)
        registered.append(time.monotonic() - start)
        wait_for(lambda i=i: kubectl.run("get", "inferencenode", f"lat-{i}", "-n", "bench-op", "-o", REGISTERED,
                                         check=False).stdout == "True", 30, f"lat-{i} status Registered", interval=0.05)
        shown.append(time.monotonic() - start)
    return registered, shown


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def sample_objects(kubectl: Kubectl, ns: str) -> dict[str, Any]:
    """One live object of each kind the operator watches for an InferenceNode."""
    out = {"InferenceNode": kubectl.json("get", "inferencenode", "ml-0", "-n", ns)}
    for kind, name in (("Deployment", "ml-0-mlnode"), ("Service", "ml-0-mlnode"), ("NetworkPolicy", "ml-0-mlnode")):
        out[kind] = kubectl.json("get", kind.lower(), name, "-n", ns)
    out["Pod"] = kubectl.json("get", "pods", "-n", ns, "-l", "gonka.ai/inference-node=ml-0")["items"][0]
    return out


def run_once(n: int, poll: float, samples: int) -> dict[str, Any]:
    """One fresh control plane, stand-in and operator: every figure at N = n."""
    deadline = 120 + n * 1.0
    results: dict[str, Any] = {"n": n, "poll_seconds": poll}
    print(f"N={n}: starting a fresh control plane", flush=True)
    with tempfile.TemporaryDirectory(prefix="gonka-bench-") as tmp, LocalCluster(workdir=Path(tmp) / "cluster",
                                                                                 timeout=180) as cluster:
        logs = Path(tmp)
        kubectl = Kubectl(cluster.bin_dir / "kubectl", str(cluster.kubeconfig))
        kubectl.install_crds(ROOT / "crds")
        add_gpu_nodes(kubectl, count=(2 * n + samples) // 100 + 2)
        # No PoC window during the bench: with the stand-in's default epoch (100 blocks of 1 s) a window
        # opens ~66 s after start and closes 34 s later, in the middle of the burst and of the idle
        # intervals; each flip is a real (and correct) PDB write per registered node, not overhead, and
        # it made the counts depend on timing. The clock is not frozen (`--block-time 0`, the test
        # suite's choice): a frozen chain reports a constant seconds_until_next_poc while wall time
        # goes on, so every node's status.registry.onboarding.nextPoCAt (a moment, rounded to the
        # minute) moves each minute: 200 real status writes per minute while "idle". A live chain with
        # a ~28 h epoch keeps the moment put, as a healthy chain does.
        standin = StandIn("latest", logs, args=["--epoch-length", "100000"])
        standin.start()
        metrics_port = free_port()
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        operator = Operator(str(cluster.kubeconfig), logs, {
            "GONKA_ADMIN_URL_OVERRIDES": f"*={standin.url}", "GONKA_REGISTRY_POLL_SECONDS": str(poll),
            "GONKA_METRICS_PORT": str(metrics_port), "GONKA_METRICS_ADDRESS": "127.0.0.1"})
        try:
            print(f"N={n}: raw server-side apply of the same children", flush=True)
            results["raw_apply_seconds"] = measure_raw_apply(kubectl, n, deadline)
            operator.start()
            assert operator.proc is not None
            pid = operator.proc.pid
            results["operator_idle_rss_mib"] = peak_rss_mib(pid)  # started, NetworkNode not yet seen
            cpu_before = cpu_seconds(pid)
            print(f"N={n}: the operator converges {n} InferenceNodes", flush=True)
            results["operator_seconds"], before = measure_operator(kubectl, standin, n, deadline)
            results["ratio_operator_over_raw"] = results["operator_seconds"] / results["raw_apply_seconds"]
            # let trailing status writes (Deployment availability, first registry poll) land, then count
            time.sleep(2 * poll)
            burst = delta(write_counts(kubectl), before)
            results["operator_cpu_seconds_per_node"] = (cpu_seconds(pid) - cpu_before) / n
            results["writes_by_verb_resource"] = burst
            results["writes_per_inference_node"] = sum(burst.values()) / n
            results["status_writes_per_inference_node"] = burst.get("PATCH inferencenodes/status", 0) / n
            # without the PodDisruptionBudget (issue 13: it is to exist only during PoC windows)
            results["writes_per_inference_node_without_pdb"] = (
                sum(burst.values()) - burst.get("APPLY poddisruptionbudgets", 0)) / n
            idle_before, gets_before = write_counts(kubectl), standin.requests().get("GET /admin/v1/nodes", 0)
            polls_before = (histogram(metrics, "gonka_operator_registry_poll_duration_seconds"),
                            histogram(metrics, "gonka_operator_registry_poll_cpu_seconds"))
            time.sleep(2 * poll)
            idle = delta(write_counts(kubectl), idle_before)
            results["idle_writes_two_intervals"] = sum(idle.values())
            results["idle_writes_by_verb_resource"] = idle
            time.sleep(4 * poll)  # six intervals in all for the request rate: window edges matter less
            gets = standin.requests().get("GET /admin/v1/nodes", 0) - gets_before
            results["admin_requests_per_interval"] = gets / 6
            for key, name, (sum0, count0) in (
                    ("poll_seconds_at_n", "gonka_operator_registry_poll_duration_seconds", polls_before[0]),
                    ("poll_cpu_seconds_at_n", "gonka_operator_registry_poll_cpu_seconds", polls_before[1])):
                sum1, count1 = histogram(metrics, name)  # the polls of the idle intervals: every node a member
                results[key] = (sum1 - sum0) / (count1 - count0) if count1 > count0 else float("nan")
            results["operator_peak_rss_mib"] = peak_rss_mib(pid)
            results["operator_rss_after_mib"] = peak_rss_mib(pid, "VmRSS")  # steady state: every node known
            results["per_kind_bytes"] = per_kind_costs(sample_objects(kubectl, "bench-op"))
            print(f"N={n}: {samples} single-object applies", flush=True)
            registered, shown = measure_latency(kubectl, standin, samples)
            results["latency_p50_seconds"] = statistics.median(registered)
            results["latency_p95_seconds"] = p95(registered)
            results["status_latency_p50_seconds"], results["status_latency_p95_seconds"] = (
                statistics.median(shown), p95(shown))
        finally:
            operator.stop()
            standin.stop()
            if os.environ.get("GONKA_BENCH_LOGS"):  # keep the operator's and the stand-in's logs
                keep = Path(os.environ["GONKA_BENCH_LOGS"]) / f"n{n}"
                keep.mkdir(parents=True, exist_ok=True)
                for log in logs.glob("*.log"):
                    (keep / log.name).write_bytes(log.read_bytes())
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="InferenceNodes applied at once (1000 as an option)")
    parser.add_argument("--scale", action="store_true", help="run every N of --sizes and print one table")
    parser.add_argument("--sizes", default="100,500,1000", help="the N of --scale")
    parser.add_argument("--poll", type=float, default=10, help="registry poll interval of the operator (s)")
    parser.add_argument("--samples", type=int, default=20, help="single-object latency samples")
    parser.add_argument("--out", default="bench-results.json")
    args = parser.parse_args()
    machine = (f"{platform.machine()}, "
               f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores")
    sizes = [int(x) for x in args.sizes.split(",")] if args.scale else [args.n]
    runs = []
    for n in sizes:  # each N's figures are kept (and its row printed) as soon as it is done
        runs.append({**run_once(n, args.poll, args.samples), "import_baseline_mib": import_baseline_mib()})
        Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine,
                                              "runs": runs}, indent=2))
        if args.scale:
            print_scale(runs[-1:])
    print(f"\ngonka-operator benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {machine}, poll {args.poll:g} s")
    if args.scale:
        print_scale(runs)
    else:
        print_single(runs[0])
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
