"""`make run` helper: run an InferenceNode's preload Job on this machine, for real, against the Hub
stand-in (kwok's pods run no containers).

The demo's ML node preloads into an existing claim that does not exist yet, so kwok cannot start (and
complete) the Job's pod. This script waits for the operator's Job, runs the Job's own command
(`gonka-operator preload-model --repo ...`, the real huggingface_hub download) with the Job's HF_*
environment, HF_HOME=<dir>/<claim> and HF_ENDPOINT=<the Hub stand-in>, printing its progress lines;
when it succeeded it creates the claim, kwok runs and completes the pod, the Job is Complete, and the
operator turns the cache Ready, starts the ML pod and registers the node. A failed run is retried
with the Job's backoff (10 s, doubling).

Usage: preload_locally.py KUBECTL NAMESPACE INFERENCENODE CLAIM HUB_URL DIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def kubectl_json(kubectl: str, *args: str) -> Any:
    out = subprocess.run([kubectl, *args, "-o", "json"], capture_output=True, text=True, check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def main(argv: list[str]) -> int:
    kubectl, namespace, node, claim, hub, base = argv
    job = None
    while job is None:
        jobs = (kubectl_json(kubectl, "get", "jobs", "-n", namespace, "-l", f"gonka.ai/inference-node={node}")
                or {}).get("items") or []
        job = jobs[0] if jobs else None
        if job is None:
            time.sleep(1)
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    env |= {"HF_HOME": str(Path(base) / claim), "HF_ENDPOINT": hub, "HOME": env.get("HOME", "/tmp")}
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / container["command"][0]), *container["command"][1:], "--termination-log",
               str(Path(base) / f"{claim}.termination.json")]
    print(f"[preload] Job {namespace}/{job['metadata']['name']}: running {' '.join(container['command'])} "
          f"here (HF_HOME={env['HF_HOME']}, HF_ENDPOINT={hub})", flush=True)
    delay = 10.0
    for attempt in range(1, 8):
        code = subprocess.run(command, env=env, check=False).returncode
        if code == 0:
            break
        print(f"[preload] attempt {attempt} exited {code}; again in {delay:.0f} s", flush=True)
        if code == 2:
            return code  # permanent (repository or revision not found): the Job would fail at once
        time.sleep(delay)
        delay = min(delay * 2, 360)
    else:
        return 1
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": namespace},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    subprocess.run([kubectl, "apply", "-f", "-"], input=json.dumps(pvc), text=True, check=True,
                   stdout=subprocess.DEVNULL)
    print(f"[preload] done; created claim {claim}: kwok completes the Job's pod, the cache turns Ready", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
