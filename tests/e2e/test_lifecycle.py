"""Host lifecycle on the real node (issue 15): a real `kubectl drain real-0` waits through a PoC
window of the network-node stand-in and proceeds after it; the warm-key Job runs as a real pod and
its termination message (written by the kubelet, which kwok does not do) fills
`status.onboarding.warmKeyAddress`, the password nowhere.

Real: the kubelet, containerd, the pods, the PDB and the Eviction API (kubectl drain), the Job
controller, the termination message, the operator from its chart and image. Stand-ins: the api
container (`simulate-network-node`, its PoC window opened on demand) and `inferenced keys` in the
api role image (simulator/keys.py: the Cosmos SDK's file keyring prompts, made-up keys)."""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

from deploy import OPERATOR_NS, RELEASE, Host

from helpers import holds_for, wait_for

ML_PODS = "app.kubernetes.io/component=mlnode"


def _ml_pods(host: Host) -> list[dict[str, Any]]:
    items = host.json("get", "pods", "-n", host.namespace, "-l", ML_PODS)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _budgets(host: Host) -> dict[str, Any]:
    return {p["metadata"]["name"]: p for p in host.json("get", "pdb", "-n", host.namespace)["items"]}


def _available(host: Host) -> bool:
    deps = host.json("get", "deployments", "-n", host.namespace, "-l", ML_PODS)["items"]
    return len(deps) == len(host.ml_nodes) and all(
        (d.get("status") or {}).get("availableReplicas", 0) >= 1 for d in deps)


def test_kubectl_drain_of_real_0_waits_through_a_poc_window(host: Host) -> None:
    before = {p["metadata"]["name"] for p in _ml_pods(host)}
    assert len(before) == len(host.ml_nodes) and all(p["spec"]["nodeName"] == "real-0" for p in _ml_pods(host))
    assert _budgets(host) == {}, "no PDB outside PoC"
    host.standin("/stand-in/v1/poc", "POST", {"action": "open"})
    drain: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: len(_budgets(host)) == len(host.ml_nodes) and all(
            (b.get("status") or {}).get("disruptionsAllowed") == 0 and (b.get("status") or {}).get("currentHealthy")
            for b in _budgets(host).values()), 90, "a PDB per ML Deployment in the PoC window", interval=1)
        drain = subprocess.Popen([*host.kubectl, "drain", "real-0", f"--pod-selector={ML_PODS}",
                                  "--delete-emptydir-data", "--timeout=300s"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        holds_for(lambda: drain is not None and drain.poll() is None
                  and {p["metadata"]["name"] for p in _ml_pods(host)} == before, 12,
                  "kubectl drain waits and the ML pods stay during PoC", interval=1)
        host.standin("/stand-in/v1/poc", "POST", {"action": "close"})
        out, _ = drain.communicate(timeout=240)
        assert drain.returncode == 0, out
        assert "disruption budget" in out, out  # it was refused (429) and retried while PoC lasted
        assert "evicted" in out, out
        wait_for(lambda: not ({p["metadata"]["name"] for p in _ml_pods(host)} & before), 120,
                 "the ML pods evicted after PoC", interval=1)
        wait_for(lambda: _budgets(host) == {}, 60, "the PDBs gone in the Inference phase", interval=1)
    finally:
        if drain is not None and drain.poll() is None:
            drain.kill()
        host.standin("/stand-in/v1/poc", "POST", {"action": "close"})
        host.run("uncordon", "real-0")
    wait_for(lambda: _available(host), 240, "the ML Deployments available again on real-0", interval=2)


def test_the_warm_key_job_runs_as_a_real_pod_and_its_address_reaches_the_status(host: Host) -> None:
    ns, nn = host.namespace, host.network_node

    def onboarding() -> dict[str, Any]:
        return dict((host.json("get", "networknode", "-n", ns, nn).get("status") or {}).get("onboarding") or {})

    shown = wait_for(lambda: onboarding().get("warmKeyAddress") and onboarding(), 240,
                     lambda: f"status.onboarding.warmKeyAddress; now {onboarding()}", interval=2)
    assert shown["warmKeyJob"] == "Complete", shown
    address = shown["warmKeyAddress"]
    assert address.startswith("gonka1") and len(address) == 44, address
    pods = host.json("get", "pods", "-n", ns, "-l", "gonka.ai/onboarding=warm-key")["items"]
    assert pods and pods[0]["spec"]["nodeName"] == "real-0"
    message = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert json.loads(message) == {"warmKeyAddress": address, "created": True}  # the kubelet wrote it

    secret = host.json("get", "secret", "-n", ns, "keyring")
    password = base64.b64decode(secret["data"]["password"]).decode()
    # the key is on the node pod's own volume: the api container (same /root/.inference) reads it
    shown_by_api = host.run("exec", "-n", ns, f"{nn}-node-0", "-c", "api", "--", "sh", "-c",
                            'printf "%s\\n" "$0" | inferenced keys show e2e-warm-key --keyring-backend file -a',
                            password, timeout=60).stdout.strip()
    assert shown_by_api == address
    assert host.json("get", "job", "-n", ns, f"{nn}-warm-key")["status"].get("succeeded") == 1  # one run

    job_log = host.logs(ns, pods[0]["metadata"]["name"], "onboarding")
    assert address in job_log and "mnemonic" not in job_log
    places = {
        "the Job's log": job_log,
        "Events": host.run("get", "events", "-n", ns, "-o", "json").stdout,
        "the NetworkNode (status included)": json.dumps(host.json("get", "networknode", "-n", ns, nn)),
        "the Job": json.dumps(host.json("get", "job", "-n", ns, f"{nn}-warm-key")),
        "the operator's log": host.run("logs", "-n", OPERATOR_NS, f"deployment/{RELEASE}", "--tail=-1").stdout,
    }
    for where, text in places.items():
        assert password not in text, f"the keyring password appears in {where}"
