"""`make run` helper: run an InferenceNode's preload Job on this machine, for real, against the Hub
stand-in (kwok's pods run no containers, and kwok would complete the Job's pod without a download).

The demo's ML node preloads into an existing claim that does not exist yet, so the Job's pods stay
Pending (unschedulable) and kwok never sees them. This script stands in for their kubelet: it takes
each new pod of the Job, marks it Running, runs the pod's own command (`gonka-operator preload-model
--repo ...`, the real huggingface_hub download) with the pod's HF_* environment, HF_HOME=<dir>/<claim>
and HF_ENDPOINT=<the Hub stand-in>, printing its progress lines, and reports the outcome in the pod's
status as a kubelet does (Succeeded or Failed, the exit code, the termination message with the files,
bytes and commit, or the Hub's error). The Job controller retries a failed pod with its backoff and
the operator its Jobs; once a pod succeeded the Job is Complete and the operator shows CACHE Ready with
the snapshot's files and bytes. Then the script creates the claim, so the ML pod can be scheduled and
the node registers.

Usage: preload_locally.py KUBECTL NAMESPACE INFERENCENODE CLAIM HUB_URL DIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def kubectl_json(kubectl: str, *args: str) -> Any:
    out = subprocess.run([kubectl, *args, "-o", "json"], capture_output=True, text=True, check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report(kubectl: str, namespace: str, pod: str, status: dict[str, Any]) -> None:
    subprocess.run([kubectl, "patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status})], check=True, capture_output=True, text=True)


def run_pod(kubectl: str, namespace: str, pod: dict[str, Any], hub: str, home: Path) -> int:
    """Run one preload pod's container here and report its outcome; its exit code."""
    name = pod["metadata"]["name"]
    container = pod["spec"]["containers"][0]
    started = now()
    state = {"name": container["name"], "image": container["image"], "imageID": "", "restartCount": 0}
    report(kubectl, namespace, name, {"phase": "Running", "startTime": started, "containerStatuses": [
        {**state, "ready": True, "started": True, "state": {"running": {"startedAt": started}}}]})
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    env |= {"HF_HOME": str(home), "HF_ENDPOINT": hub, "HOME": os.environ.get("HOME", "/tmp")}
    termination = home.parent / f"{home.name}.termination.json"
    termination.unlink(missing_ok=True)
    command = [str(Path(sys.executable).parent / container["command"][0]), *container["command"][1:],
               "--termination-log", str(termination)]
    print(f"[preload] pod {namespace}/{name}: running {' '.join(container['command'])} here "
          f"(HF_HOME={home}, HF_ENDPOINT={hub})", flush=True)
    code = subprocess.run(command, env=env, check=False).returncode
    message = termination.read_text() if termination.exists() else ""
    report(kubectl, namespace, name, {"phase": "Succeeded" if code == 0 else "Failed", "containerStatuses": [
        {**state, "ready": False, "started": False, "state": {"terminated": {
            "exitCode": code, "reason": "Completed" if code == 0 else "Error", "message": message,
            "startedAt": started, "finishedAt": now()}}}]})
    print(f"[preload] pod {name} exited {code}", flush=True)
    return code


def main(argv: list[str]) -> int:
    kubectl, namespace, node, claim, hub, base = argv
    home = Path(base) / claim
    selector = f"gonka.ai/inference-node={node},app.kubernetes.io/component=hf-preload"
    done: set[str] = set()
    while True:  # until a pod of the (current) preload Job succeeded
        pods = (kubectl_json(kubectl, "get", "pods", "-n", namespace, "-l", selector) or {}).get("items") or []
        todo = [p for p in pods if p["metadata"]["name"] not in done and p["status"].get("phase") == "Pending"]
        if not todo:
            time.sleep(1)
            continue
        pod = todo[0]
        done.add(pod["metadata"]["name"])
        if run_pod(kubectl, namespace, pod, hub, home) == 0:
            break
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": namespace},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    subprocess.run([kubectl, "apply", "-f", "-"], input=json.dumps(pvc), text=True, check=True,
                   stdout=subprocess.DEVNULL)
    print(f"[preload] done; created claim {claim}: the ML pod can be scheduled, the node registers", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
