"""The kubelet of the preload pods of one namespace, for the integration tests (kwok's pods are fake:
kwok completes every Job pod with exit code 0, whatever the Hub says).

The InferenceNode pins its pods to a node no kubelet serves (`NODE`), so the scheduler leaves them
Pending and kwok never sees them. This runner takes each new preload pod, runs its container's real
command (`gonka-operator preload-model --repo ... [--revision ...]`, the real huggingface_hub code)
as a local process with the pod's HF_ENDPOINT and a local directory as the volume (HF_HOME, shared by
every attempt, as the claim is), and reports the outcome in the pod's status as a kubelet does:
Running, then Succeeded or Failed with the container's exit code and termination message. The Job
controller and the operator take it from there."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hubproc import preload
from procs import Kubectl

NODE = "preload-runner"  # spec.scheduling.nodeSelector kubernetes.io/hostname: no such node
SELECTOR = "app.kubernetes.io/component=hf-preload"


@dataclass
class Attempt:
    pod: str
    job: str
    seen: float  # time.monotonic() when the pod appeared
    finished: float = 0.0
    code: int | None = None
    termination: dict[str, Any] | None = None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PreloadRunner:
    def __init__(self, kubectl: Kubectl, namespace: str, hf_home: Path) -> None:
        self.kubectl, self.namespace, self.hf_home = kubectl, namespace, hf_home
        self.attempts: list[Attempt] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="preload-runner")

    def __enter__(self) -> PreloadRunner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def finished(self) -> list[Attempt]:
        return [a for a in self.attempts if a.code is not None]

    def _status(self, pod: str, status: dict[str, Any]) -> None:
        self.kubectl.run("patch", "pod", pod, "-n", self.namespace, "--subresource=status", "--type=merge",
                         "-p", json.dumps({"status": status}))

    def _run(self) -> None:
        done: set[str] = set()
        while not self._stop.wait(0.3):
            try:
                pods = self.kubectl.json("get", "pods", "-n", self.namespace, "-l", SELECTOR)["items"]
            except Exception as exc:  # the API server is busy: next round
                self.errors.append(str(exc))
                continue
            for pod in pods:
                name = pod["metadata"]["name"]
                if name in done or pod["status"].get("phase") not in (None, "Pending"):
                    continue
                done.add(name)
                self._execute(pod)

    def _execute(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        labels = pod["metadata"].get("labels") or {}
        attempt = Attempt(name, labels.get("batch.kubernetes.io/job-name", labels.get("job-name", "")),
                          time.monotonic())
        self.attempts.append(attempt)
        (container,) = pod["spec"]["containers"]
        started = _now()
        self._status(name, {"phase": "Running", "startTime": started, "containerStatuses": [{
            "name": container["name"], "image": container["image"], "imageID": "", "ready": True,
            "restartCount": 0, "started": True, "state": {"running": {"startedAt": started}}}]})
        command = container["command"]
        assert command[:2] == ["gonka-operator", "preload-model"], command
        repo = command[command.index("--repo") + 1]
        revision = command[command.index("--revision") + 1] if "--revision" in command else None
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        run = preload(self.hf_home, env["HF_ENDPOINT"], repo=repo, revision=revision, timeout=60)
        attempt.code, attempt.termination, attempt.finished = run.code, run.termination, time.monotonic()
        self._status(name, {"phase": "Succeeded" if run.code == 0 else "Failed", "containerStatuses": [{
            "name": container["name"], "image": container["image"], "imageID": "", "ready": False,
            "restartCount": 0, "started": False, "state": {"terminated": {
                "exitCode": run.code, "reason": "Completed" if run.code == 0 else "Error",
                "message": json.dumps(run.termination), "startedAt": started, "finishedAt": _now()}}}]})
