"""The Hugging Face Hub stand-in and the preload entry point as processes (tests of issue 10)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from helpers import wait_for
from procs import VENV_BIN, ManagedProcess, free_port

REPO = "gonka-test/tiny-model"


class HubStandIn(ManagedProcess):
    """`gonka-operator simulate-hf-hub` on a fixed free loopback port (so it can be stopped and started
    again on the same address: the Hub down, then back)."""

    def __init__(self, log_dir: Path, name: str = "hf-hub", *, extra: tuple[str, ...] = ()) -> None:
        self.port, self.cdn_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(name, [str(VENV_BIN / "gonka-operator"), "simulate-hf-hub", "--host", "127.0.0.1",
                                "--port", str(self.port), "--cdn-port", str(self.cdn_port), *extra], {}, log_dir)

    def start(self) -> None:
        super().start()

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"hub exited: {self.log_tail()}"
            try:
                return httpx.get(f"{self.url}/livez", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 30, lambda: f"Hub stand-in on {self.url}: {self.log_tail()}")

    def requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/stand-in/v1/requests", timeout=5).json())

    def clear(self) -> None:
        httpx.delete(f"{self.url}/stand-in/v1/requests", timeout=5)

    def repo(self, repo: str = REPO) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.url}/stand-in/v1/repo", timeout=5).json()[repo]
        return result

    def downloads(self) -> list[dict[str, Any]]:
        """File bodies served (GET of a resolve or CDN URL that answered 200/206)."""
        return [r for r in self.requests() if r["method"] == "GET" and r["status"] in (200, 206)
                and ("/resolve/" in r["path"] or r["path"].startswith("/cdn/"))]


@dataclass
class Run:
    code: int
    lines: list[dict[str, Any]]
    termination: dict[str, Any] | None
    output: str

    @property
    def outcome(self) -> dict[str, Any]:
        return self.lines[-1] if self.lines else {}


def preload(hf_home: Path, endpoint: str, repo: str = REPO, revision: str | None = None,
            interval: float = 0.2, timeout: float = 120, env: dict[str, str] | None = None) -> Run:
    """Run `gonka-operator preload-model` as the Job would (HF_HOME, HF_ENDPOINT), return its outcome."""
    term = hf_home.parent / f"termination-{os.urandom(4).hex()}.json"
    args = [str(VENV_BIN / "gonka-operator"), "preload-model", "--repo", repo, "--progress-interval", str(interval),
            "--termination-log", str(term)]
    if revision:
        args += ["--revision", revision]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    run_env |= {"HF_HOME": str(hf_home), "HF_ENDPOINT": endpoint, **(env or {})}
    proc = subprocess.run(args, env=run_env, capture_output=True, text=True, timeout=timeout, check=False)
    lines = []
    for line in proc.stdout.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    termination = json.loads(term.read_text()) if term.exists() else None
    return Run(proc.returncode, lines, termination, proc.stdout + proc.stderr)
