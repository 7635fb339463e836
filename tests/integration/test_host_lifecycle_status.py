"""Issue 15 item 2 on the real control plane: the setup report, the chain's /status and the epoch
of the network-node stand-in become NetworkNode conditions and `kubectl get gnn` columns, an idle
host costs no status write, and a flip (catching up, a failed check, the PoC window) is written."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from conditions import condition, wait_condition
from helpers import holds_for, wait_for
from manifests import NETWORK_NODE as NN
from procs import Kubectl, Operator, StandIn

pytestmark = pytest.mark.integration
HOST_CONDITIONS = ("KeysReady", "PermissionsGranted", "ActiveInEpoch", "ChainSynced")


@pytest.fixture
def host(standin: StandIn) -> Iterator[StandIn]:
    """The session stand-in, its setup report, chain and PoC window put back whatever the test did."""
    yield standin
    httpx.post(f"{standin.url}/stand-in/v1/setup-report", json={"checks": {}}, timeout=5).raise_for_status()
    httpx.post(f"{standin.url}/stand-in/v1/chain", json={"catching_up": False}, timeout=5).raise_for_status()
    standin.poc("close")


def status(kubectl: Kubectl, namespace: str) -> dict:
    return dict(((kubectl.get("networknode", "gonka", namespace) or {}).get("status")) or {})


def columns(kubectl: Kubectl, namespace: str) -> dict[str, str]:
    out = kubectl.run("get", "gnn", "gonka", "-n", namespace).stdout.splitlines()
    return dict(zip(out[0].split(), out[1].split(), strict=False))


def test_setup_report_chain_and_epoch_are_conditions_and_columns(
        operator: Operator, kubectl: Kubectl, host: StandIn, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN)
    for ctype in HOST_CONDITIONS:
        wait_condition(kubectl, "networknode", "gonka", namespace, ctype, "True", "Passed", timeout=90)
    st = status(kubectl, namespace)
    assert st["epoch"]["phase"] == "Inference" and st["epoch"]["id"] == host.epoch()["latest_epoch"]["index"]
    assert st["chain"]["catchingUp"] is False and st["chain"]["height"] == host.epoch()["block_height"]
    assert st["weight"] == 0  # no ML node yet
    cols = columns(kubectl, namespace)
    assert (cols["PHASE"], cols["HEIGHT"], cols["SYNCED"], cols["WEIGHT"]) == (
        "Inference", str(st["chain"]["height"]), "True", "0"), cols

    # idle intervals within an epoch phase: not one status write (resourceVersion unchanged)
    version = kubectl.get("networknode", "gonka", namespace)["metadata"]["resourceVersion"]
    holds_for(lambda: kubectl.get("networknode", "gonka", namespace)["metadata"]["resourceVersion"] == version,
              8, "no write while nothing changed (4 poll intervals)")

    # a failed check: False with the report's message and the command to run
    httpx.post(f"{host.url}/stand-in/v1/setup-report", json={"checks": {"permissions_granted": "FAIL"}},
               timeout=5).raise_for_status()
    perm = wait_condition(kubectl, "networknode", "gonka", namespace, "PermissionsGranted", "False",
                          "PermissionsGrantedFailed")
    assert "Missing required permissions" in perm["message"]
    assert "inferenced tx inference grant-ml-ops-permissions <cold-key-name> " in perm["message"]

    # the chain catches up: ChainSynced False at once, SYNCED column False
    httpx.post(f"{host.url}/stand-in/v1/chain", json={"catching_up": True}, timeout=5).raise_for_status()
    wait_condition(kubectl, "networknode", "gonka", namespace, "ChainSynced", "False", "CatchingUp")
    assert status(kubectl, namespace)["chain"]["catchingUp"] is True
    assert columns(kubectl, namespace)["SYNCED"] == "False"

    # the PoC window opens: the phase and the new epoch are written at once
    opened = host.poc("open")
    wait_for(lambda: status(kubectl, namespace).get("epoch", {}).get("phase") == "PoCGenerate", 20,
             lambda: f"PHASE PoCGenerate; status {json.dumps(status(kubectl, namespace).get('epoch'))}")
    st = status(kubectl, namespace)
    assert st["epoch"]["id"] == opened["latest_epoch"]["index"]
    assert st["chain"]["height"] == opened["block_height"]


def test_status_never_holds_the_keyring_password(
        operator: Operator, kubectl: Kubectl, host: StandIn, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=NN)
    wait_condition(kubectl, "networknode", "gonka", namespace, "KeysReady", "True", timeout=90)
    cr = kubectl.get("networknode", "gonka", namespace)
    assert condition(cr, "ChainSynced") is not None
    events = kubectl.run("get", "events", "-n", namespace, "-o", "json").stdout
    assert '"pw"' not in json.dumps(cr["status"]) and ": pw" not in events and '"pw"' not in events


PASSWORD = "Kr-9f3e1c-onboarding"


def host_with_onboarding(register: bool, explorer: bool = False) -> str:
    return f"""
