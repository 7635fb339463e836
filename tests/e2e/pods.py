"""Real pods on `real-0` for the e2e tests: servers, throw-away clients, and connection probes."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gonka_operator.devcluster.node_config import NODE_SELECTOR, TOLERATION
from helpers import wait_for

# A probe: connect (and for HTTP, GET) with a 4 s timeout, again every 0.5 s while it fails, for up to
# `patience` seconds: a pod that just started is only known to kube-router's firewall (its ipsets)
# a moment later. Prints one JSON line with the last outcome; always exits 0.
PROBE = textwrap.dedent("""\
    import json, socket, sys, time, urllib.error, urllib.request
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    deadline = time.monotonic() + float(sys.argv[4] if len(sys.argv) > 4 else 0)
    attempts = 0
    while True:
        attempts += 1
        out = {"target": f"{host}:{port}"}
        try:
            if path == "-":
                socket.create_connection((host, port), timeout=4).close()
                out["ok"] = True
            else:
                with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=4) as r:
                    out.update(ok=True, status=r.status, body=r.read(100000).decode(errors="replace"))
        except urllib.error.HTTPError as e:
            out.update(ok=True, status=e.code, body=e.read(2000).decode(errors="replace"))
        except Exception as e:
            out.update(ok=False, error=f"{type(e).__name__}: {e}")
        if out["ok"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out["attempts"] = attempts
    print(json.dumps(out))
""")


def pod_spec(image: str, command: list[str], *, port: int | None = None, sa_token: bool = False,
             mounts: dict[str, dict[str, Any]] | None = None, user: int | None = None) -> dict[str, Any]:
    """`mounts`: {mountPath: volume source} (e.g. a persistentVolumeClaim), mounted read-only; `user`:
    the uid to run as (default: the image's)."""
    container: dict[str, Any] = {"name": "main", "image": image, "imagePullPolicy": "Never", "command": command}
    if user is not None:
        container["securityContext"] = {"runAsUser": user, "runAsNonRoot": user != 0}
    if port:
        container["ports"] = [{"containerPort": port}]
        container["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 1}
    volumes = [{"name": f"v{i}", **source} for i, source in enumerate((mounts or {}).values())]
    if mounts:
        container["volumeMounts"] = [{"name": f"v{i}", "mountPath": path, "readOnly": True}
                                     for i, path in enumerate(mounts)]
    return {"nodeSelector": NODE_SELECTOR, "tolerations": [TOLERATION], "containers": [container],
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 0, **({"volumes": volumes} if volumes else {}),
            "automountServiceAccountToken": sa_token, "enableServiceLinks": False}


def start_service(core: Any, ns: str, name: str, image: str, command: list[str], ports: list[int],
                  labels: dict[str, str]) -> str:
    """A pod running `command` (listening on `ports`, ready once the first one accepts) plus a Service of
    the same name for all of them; its pod IP once kube-proxy routes to it."""
    spec = pod_spec(image, command, port=ports[0])
    spec["containers"][0]["ports"] = [{"containerPort": p} for p in ports]
    spec["restartPolicy"] = "Always"
    core.create_namespaced_pod(ns, {"metadata": {"name": name, "labels": labels}, "spec": spec})
    core.create_namespaced_service(ns, {"metadata": {"name": name}, "spec": {
        "selector": labels, "ports": [{"name": f"p{p}", "port": p, "targetPort": p} for p in ports]}})
    ip = wait_ready(core, ns, name)
    for p in ports:
        wait_proxied(ip, p)
    return ip


def start_server(core: Any, ns: str, name: str, image: str, port: int, labels: dict[str, str]) -> str:
    """A pod serving HTTP on `port` (python's http.server) plus a Service of the same name; its pod IP."""
    core.create_namespaced_pod(ns, {"metadata": {"name": name, "labels": labels},
                                    "spec": pod_spec(image, ["python3", "-m", "http.server", str(port)], port=port)})
    core.create_namespaced_service(ns, {"metadata": {"name": name},
                                        "spec": {"selector": labels, "ports": [{"port": port, "targetPort": port}]}})
    ip = wait_ready(core, ns, name)
    wait_proxied(ip, port)
    return ip


def wait_proxied(ip: str, port: int, timeout: float = 30) -> None:
    """Until kube-proxy has programmed the endpoint `ip:port` (it syncs a moment after the pod is Ready)."""
    def programmed() -> bool:
        rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=False).stdout
        return f"{ip}:{port}" in rules

    wait_for(programmed, timeout, f"kube-proxy rules for {ip}:{port}", interval=0.5)


def wait_ready(core: Any, ns: str, name: str, timeout: float = 120) -> str:
    def ready() -> str | None:
        pod = core.read_namespaced_pod(name, ns)
        conds = {c.type: c.status for c in pod.status.conditions or []}
        return pod.status.pod_ip if conds.get("Ready") == "True" else None

    return wait_for(ready, timeout, lambda: f"pod {ns}/{name} Ready: {_describe(core, ns, name)}")


def _describe(core: Any, ns: str, name: str) -> str:
    try:
        pod = core.read_namespaced_pod(name, ns)
    except ApiException as e:
        return f"HTTP {e.status}"
    statuses = [(c.name, c.state.to_dict()) for c in pod.status.container_statuses or []]
    return f"phase={pod.status.phase} conditions={pod.status.conditions} containers={statuses}"


def run_to_completion(core: Any, ns: str, image: str, command: list[str], labels: dict[str, str] | None = None,
                      sa_token: bool = False, timeout: float = 120,
                      mounts: dict[str, dict[str, Any]] | None = None, user: int | None = None) -> str:
    """Run a pod until it exits; its log. The pod is deleted afterwards."""
    name = f"run-{uuid.uuid4().hex[:8]}"
    core.create_namespaced_pod(ns, {"metadata": {"name": name, "labels": labels or {"gonka.test/role": "client"}},
                                    "spec": pod_spec(image, command, sa_token=sa_token, mounts=mounts, user=user)})
    try:
        def done() -> bool:
            return core.read_namespaced_pod(name, ns).status.phase in ("Succeeded", "Failed")

        wait_for(done, timeout, lambda: f"pod {ns}/{name} finished: {_describe(core, ns, name)}")
        return str(core.read_namespaced_pod_log(name, ns))
    finally:
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)


def probe(core: Any, ns: str, image: str, host: str, port: int, path: str = "-",
          labels: dict[str, str] | None = None, patience: float = 20) -> dict[str, Any]:
    """Connect from a throw-away pod in `ns` with `labels`, retrying for `patience` seconds while it
    fails; {"ok": bool, ...} as the pod saw it."""
    started = time.monotonic()
    log = run_to_completion(core, ns, image, ["python3", "-c", PROBE, host, str(port), path, str(patience)],
                            labels)
    result: dict[str, Any] = json.loads(log.strip().splitlines()[-1])
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def deny_all_ingress(net: Any, ns: str, name: str, pod_labels: dict[str, str],
                     allow_from: list[dict[str, Any]] | None = None, port: int | None = None) -> None:
    rule: dict[str, Any] = {"from": allow_from} if allow_from else {}
    if allow_from and port:
        rule["ports"] = [{"port": port, "protocol": "TCP"}]
    net.create_namespaced_network_policy(ns, {
        "metadata": {"name": name},
        "spec": {"podSelector": {"matchLabels": pod_labels}, "policyTypes": ["Ingress"],
                 "ingress": [rule] if allow_from else []}})


def api(e2e_api: Any) -> tuple[Any, Any]:
    return client.CoreV1Api(e2e_api), client.NetworkingV1Api(e2e_api)
