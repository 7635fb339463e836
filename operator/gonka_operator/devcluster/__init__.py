"""A real, local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok).

Used by the integration tests (tests/conftest.py) and by people (`python -m gonka_operator.devcluster`).
"""

from .cluster import LocalCluster
from .procs import ClusterError
from .tools import find_bin_dir

__all__ = ["ClusterError", "LocalCluster", "find_bin_dir"]
