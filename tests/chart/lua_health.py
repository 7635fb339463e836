"""Run the chart's Argo CD health checks through Argo CD's own Lua VM (gopher-lua, Lua 5.1), by way
of hack/argocd-lua/luahealth (built from argo-cd's Go modules by hack/build-argocd.sh, cached).

Three modes per object, as the runner reports them:
  upstream    upstream's harness (util/lua/health_test.go): standard libraries open;
  argocd-cm   the script installed through argocd-cm (the snippet's keys): libraries as the snippet says;
  controller  what the application-controller shows (gitops-engine health.GetResourceHealth, which
              folds a terminating object's deletionMessage into the message).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ARGOCD = REPO / "charts" / "gonka-operator" / "argocd"
CUSTOMIZATIONS = ARGOCD / "resource_customizations"
KINDS = ("InferenceNode", "NetworkNode")
SCRIPTS = {kind: CUSTOMIZATIONS / "gonka.ai" / kind / "health.lua" for kind in KINDS}
SNIPPET = ARGOCD / "argocd-cm-snippet.yaml"

Verdict = dict[str, Any]  # {"status", "message", "deletionMessage"} or {"error"} or {"none": True}


@functools.cache
def runner() -> Path:
    """The gonka-argocd-lua binary: $GONKA_ARGOCD_LUA, else built (or found cached) by hack/build-argocd.sh."""
    if os.environ.get("GONKA_ARGOCD_LUA"):
        return Path(os.environ["GONKA_ARGOCD_LUA"])
    out = subprocess.run(["bash", str(REPO / "hack" / "build-argocd.sh"), "lua"], check=True,
                         capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1]) / "gonka-argocd-lua"


def harness(root: Path = CUSTOMIZATIONS, snippet: Path = SNIPPET) -> list[dict[str, Any]]:
    """Every test of every health_test.yaml under `root`, in every mode: {dir, inputPath, mode, want, got}."""
    out = subprocess.run([str(runner()), "tests", str(root), str(snippet)], check=True, capture_output=True,
                         text=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def evaluate(objects: list[tuple[Path | None, dict[str, Any]]], snippet: Path = SNIPPET) -> list[dict[str, Verdict]]:
    """(script for the upstream mode or None, object) → {mode: verdict} per object."""
    payload = json.dumps([{"script": str(script) if script else "", "object": obj} for script, obj in objects])
    out = subprocess.run([str(runner()), "eval", str(snippet)], input=payload, check=True, capture_output=True,
                         text=True)
    result: list[dict[str, Verdict]] = json.loads(out.stdout)
    return result


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """{"status", "message"} of `obj` as Argo CD computes it from the argocd-cm snippet; the upstream
    harness must agree (same script, libraries open)."""
    body = {"kind": kind, **obj}
    verdicts = evaluate([(SCRIPTS[kind], body)])[0]
    assert verdicts["upstream"] == verdicts["argocd-cm"], verdicts
    got = verdicts["argocd-cm"]
    assert "error" not in got, got["error"]
    return {k: str(v) for k, v in got.items()}
