"""The binaries of the real node for the e2e tests (a plain module: test files cannot import conftest)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def real_node_bin_dir() -> Path:
    """Build (once; cached) and locate the control plane + real-node binaries."""
    out = subprocess.run(["bash", str(ROOT / "hack" / "build-tools.sh"), "--real-node"], stdout=subprocess.PIPE,
                         text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])
