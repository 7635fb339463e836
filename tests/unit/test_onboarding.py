"""Onboarding Jobs (builders/onboarding.py) and what the NetworkNode's status makes of them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gonka_operator import network_node
from gonka_operator.builders import onboarding
from gonka_operator.builders.common import Owner
from gonka_operator.context import NetworkRecord
from gonka_operator.models.network_node import NetworkNodeSpec

OWNER = Owner("NetworkNode", "gonka", "hosts", "uid-1")
SECRET_VALUE = "s3cret-Pa55"
SPEC = {"keyName": "warm", "accountPubKey": "Apub", "keyringPasswordSecretRef": {"name": "kr", "key": "password"},
        "publicHost": "host.example"}


def body(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "gonka.ai/v1alpha1", "kind": "NetworkNode",
            "metadata": {"name": "gonka", "namespace": "hosts", "uid": "uid-1", "generation": 1},
            "spec": {**SPEC, **spec}}


def jobs_of(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "Job"}


def test_warm_key_job_takes_the_password_only_from_a_secret_key_ref() -> None:
    spec = NetworkNodeSpec.model_validate(SPEC)
    job = onboarding.build_warm_key_job(OWNER, spec, "gonka-inference")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    password = next(e for e in container["env"] if e["name"] == "KEYRING_PASSWORD")
    assert password == {"name": "KEYRING_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "kr", "key": "password"}}}
    assert "value" not in password
    assert all("valueFrom" not in e or e["name"] == "KEYRING_PASSWORD" for e in container["env"])
    assert container["image"] == spec.images.api
    assert container["terminationMessagePolicy"] == "File"
    assert {"name": "inference", "mountPath": "/root/.inference"} in container["volumeMounts"]
    assert {"name": "inference", "persistentVolumeClaim": {"claimName": "gonka-inference"}} in pod["volumes"]
    term = pod["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "node"
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    script = container["command"][2]
    assert script.index("keys show") < script.index("keys add")  # show first, create only when absent
    assert "$KEYRING_PASSWORD" in script and "set -x" not in script


def test_no_builder_output_holds_the_password_the_secret_holds() -> None:
    spec = {**SPEC, "onboarding": {"registerParticipant": True}}
    objs = network_node.desired_children(body(**spec), {"gonka-chain": "10.0.0.7"}, {}, "cluster.local",
                                         status={"onboarding": {"warmKeyJob": "Complete"}})
    rendered = json.dumps(objs)
    assert SECRET_VALUE not in rendered and '"value": "pw"' not in rendered
    for obj in jobs_of(objs).values():
        for c in obj["spec"]["template"]["spec"]["containers"]:
            assert not any("KEYRING_PASSWORD=" in arg for arg in c["command"])
    # the api container no longer creates a key
    sts = next(o for o in objs if o["kind"] == "StatefulSet")
    api = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "api")
    assert "CREATE_KEY" not in {e["name"] for e in api["env"]}


def test_register_job_only_after_the_warm_key_and_with_the_chain_ip() -> None:
    spec = {**SPEC, "onboarding": {"registerParticipant": True}}
    ips = {"gonka-chain": "10.0.0.7"}
    assert set(jobs_of(network_node.desired_children(body(**spec), ips, {}, "cluster.local", status={}))) == {
        "gonka-warm-key"}
    assert set(jobs_of(network_node.desired_children(body(**spec), {}, {}, "cluster.local", status={
        "onboarding": {"warmKeyJob": "Complete"}}))) == {"gonka-warm-key"}
    jobs = jobs_of(network_node.desired_children(body(**spec), ips, {}, "cluster.local",
                                                 status={"onboarding": {"warmKeyJob": "Complete"}}))
    register = jobs["gonka-register"]["spec"]["template"]["spec"]
    assert register["hostAliases"] == [{"ip": "10.0.0.7", "hostnames": ["node"]}]
    env = {e["name"]: e.get("value") for e in register["containers"][0]["env"]}
    assert env["DAPI_API__PUBLIC_URL"] == "http://host.example:8000" and env["ACCOUNT_PUBKEY"] == "Apub"
    assert "register-new-participant" in register["containers"][0]["command"][2]
    # off by default; no warm-key Job when asked not to
    assert set(jobs_of(network_node.desired_children(body(), ips, {}, "cluster.local", status={
        "onboarding": {"warmKeyJob": "Complete"}}))) == {"gonka-warm-key"}
    assert not jobs_of(network_node.desired_children(body(onboarding={"createWarmKey": False}), ips, {},
                                                     "cluster.local", status={}))


def _pod(message: str | None, step: str = "warm-key") -> dict[str, Any]:
    terminated = {"exitCode": 0, **({"message": message} if message else {})}
    return {"metadata": {"labels": onboarding.pod_labels("gonka", step)},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "onboarding", "state": {"terminated": terminated}}]}}


def test_status_onboarding_from_the_jobs_and_the_termination_message() -> None:
    record = NetworkRecord(body=body())
    record.observed_generation = 1
    assert network_node.compute_status(record)["onboarding"] == {"nextStep": "waiting for the warm-key Job"}
    record.onboarding_jobs["gonka-warm-key"] = {"status": {"active": 1}}
    assert network_node.compute_status(record)["onboarding"]["warmKeyJob"] == "Running"
    record.onboarding_jobs["gonka-warm-key"] = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    record.onboarding_pods["p1"] = _pod('{"warmKeyAddress": "gonka1qqqwarm", "created": true}')
    status = network_node.compute_status(record)
    assert status["onboarding"] == {"warmKeyAddress": "gonka1qqqwarm", "warmKeyJob": "Complete"}
    # the pod may go (GC): the address stays
    record.status_written, record.onboarding_pods = status, {}
    assert network_node.compute_status(record)["onboarding"]["warmKeyAddress"] == "gonka1qqqwarm"
    # a message that is not the JSON outcome is no address
    assert onboarding.read_onboarding("gonka", {}, {"p": _pod("inferenced keys add warm failed")}, None) == {}


def test_a_failed_warm_key_job_says_where_to_look() -> None:
    record = NetworkRecord(body=body())
    record.observed_generation = 1
    record.onboarding_jobs["gonka-warm-key"] = {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    step = network_node.compute_status(record)["onboarding"]["nextStep"]
    assert "warm-key Job failed" in step and "kubectl logs job/gonka-warm-key" in step


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh")
def test_the_script_creates_the_key_once_and_never_prints_the_password(tmp_path: Path) -> None:
    """The Job's own script under sh, with a fake `inferenced` that keeps a keyring file: a first run
    creates the key, a second finds it and creates nothing; the password is in no output."""
    keyring = tmp_path / "keyring"
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "inferenced"
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/sh
echo "$1 $2" >> {calls}
read -r pw
case "$2" in
  show) [ -f {keyring} ] && [ "$pw" = "$(head -n1 {keyring})" ] && sed -n 2p {keyring} && exit 0; exit 1;;
  add) read -r again; [ "$pw" = "$again" ] || exit 3; printf '%s\\ngonka1fakeaddr\\n' "$pw" > {keyring};
       echo "mnemonic: twelve secret words"; exit 0;;
esac
exit 2
""")
    fake.chmod(0o755)
    term = tmp_path / "termination-log"
    script = onboarding.WARM_KEY_SCRIPT.replace("/dev/termination-log", str(term))
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "KEY_NAME": "warm", "KEYRING_PASSWORD": SECRET_VALUE}
    outputs = []
    for _ in range(2):
        run = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout + run.stderr)
        assert json.loads(term.read_text())["warmKeyAddress"] == "gonka1fakeaddr"
    assert calls.read_text().splitlines() == ["keys show", "keys add", "keys show", "keys show"]
    assert json.loads(term.read_text())["created"] is False
    assert all(SECRET_VALUE not in out and "mnemonic" not in out for out in outputs)


