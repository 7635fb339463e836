"""Start-up race (issue #11 review, item 1): right after a (re)start the kopf index may not have
listed a NetworkNode yet. Deregistration must then neither be called moot (drain skipped, finalizer
released with the entry left behind) nor be released as "never registered": a NetworkNode is gone
only when it is known to be deleting or the API answers 404 for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fakekube import context, external_body, handled

from gonka_operator import registry
from gonka_operator.admin import AdminClient, create_http_client
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.poller import Registries, RegistryLoop
from gonka_operator.registry import FINALIZER
from procs import free_port

KEY = ("ns", "a")
NN_BODY = {"apiVersion": "gonka.ai/v1alpha1", "kind": "NetworkNode",
           "metadata": {"name": "gonka", "namespace": "ns", "uid": "uid-nn-gonka", "generation": 1}, "spec": {}}


@pytest.fixture
async def admin() -> AsyncIterator[AdminClient]:
    async with create_http_client(total_timeout=2) as http:
        yield AdminClient(http, total_timeout=2)


def deleting_ml_node(admin_url: str | None) -> dict:  # type: ignore[type-arg]
    body = external_body("a", "unused")
    del body["spec"]["adminURL"]
    body["spec"]["networkNodeRef"] = {"name": "gonka"}
    body["metadata"]["deletionTimestamp"] = "2026-01-03T00:00:00Z"
    if admin_url:
        body["status"] = {"adminURL": admin_url}
    return body


async def test_a_network_node_not_indexed_yet_is_asked_for_not_assumed_gone(admin: AdminClient) -> None:
    ctx, kube = context(admin)
    spec = InferenceNodeSpec.model_validate(deleting_ml_node(None)["spec"])
    kube.objects[("NetworkNode", "gonka")] = NN_BODY  # exists; the index has not listed it yet
    assert not await registry.network_node_gone(ctx, "ns", spec)
    assert ("NetworkNode", "gonka") in kube.gets
    del kube.objects[("NetworkNode", "gonka")]  # the API answers 404: gone
    assert await registry.network_node_gone(ctx, "ns", spec)
    kube.objects[("NetworkNode", "gonka")] = {**NN_BODY, "metadata": {**NN_BODY["metadata"],
                                                                       "deletionTimestamp": "2026-01-03T00:00:00Z"}}
    assert await registry.network_node_gone(ctx, "ns", spec)


async def test_deregistration_at_start_up_keeps_the_finalizer_while_the_api_is_down(admin: AdminClient) -> None:
    """The NetworkNode exists but is not indexed yet and its admin API does not answer: the entry
    must stay pending (finalizer held), not be skipped as moot."""
    dead = f"http://127.0.0.1:{free_port()}"
    ctx, kube = context(admin)
    kube.objects[("NetworkNode", "gonka")] = NN_BODY
    record = handled(ctx, deleting_ml_node(dead))
    record.admin_url = dead
    loop = RegistryLoop(ctx, dead)
    loop.snapshot, loop.latest_confirmed = {}, True
    loop.mark(KEY)
    await loop.sync([KEY], fresh=False)
    assert kube.finalizers == [] and FINALIZER in record.body["metadata"]["finalizers"]
    assert record.registration.reason == "DeregistrationPending"
    assert "DeregistrationSkipped" not in kube.reasons("a")


async def test_a_deleting_node_is_not_released_before_its_network_node_is_indexed(admin: AdminClient) -> None:
    """Registries.mark at start-up: the NetworkNode is not listed yet, so the admin URL cannot be
    resolved. Not a reason to release the finalizer as "never registered" while it exists."""
    ctx, kube = context(admin)
    ctx.registries = registries = Registries(ctx)
    kube.objects[("NetworkNode", "gonka")] = NN_BODY
    record = handled(ctx, deleting_ml_node(None))
    await registries.mark(KEY)
    assert kube.finalizers == [] and FINALIZER in record.body["metadata"]["finalizers"]
    del kube.objects[("NetworkNode", "gonka")]  # confirmed absent: nothing can be deregistered
    await registries.mark(KEY)
    assert kube.finalizers == [("a", False)]
    await registries.stop()
