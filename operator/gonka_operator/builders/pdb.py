"""The PodDisruptionBudget of an ML Deployment: `kubectl drain` and other evictions of the ML pod wait
for the Inference phase (disruption.py; upstream's guidance, REFERENCE.md §8: no ML node taken away
during PoC). maxUnavailable 0 while the network node reports a PoC window or confirmation PoC, 1
outside them (the Deployment has one replica: an eviction may then go ahead). The operator's own
restarts are not evictions and are held separately (disruption.hold)."""

from __future__ import annotations

from gonka_operator.builders.common import Obj, Owner, metadata
from gonka_operator.builders.inference_node import pod_labels, pod_selector, workload_name


def build_pdb(owner: Owner, network_node: str | None, poc_window: bool) -> Obj:
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": metadata(workload_name(owner.name), owner, pod_labels(owner.name, network_node)),
        "spec": {"maxUnavailable": 0 if poc_window else 1,
                 "selector": {"matchLabels": pod_selector(owner.name)}},
    }
