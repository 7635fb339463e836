"""Every kopf registration of the operator, and nothing else: each handler calls a use case.

Loaded by `gonka-operator run` (kopf's `run`), never imported for side effects elsewhere.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kopf._cogs.structs.references import Selector  # not re-exported by kopf 1.45
from prometheus_client import start_http_server

from gonka_operator import drift, inference_node, network_node, poller
from gonka_operator.admin import AdminClient, create_http_client
from gonka_operator.builders.common import LABEL_MANAGED_BY, MANAGED_BY
from gonka_operator.context import Context, key_of
from gonka_operator.host_status import HostWatch
from gonka_operator.kopf_storage import MemoryDiffBaseStorage, QuietAnnotationsProgressStorage
from gonka_operator.kube import Kube, KubeError
from gonka_operator.lease import LeaderElection
from gonka_operator.metrics import RECONCILE_SECONDS, RECONCILES
from gonka_operator.registry import backoff
from gonka_operator.settings import Settings

GROUP, VERSION = "gonka.ai", "v1alpha1"
OURS = {LABEL_MANAGED_BY: MANAGED_BY}


class _QuietWatchHandlers(logging.Filter):
    """Drop kopf's "Handler 'x' succeeded." for the watch-only handlers: one line per event of every
    child would bury the messages that matter."""

    NAMES = ("network_node_seen", "inference_node_seen", "child_changed", "network_nodes", "inference_nodes")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.endswith("succeeded.") and any(f"'{n}'" in message for n in self.NAMES))


_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def _plain(body: kopf.Body) -> dict[str, Any]:
    """An event's object as a plain dict, without managedFields and kubectl's last-applied copy:
    they are most of an object's size and nothing here reads them (memory at 1000 objects).

    No deep copy: every watch event brings freshly parsed dicts that kopf never mutates, and the
    operator only reads them (a deep copy per event was a tenth of its CPU under a burst)."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    if "annotations" in meta:
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k not in _DROPPED_ANNOTATIONS}
    return {**{k: v for k, v in body.items() if k != "metadata"}, "metadata": meta}


# The children's kinds (group, version, plural) the child_changed handler below watches.
CHILD_KINDS = (("apps", "v1", "deployments"), ("apps", "v1", "statefulsets"), ("", "v1", "services"),
               ("", "v1", "persistentvolumeclaims"), ("networking.k8s.io", "v1", "networkpolicies"),
               ("", "v1", "pods"), ("batch", "v1", "jobs"))


