"""Prometheus metrics of the operator, served on /metrics by `gonka-operator run`.

Every module that counts something imports its metric from here, so the series names live in one
place (the chart's ServiceMonitor and the README list them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "gonka_operator_reconciles_total", "Reconciles run, by kind and outcome", ["kind", "outcome"]
)
RECONCILE_SECONDS = Histogram(
    "gonka_operator_reconcile_duration_seconds", "Time one reconcile took, by kind", ["kind"]
)
ADMIN_REQUESTS = Counter(
    "gonka_operator_admin_api_requests_total",
    "Requests sent to network nodes' admin APIs, by method and status code ('error' = no answer)",
    ["method", "code"],
)
REGISTRY_NODES = Gauge(
    "gonka_operator_registry_nodes",
    "InferenceNodes in the admin registries, by state (registered, failed, missing)",
    ["state"],
)
DRIFT_REPAIRS = Counter(
    "gonka_operator_registry_drift_repairs_total", "Registry entries re-registered after they vanished"
)
REGISTRY_POLL_SECONDS = Histogram(
    "gonka_operator_registry_poll_duration_seconds",
    "Wall time of one registry poll (the GET nodes and its fan-out to every InferenceNode of that admin API)",
)
REGISTRY_POLL_CPU_SECONDS = Histogram(
    "gonka_operator_registry_poll_cpu_seconds",
    "CPU time of the operator's event-loop thread during one registry poll (what else ran while the poll "
    "awaited its GET is included: an upper bound)",
)


@contextmanager
def timed_poll() -> Iterator[None]:
    """Observe one registry poll's wall and CPU time (issue 13: the poll's cost at N nodes)."""
    wall, cpu = time.monotonic(), time.thread_time()
    try:
        yield
    finally:
        REGISTRY_POLL_SECONDS.observe(time.monotonic() - wall)
        REGISTRY_POLL_CPU_SECONDS.observe(time.thread_time() - cpu)