def test_the_warm_key_script_with_the_stand_in_inferenced_creates_once_and_never_leaks(tmp_path: Path) -> None:
    """WARM_KEY_SCRIPT as the Job runs it (sh), against the stand-in `inferenced keys` of the real
    node's api role image (simulator/keys.py, the Cosmos SDK's file keyring prompts)."""
    import json
    import subprocess
    import sys

    from gonka_operator.builders.onboarding import WARM_KEY_SCRIPT

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "inferenced").write_text(f"#!/bin/sh\nexec {sys.executable} -m gonka_operator.simulator.keys \"$@\"\n")
    (bin_dir / "inferenced").chmod(0o755)
    term = tmp_path / "termination-log"
    script = WARM_KEY_SCRIPT.replace("/dev/termination-log", str(term))
    password = "s3cret-" + "x" * 8
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path / "root"),
           "KEY_NAME": "warm", "KEYRING_PASSWORD": password}

    def run() -> tuple[dict[str, object], str]:
        out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True)
        return json.loads(term.read_text()), out.stdout + out.stderr

    first, log1 = run()
    assert first["created"] is True and str(first["warmKeyAddress"]).startswith("gonka1")
    assert (tmp_path / "root" / ".inference" / "keyring-file" / "warm.info").exists()
    second, log2 = run()
    assert second == {"warmKeyAddress": first["warmKeyAddress"], "created": False}  # never a key twice
    for log in (log1, log2):
        assert password not in log and "mnemonic" not in log and "Important" not in log
    keyring = tmp_path / "root" / ".inference" / "keyring-file"
    assert not any(password in p.read_text() for p in keyring.iterdir())  # only a salted hash is kept
    before = sorted(p.name for p in keyring.iterdir())
    env["KEYRING_PASSWORD"] = "wrong"  # a wrong password cannot read the key: the Job fails, creates nothing
    out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and sorted(p.name for p in keyring.iterdir()) == before
