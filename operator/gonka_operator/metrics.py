"""Prometheus metrics of the operator, served on /metrics by `gonka-operator run`.

Every module that counts something imports its metric from here, so the series names live in one
place (the chart's ServiceMonitor and the README list them).
"""

from __future__ import annotations

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