apiVersion: v1
kind: Secret
metadata: {{name: keyring}}
stringData: {{password: {PASSWORD}}}
---
apiVersion: gonka.ai/v1alpha1
kind: NetworkNode
metadata: {{name: gonka}}
spec:
  keyName: k
  accountPubKey: pub
  keyringPasswordSecretRef: {{name: keyring, key: password}}
  publicHost: gonka.example.com
  explorer: {{enabled: {str(explorer).lower()}}}
  onboarding: {{registerParticipant: {str(register).lower()}}}
"""


def jobs(kubectl: Kubectl, namespace: str) -> dict[str, dict]:
    out = kubectl.run("get", "jobs", "-n", namespace, "-l", "app.kubernetes.io/component=onboarding",
                      "-o", "json").stdout
    return {j["metadata"]["name"]: j for j in json.loads(out)["items"]}


def test_the_warm_key_job_runs_once_and_only_once_and_the_password_is_nowhere(
        operator: Operator, kubectl: Kubectl, host: StandIn, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", "-", input=host_with_onboarding(register=True))
    wait_for(lambda: status(kubectl, namespace).get("onboarding", {}).get("warmKeyJob") == "Complete", 90,
             lambda: f"warm-key Job Complete; status {status(kubectl, namespace).get('onboarding')}, "
             f"jobs {list(jobs(kubectl, namespace))}")
    # then (the warm key exists) the registration Job, once
    wait_for(lambda: status(kubectl, namespace).get("onboarding", {}).get("registrationJob") == "Complete", 60,
             lambda: f"register Job Complete; status {status(kubectl, namespace).get('onboarding')}")
    first = {name: j["metadata"]["uid"] for name, j in jobs(kubectl, namespace).items()}
    assert set(first) == {"gonka-warm-key", "gonka-register"}
    warm = jobs(kubectl, namespace)["gonka-warm-key"]
    container = warm["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "KEYRING_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "keyring", "key": "password"}}} \
        in container["env"]

    # an edit (the explorer switched on: a reconcile of every child) and several polls later: the same Jobs
    kubectl.run("apply", "-n", namespace, "-f", "-", input=host_with_onboarding(register=True, explorer=True))
    wait_for(lambda: kubectl.get("deployment", "gonka-explorer", namespace) is not None, 30, "explorer applied")
    holds_for(lambda: {n: j["metadata"]["uid"] for n, j in jobs(kubectl, namespace).items()} == first, 6,
              "no Job created again")
    pods = json.loads(kubectl.run("get", "pods", "-n", namespace, "-l", "gonka.ai/onboarding=warm-key",
                                  "-o", "json").stdout)["items"]
    assert len(pods) == 1  # one run of the warm-key Job

    cr = kubectl.get("networknode", "gonka", namespace)
    events = kubectl.run("get", "events", "-n", namespace, "-o", "json").stdout
    assert PASSWORD not in json.dumps(cr) and PASSWORD not in events
    assert PASSWORD not in json.dumps(jobs(kubectl, namespace))
    assert PASSWORD not in operator.log_path.read_text()