def watch_only_ours(settings: kopf.OperatorSettings) -> None:
    """Ask the API server for our children only. kopf's `labels=` on a handler filters client-side:
    the watch would bring every Pod, Deployment, Service… of the cluster, each parsed (a pod event is
    ~20 KB of Python objects) and remembered by kopf (~1 KB per object) before the filter drops it."""
    for group, version, plural in CHILD_KINDS:
        selector = Selector(group=group, version=version, plural=plural)
        settings.watching.label_selectors[selector] = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def _ctx(memo: kopf.Memo) -> Context:
    ctx: Context = memo["ctx"]
    return ctx


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our finalizer gonka.ai/registry-cleanup is managed by the registry loops (poller.py), not by
    # kopf: a deletion handler's retries would sleep inside kopf's per-object worker. kopf's own
    # finalizer name is one it never needs (no handler requires a finalizer).
    settings.persistence.finalizer = "gonka.ai/kopf-finalizer"
    settings.persistence.progress_storage = QuietAnnotationsProgressStorage(prefix="gonka.ai")
    settings.persistence.diffbase_storage = memo["diffbase"] = MemoryDiffBaseStorage()
    settings.posting.enabled = False  # we post our own Events, with meaningful reasons
    # kopf runs one worker task per object with pending events. No worker_limit (kopf 1.45): with
    # an index, every object's worker must index it before any handler may run, so a limit below
    # the number of objects deadlocks the start-up (found by the fault suite: 200 InferenceNodes,
    # limit 100); and a limit lets retrying objects hold every slot. Memory stays bounded because
    # idle workers exit after 1 s and no handler waits for an admin API (kopf sleeps a
    # TemporaryError's delay inside the object's worker): only Kubernetes API errors are retried
    # by kopf.
    settings.queueing.worker_limit = None
    settings.queueing.idle_timeout = 1.0
    watch_only_ours(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per admin request is noise
    logging.getLogger("kopf.objects").addFilter(_QuietWatchHandlers())
    conf = Settings.from_env()
    memo["http"] = http = create_http_client(total_timeout=conf.admin_timeout_seconds)
    memo["ctx"] = ctx = Context(settings=conf, kube=await Kube.connect(), admin=AdminClient(
        http, total_timeout=conf.admin_timeout_seconds))
    if conf.metrics_port:
        start_http_server(conf.metrics_port, addr=conf.metrics_address)
    ctx.registries, ctx.repairs = poller.Registries(ctx), drift.Repairs(ctx)
    ctx.registries.start()
    ctx.repairs.start()
    memo["host_watch"] = host_watch = HostWatch(ctx)  # setup report, chain, epoch of each NetworkNode
    host_watch.start()
    if conf.lease_name:
        memo["lease"] = election = LeaderElection(ctx.kube, conf.lease_namespace, conf.lease_name, ctx.leader,
                                                         duration=conf.lease_seconds,
                                                         on_acquired=ctx.repairs.reapply_all)
        election.start()
    else:
        ctx.leader.set()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctx: Context | None = memo.get("ctx")
    if ctx and ctx.registries:
        await ctx.registries.stop()
    if ctx and ctx.repairs:
        await ctx.repairs.stop()
    if memo.get("host_watch"):
        await memo["host_watch"].stop()
    if memo.get("lease"):
        await memo["lease"].release()
    if memo.get("http"):
        await memo["http"].aclose()
    if ctx:
        await ctx.kube.close()


# --- indexes: the one writer of the records; kopf runs no other handler before both kinds are listed

@kopf.index(GROUP, VERSION, "networknodes")
async def network_nodes(body: kopf.Body, memo: kopf.Memo, **_: Any) -> dict[Any, bool]:
    ctx = _ctx(memo)
    key = key_of(body)
    new = key not in ctx.network
    network_node.record_for(ctx, _plain(body))
    if new and ctx.registries is not None:
        ctx.registries.mark_network(key)  # its InferenceNodes may have waited for it
    return {key: True}


@kopf.index(GROUP, VERSION, "inferencenodes")
async def inference_nodes(body: kopf.Body, memo: kopf.Memo, **_: Any) -> dict[Any, bool]:
    inference_node.record_for(_ctx(memo), _plain(body))
    return {key_of(body): True}


# --- NetworkNode ---------------------------------------------------------------------------------

@kopf.on.event(GROUP, VERSION, "networknodes")
async def network_node_seen(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    ctx = _ctx(memo)
    if type == "DELETED" or body["metadata"].get("deletionTimestamp"):
        if type == "DELETED":
            ctx.network.pop(key_of(body), None)
            memo["diffbase"].forget(body["metadata"]["uid"])
        assert ctx.registries is not None
        ctx.registries.mark_network(key_of(body))  # its ML nodes: not Ready, deregistration moot


@kopf.on.resume(GROUP, VERSION, "networknodes")
@kopf.on.create(GROUP, VERSION, "networknodes")
@kopf.on.update(GROUP, VERSION, "networknodes")
async def reconcile_network_node(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    ctx = _ctx(memo)
    await ctx.leader.wait()
    with RECONCILE_SECONDS.labels(kind="NetworkNode").time():
        try:
            await network_node.reconcile(ctx, _plain(body))
        except KubeError as exc:
            RECONCILES.labels(kind="NetworkNode", outcome="error").inc()
            # Backoff from 2 s, like the InferenceNode handler: a fixed 30 s left a NetworkNode
            # unreconciled for 30 s after a blip of the API server (fault suite).
            raise kopf.TemporaryError(str(exc), delay=backoff(retry)) from exc
    RECONCILES.labels(kind="NetworkNode", outcome="ok").inc()


# --- InferenceNode -------------------------------------------------------------------------------

@kopf.on.event(GROUP, VERSION, "inferencenodes")
async def inference_node_seen(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    ctx = _ctx(memo)
    assert ctx.registries is not None
    if type == "DELETED":
        ctx.inference.pop(key_of(body), None)
        ctx.registries.forget(key_of(body))
        memo["diffbase"].forget(body["metadata"]["uid"])
    elif body["metadata"].get("deletionTimestamp"):
        await ctx.registries.mark(key_of(body))  # deregister, then release the finalizer


@kopf.on.resume(GROUP, VERSION, "inferencenodes")
@kopf.on.create(GROUP, VERSION, "inferencenodes")
@kopf.on.update(GROUP, VERSION, "inferencenodes")
async def reconcile_inference_node(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    ctx = _ctx(memo)
    await ctx.leader.wait()
    with RECONCILE_SECONDS.labels(kind="InferenceNode").time():
        try:
            await inference_node.reconcile(ctx, _plain(body))
        except KubeError as exc:
            RECONCILES.labels(kind="InferenceNode", outcome="error").inc()
            raise kopf.TemporaryError(str(exc), delay=backoff(retry)) from exc
    RECONCILES.labels(kind="InferenceNode", outcome="ok").inc()


# --- children: status feedback and drift marks ---------------------------------------------------

@kopf.on.event("apps", "v1", "deployments", labels=OURS)
@kopf.on.event("apps", "v1", "statefulsets", labels=OURS)
@kopf.on.event("", "v1", "services", labels=OURS)
@kopf.on.event("", "v1", "persistentvolumeclaims", labels=OURS)
@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels=OURS)
@kopf.on.event("", "v1", "pods", labels=OURS)
@kopf.on.event("batch", "v1", "jobs", labels=OURS)
@kopf.on.event("", "v1", "configmaps", labels=OURS)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=OURS)
async def child_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await drift.on_child_event(_ctx(memo), type, _plain(body))
