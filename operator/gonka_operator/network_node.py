"""NetworkNode use cases: apply PVCs, Services, workloads and policies; compute and write status."""

from __future__ import annotations

import logging

from gonka_operator import context, disruption
from gonka_operator.builders import network_node as build
from gonka_operator.builders import onboarding
from gonka_operator.builders.common import Obj, Owner
from gonka_operator.builders.policies import network_node_policies
from gonka_operator.children import ApplyRefused, apply_child, prune
from gonka_operator.conditions import merge_conditions, now_rfc3339
from gonka_operator.context import Context, NetworkRecord, key_of
from gonka_operator.host_status import HOST_CONDITIONS, HostReads, host_block
from gonka_operator.kube import KubeError
from gonka_operator.models.network_node import NetworkNodeSpec
from gonka_operator.status import network_node_conditions

logger = logging.getLogger(__name__)
KIND = "NetworkNode"
POLL_KEYS = ("adminReachable", "registry", "unmanagedNodes")
HOST_KEYS = ("chain", "epoch", "weight")  # host_status.py


def owner_of(body: Obj) -> Owner:
    meta = body["metadata"]
    return Owner(KIND, meta["name"], meta["namespace"], meta["uid"])


def desired_children(body: Obj, service_ips: dict[str, str], operator_pod_labels: dict[str, str],
                     cluster_domain: str, operator_namespace: str | None = None,
                     status: Obj | None = None) -> list[Obj]:
    """Every object of a NetworkNode, in apply order (Services first: the proxy needs their IPs)."""
    spec = NetworkNodeSpec.model_validate(body["spec"])
    owner = owner_of(body)
    ep = build.endpoints(owner.name, owner.namespace, spec, cluster_domain)
    objs = [*build.build_pvcs(owner, spec), *build.build_services(owner, spec),
            build.build_mlnode_proxy_config(owner),  # mounted by every ML pod of this NetworkNode
            build.build_statefulset(owner, spec, ep), build.build_proxy(owner, spec, service_ips)]
    if spec.explorer.enabled:
        objs.append(build.build_explorer(owner, spec))
    objs += onboarding_jobs(status if status is not None else body.get("status") or {}, spec, owner,
                            ep.public_url, service_ips)
    return objs + network_node_policies(owner, operator_pod_labels, operator_namespace)


def onboarding_jobs(status: Obj, spec: NetworkNodeSpec, owner: Owner, public_url: str,
                    service_ips: dict[str, str]) -> list[Obj]:
    """The warm-key Job; the registration Job once the warm key's Job completed (as the status
    shows) and the chain Service has its IP. A pure function of the CR and its status."""
    pvc = build.Names(owner.name).pvc("inference")
    jobs = [onboarding.build_warm_key_job(owner, spec, pvc)] if spec.onboarding.create_warm_key else []
    shown = status.get("onboarding") or {}
    warm_done = shown.get("warmKeyJob") == "Complete" or (not spec.onboarding.create_warm_key)
    chain_ip = service_ips.get(build.Names(owner.name).chain_service)
    if spec.onboarding.register_participant and (warm_done or shown.get("registrationJob")) and chain_ip:
        jobs.append(onboarding.build_register_job(owner, spec, pvc, public_url, chain_ip))
    return jobs


def record_for(ctx: Context, body: Obj) -> NetworkRecord:
    key = key_of(body)
    record = ctx.network.get(key)
    if record is None:
        status = body.get("status") or {}
        # start from what the object shows (the last poll's keys too: a restarted operator must not
        # remove them, then write them again)
        record = ctx.network[key] = NetworkRecord(body=body, status_written=status or None, poll={
            k: status[k] for k in POLL_KEYS if k in status}, host={k: status[k] for k in HOST_KEYS if k in status})
    else:
        record.body = body
    spec = NetworkNodeSpec.model_validate(body["spec"])
    record.endpoints = build.endpoints(key[1], key[0], spec, ctx.settings.cluster_domain).wire()
    return record


async def reconcile(ctx: Context, body: Obj) -> None:
    """Apply all children: PVCs and Services first, then the workloads, whose proxy needs the
    Services' cluster IPs for its hostAliases; then prune what is no longer desired (the explorer
    switched off). A child the API server refuses is `ApplyFailed` (Degraded), never a deletion.
    The one code path of kopf's handlers and of drift repair."""
    record = record_for(ctx, body)
    if body["metadata"].get("deletionTimestamp"):
        return
    settings = ctx.settings
    async with record.apply_lock:
        body = record.body
        errors: list[str] = []
        child: Obj = {}
        wanted: list[Obj] = []  # everything desired in either pass
        try:
            for first_pass in (True, False):
                # computed per pass: the second sees the Services' IPs the first learned (the proxy's
                # hostAliases, the register Job), which after a restart are not known before
                desired = desired_children(body, record.service_ips, settings.operator_pod_labels,
                                           settings.cluster_domain, settings.operator_namespace,
                                           status=record.status_written)
                wanted += desired  # a held StatefulSet stays wanted: held is not pruned
                if not first_pass:
                    # a node-pod restart waits for the Inference phase (disruption.py)
                    desired = await disruption.hold_network(ctx, record, desired)
                for child in desired:
                    if (child["kind"] in ("PersistentVolumeClaim", "Service")) == first_pass:
                        try:
                            remember_child(record, await apply_child(ctx, child))
                        except ApplyRefused as refused:
                            errors.append(str(refused))
            # pruned only after the applies, against what either pass wanted: the set computed
            # before them lacked the register Job after a restart, and pruned it
            await prune(ctx, record, wanted)
        except KubeError as exc:
            error = f"applying {child.get('kind')} {child.get('metadata', {}).get('name')} failed: {exc}"
            if error != record.apply_error:
                await ctx.kube.post_event(body, "Warning", "ApplyFailed", error)
            record.apply_error = error
            record.observed_generation = body["metadata"].get("generation")
            await write_status(ctx, record)
            raise
        record.observed_generation = body["metadata"].get("generation")
        refusal = "; ".join(errors) or None
        if refusal and refusal != record.apply_error:
            await ctx.kube.post_event(body, "Warning", "ApplyFailed", refusal)
        record.apply_error = refusal
    await write_status(ctx, record)
    if refusal:
        # Retried with backoff (kopf): what the API refuses can depend on other objects (e.g. a
        # NodePort another Service holds). A few NetworkNodes per cluster: no worker starvation.
        raise KubeError(422, refusal)


