"""Where the control-plane binaries and the packaged YAML files are."""

from __future__ import annotations

import os
import subprocess
from importlib import resources
from pathlib import Path

from .procs import ClusterError

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl")
# devcluster -> gonka_operator -> operator -> repository root (only there in a source checkout).
_REPO_BUILD_SCRIPT = Path(__file__).resolve().parents[3] / "hack" / "build-tools.sh"


def find_bin_dir() -> Path:
    """The directory holding the control-plane binaries, building whatever is missing.

    GONKA_TOOLS_BIN wins; otherwise hack/build-tools.sh (fast when cached) prints it on its last
    stdout line. Its progress goes to our stderr so a cold build is not silent for tens of minutes.
    """
    env = os.environ.get("GONKA_TOOLS_BIN")
    if env:
        bin_dir = Path(env)
    elif _REPO_BUILD_SCRIPT.is_file():
        out = subprocess.run(
            ["bash", str(_REPO_BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
        )
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines:
            raise ClusterError(f"{_REPO_BUILD_SCRIPT} failed with code {out.returncode}")
        bin_dir = Path(lines[-1])
    else:
        raise ClusterError("set GONKA_TOOLS_BIN to the directory built by hack/build-tools.sh")
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise ClusterError(f"{bin_dir} lacks {', '.join(missing)}; run hack/build-tools.sh")
    return bin_dir


def data_file(name: str) -> Path:
    """A YAML file shipped in this package (stage configs, node manifests)."""
    return Path(str(resources.files("gonka_operator.devcluster") / name))
