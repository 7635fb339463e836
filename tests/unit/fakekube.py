"""Helpers of the registry/poller/drift unit tests: a recording stand-in for kube.Kube (the unit
tests never reach an API server; the integration tests run against a real one) and records."""

from __future__ import annotations

from typing import Any

from gonka_operator.admin import AdminClient
from gonka_operator.admin.models import NodeEntry
from gonka_operator.context import Context, InferenceRecord, NetworkRecord
from gonka_operator.kube import KubeError
from gonka_operator.poller import RegistryLoop
from gonka_operator.registry import FINALIZER
from gonka_operator.settings import Settings

Obj = dict[str, Any]


class FakeKube:
    """Records what the operator would write. `refuse` maps (kind, name) → KubeError for apply."""

    def __init__(self) -> None:
        self.statuses: dict[tuple[str, str], Obj] = {}
        self.patches: list[tuple[str, str, Obj]] = []
        self.events: list[tuple[str, str, str, str]] = []  # name, type, reason, message
        self.finalizers: list[tuple[str, bool]] = []
        self.applied: list[tuple[str, str]] = []  # every child written: apply() and create()
        self.created: list[tuple[str, str]] = []  # create() only (Jobs), 409 for what `objects` holds
        self.deleted: list[tuple[str, str]] = []
        self.propagation: dict[tuple[str, str], str] = {}  # delete()'s propagationPolicy
        self.refuse: dict[tuple[str, str], KubeError] = {}
        self.refuse_dry_run: dict[tuple[str, str], KubeError] = {}
        self.touched: list[tuple[str, str]] = []
        self.listing: list[Obj] = []  # what list() answers
        self.objects: dict[tuple[str, str], Obj] = {}  # what get() answers, by (kind, name)
        self.gets: list[tuple[str, str]] = []
        self.logs: dict[str, str] = {}  # pod name → what pod_log() answers

    async def patch_status(self, api_version: str, kind: str, namespace: str, name: str, status: Obj) -> None:
        self.patches.append((kind, name, status))
        current = self.statuses.setdefault((namespace, name), {})
        _merge(current, status)

    async def post_event(self, involved: Obj, event_type: str, reason: str, message: str) -> None:
        self.events.append((involved["metadata"]["name"], event_type, reason, message))

    async def set_finalizer(self, body: Obj, finalizer: str, present: bool) -> None:
        self.finalizers.append((body["metadata"]["name"], present))
        finalizers = [f for f in body["metadata"].get("finalizers", []) if f != finalizer]
        body["metadata"]["finalizers"] = finalizers + ([finalizer] if present else [])

    async def apply(self, obj: Obj) -> Obj:
        key = (obj["kind"], obj["metadata"]["name"])
        if key in self.refuse:
            raise self.refuse[key]
        self.applied.append(key)
        return {**obj, "status": {}}

    async def create(self, obj: Obj) -> Obj:
        key = (obj["kind"], obj["metadata"]["name"])
        if key in self.objects:
            raise KubeError(409, f"{obj['kind']} {key[1]} already exists")
        self.created.append(key)
        self.applied.append(key)
        self.objects[key] = {**obj, "status": {}}
        return self.objects[key]

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        self.gets.append((kind, name))
        return self.objects.get((kind, name))

    async def pod_log(self, namespace: str, name: str, container: str, tail_lines: int = 20) -> str:
        if name not in self.logs:
            raise KubeError(400, f'container "{container}" in pod "{name}" is waiting to start')
        return "\n".join(self.logs[name].splitlines()[-tail_lines:])

    async def dry_run_create(self, obj: Obj) -> None:
        key = (obj["kind"], obj["metadata"]["name"])
        if key in self.refuse_dry_run:
            raise self.refuse_dry_run[key]

    async def delete(self, obj: Obj, propagation: str = "Background") -> None:
        key = (obj["kind"], obj["metadata"]["name"])
        self.deleted.append(key)
        self.propagation[key] = propagation
        self.objects.pop(key, None)
        self.refuse.pop(key, None)

    async def annotate(self, api_version: str, kind: str, namespace: str, name: str,
                       annotations: dict[str, str]) -> None:
        self.touched.append((namespace, name))

    async def list(self, api_version: str, kind: str, namespace: str, label_selector: str | None = None) -> list[Obj]:
        return [o for o in self.listing if o["metadata"]["namespace"] == namespace and o.get("kind", kind) == kind]

    def reasons(self, name: str) -> list[str]:
        return [reason for n, _, reason, _ in self.events if n == name]


def _merge(target: Obj, patch: Obj) -> None:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = v


def context(admin: AdminClient, **settings: Any) -> tuple[Context, FakeKube]:
    kube = FakeKube()
    settings.setdefault("status_coalesce_seconds", 0)  # each status write at once: tests see every one
    ctx = Context(settings=Settings(**settings), kube=kube, admin=admin)  # type: ignore[arg-type]
    ctx.leader.set()
    return ctx, kube


def external_body(name: str, admin_url: str, *, namespace: str = "ns", created: str = "2026-01-01T00:00:00Z",
                  **spec: Any) -> Obj:
    return {
        "apiVersion": "gonka.ai/v1alpha1", "kind": "InferenceNode",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}", "generation": 1,
                     "creationTimestamp": created, "finalizers": [FINALIZER], "resourceVersion": "1"},
        "spec": {"adminURL": admin_url, "model": "Qwen/Qwen3-32B-FP8", "gpus": 1, "hardwareType": "H100",
                 "external": {"host": f"{name}.example", "inferencePort": 5050, "pocPort": 8080}, **spec},
    }


def handled(ctx: Context, body: Obj) -> InferenceRecord:
    """The record as it is once kopf's handler ran for `body` (finalizer added, generation seen)."""
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    record = ctx.inference[key] = InferenceRecord(body=body)
    record.handled = record.finalized = True
    record.observed_generation = body["metadata"]["generation"]
    return record


def network(ctx: Context, name: str, namespace: str = "ns", ready: bool = True) -> NetworkRecord:
    body = {"apiVersion": "gonka.ai/v1alpha1", "kind": "NetworkNode",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-nn-{name}", "generation": 1}, "spec": {}}
    record = ctx.network[(namespace, name)] = NetworkRecord(body=body)
    record.endpoints = {"adminURL": f"http://{name}-api.{namespace}.svc.cluster.local:9200"}
    record.statefulset = {"status": {"readyReplicas": 1 if ready else 0}}
    record.observed_generation = 1
    return record


# The registry as a poll leaves it: every InferenceNode of the context registered and serving, the
# network node in the epoch phase `timing` (INFERENCE or POC) says.
URL = "http://gonka-api.ns.svc.cluster.local:9200"
INFERENCE = {"current_phase": "Inference", "in_poc_window": False, "confirmation_poc_active": False,
             "seconds_until_next_poc": 300, "should_be_online": False}
POC = {**INFERENCE, "current_phase": "PoCGenerate", "in_poc_window": True, "seconds_until_next_poc": 0}


def poll(loop: RegistryLoop, timing: dict[str, Any]) -> None:
    loop.snapshot = {k[1]: NodeEntry.model_validate({
        "node": {"id": k[1], "host": f"{k[1]}-mlnode", "inference_port": 5050, "poc_port": 8080,
                 "max_concurrent": 500, "models": {}, "hardware": []},
        "state": {"current_status": "INFERENCE"},
        "onboarding": {"timing": timing}}) for k in loop.ctx.inference}
