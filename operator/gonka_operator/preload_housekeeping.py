"""Preload housekeeping, run on each registry tick (poller.Registries.tick): what no Kubernetes
event announces about a node's HF-cache preload — the bytes and files a running preload pod has
fetched so far (read from its log), and a failed preload whose retry delay has passed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from gonka_operator.builders import hf_cache
from gonka_operator.context import Context, InferenceRecord, Key
from gonka_operator.inference_node import cache_plan, cache_view, write_status
from gonka_operator.kube import KubeError
from gonka_operator.models.inference_node import InferenceNodeSpec

logger = logging.getLogger(__name__)


def _preloading(ctx: Context) -> Iterator[tuple[Key, InferenceRecord, InferenceNodeSpec]]:
    """The nodes not being deleted whose spec is valid and wants a preload."""
    for key, record in list(ctx.inference.items()):
        if record.body["metadata"].get("deletionTimestamp"):
            continue
        try:
            spec = InferenceNodeSpec.model_validate(record.body["spec"])
        except ValueError:
            continue
        if hf_cache.wanted(spec):
            yield key, record, spec


async def refresh_cache_progress(ctx: Context) -> int:
    """Housekeeping (each registry tick): for every cache still Downloading whose preload pod runs, read
    the pod's last log lines and put the bytes/files fetched so far on status.cache. Returns how many
    logs were read. A log that cannot be read is skipped (the final figures come from the pod's
    termination message anyway)."""
    read = 0
    for key, record, spec in _preloading(ctx):
        if cache_view(record).reason != hf_cache.DOWNLOADING:
            record.cache_progress = None
            continue
        pod = hf_cache.running_pod(spec, key[1], record.preload_pods, cache_plan(record, spec).attempt)
        if pod is None:
            continue
        try:
            log = await ctx.kube.pod_log(key[0], pod, hf_cache.CONTAINER)
        except KubeError as exc:
            logger.debug("Could not read the log of preload pod %s/%s: %s", key[0], pod, exc)
            continue
        read += 1
        progress = hf_cache.parse_progress(log)
        if progress is not None and progress != record.cache_progress:
            record.cache_progress = progress
            await write_status(ctx, record)
    return read


async def retry_due_preloads(ctx: Context) -> list[Key]:
    """Housekeeping (each registry tick): mark for reconcile every node whose failed preload Job is due
    for its next attempt (no event comes when a delay has passed). Returns the keys marked."""
    due: list[Key] = []
    for key, record, spec in _preloading(ctx):
        latest, job = hf_cache.current_job(key[1], spec, record.jobs)
        if job is not None and cache_plan(record, spec).attempt > latest:
            due.append(key)
    for key in due:
        logger.info("The preload of InferenceNode %s/%s is due for its next attempt", *key)
        if ctx.repairs is not None:
            ctx.repairs.mark("InferenceNode", key)
    return due