def remember_child(record: NetworkRecord, obj: Obj) -> None:
    """Keep what status and the proxy need from a child we applied or saw in a watch event."""
    kind, name = obj.get("kind"), obj["metadata"]["name"]
    if kind == "Service" and obj.get("spec", {}).get("clusterIP") not in (None, "None"):
        record.service_ips[name] = obj["spec"]["clusterIP"]
    elif kind == "StatefulSet":
        record.statefulset = {"status": obj.get("status", {})}
    elif kind == "Deployment" and name.endswith("-proxy"):
        record.proxy = {"status": obj.get("status", {})}
    elif kind == "Job" and name in (onboarding.warm_key_job_name(record.body["metadata"]["name"]),
                                    onboarding.register_job_name(record.body["metadata"]["name"])):
        record.onboarding_jobs[name] = {"status": obj.get("status", {})}
    elif kind == "Pod" and onboarding.is_onboarding_pod(obj):
        record.onboarding_pods[name] = {"metadata": {"labels": obj["metadata"].get("labels", {})},
                                        "status": obj.get("status", {})}


def onboarding_pending(record: NetworkRecord) -> bool:
    """The registration Job became desired (the warm key's Job completed) and is not there yet."""
    spec = NetworkNodeSpec.model_validate(record.body["spec"])
    name = onboarding.register_job_name(record.body["metadata"]["name"])
    shown = (record.status_written or {}).get("onboarding") or {}
    return (spec.onboarding.register_participant and ("Job", name) not in record.children
            and (shown.get("warmKeyJob") == "Complete" or not spec.onboarding.create_warm_key))


def forget_child(record: NetworkRecord, obj: Obj) -> None:
    """A deleted onboarding Job or pod (drift.py calls it on DELETED events)."""
    if obj.get("kind") == "Job":
        record.onboarding_jobs.pop(obj["metadata"]["name"], None)
    elif obj.get("kind") == "Pod":
        record.onboarding_pods.pop(obj["metadata"]["name"], None)


def compute_status(record: NetworkRecord) -> Obj:
    previous = (record.status_written or {}).get("conditions", [])
    now = now_rfc3339()
    conditions = network_node_conditions(previous, record.observed_generation, record.statefulset,
                                         record.proxy, record.apply_error, now)
    if record.host_conditions is None:  # not read yet (e.g. after a restart): keep what the object shows
        conditions += [c for c in previous if c.get("type") in HOST_CONDITIONS]
    else:
        conditions += merge_conditions(previous, record.host_conditions, record.observed_generation, now)
    if (pending := disruption.condition(record, previous)) is not None:
        conditions += merge_conditions(previous, [pending], record.observed_generation, now)
    status: Obj = {
        "observedGeneration": record.observed_generation,
        "conditions": conditions,
        "endpoints": record.endpoints,
    }
    status.update(record.poll)
    status.update(record.host)
    shown = (record.status_written or {}).get("onboarding")
    block = onboarding.read_onboarding(record.body["metadata"]["name"], record.onboarding_jobs,
                                       record.onboarding_pods, shown)
    step = next_step(record, block)
    if step:
        block["nextStep"] = step
    if block:
        status["onboarding"] = block
    return status


def next_step(record: NetworkRecord, block: Obj) -> str | None:
    """What is missing for this host to work, first thing first (the cold-key steps are human)."""
    spec = NetworkNodeSpec.model_validate(record.body["spec"])
    if spec.onboarding.create_warm_key and block.get("warmKeyJob") in (None, "Running"):
        return "waiting for the warm-key Job"
    if block.get("warmKeyJob") == "Failed":
        job = onboarding.warm_key_job_name(record.body["metadata"]["name"])
        return f"the warm-key Job failed: see `kubectl describe job {job}` and `kubectl logs job/{job}`"
    for cond in record.host_conditions or []:
        if cond.type in ("KeysReady", "PermissionsGranted", "ActiveInEpoch") and cond.ok is False:
            return f"{cond.type}: {cond.message}"
    return None


async def apply_host(ctx: Context, record: NetworkRecord, reads: HostReads, weight: int) -> None:
    """One interval's host reads (host_status.HostWatch) → status; written only when it changed."""
    spec = NetworkNodeSpec.model_validate(record.body["spec"])
    shown = record.status_written or {}
    warm = (shown.get("onboarding") or {}).get("warmKeyAddress")
    record.host, record.host_conditions = host_block({**shown, **record.host}, reads, weight,
                                                     spec.chain.seed_api_url, warm)
    await write_status(ctx, record)


async def write_status(ctx: Context, record: NetworkRecord) -> None:
    await context.write_status(ctx, record, KIND, compute_status)
