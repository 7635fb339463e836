"""The PodDisruptionBudget of an ML Deployment: `kubectl drain` and other evictions of the ML pod wait
for the Inference phase (disruption.py; upstream's guidance, REFERENCE.md §8: no ML node taken away
during PoC). It exists only while it protects something: created (minAvailable 1: the Deployment's
one pod may not be evicted) when the network node reports a PoC window or confirmation PoC, deleted
when the window closes. For a one-replica Deployment "no PDB" is the same as a loose one, and it
keeps an InferenceNode at issue 13's write budget (create, finalizer, 3 children, 1 status) outside
PoC. The operator's own restarts are not evictions and are held separately (disruption.hold)."""

from __future__ import annotations

from gonka_operator.builders.common import Obj, Owner, metadata
from gonka_operator.builders.inference_node import pod_labels, pod_selector, workload_name


def build_pdb(owner: Owner, network_node: str | None) -> Obj:
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": metadata(workload_name(owner.name), owner, pod_labels(owner.name, network_node)),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": pod_selector(owner.name)}},
    }
