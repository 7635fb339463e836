"""registry.py: the rules of one entry, pure and against the real stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fakekube import context, external_body, network

from gonka_operator.admin import AdminClient, create_http_client
from gonka_operator.admin.models import AdminState, NodeEntry, NodeState, RegisteredNode
from gonka_operator.models.inference_node import InferenceNodeSpec
from gonka_operator.registry import (
    RegistryProblem,
    backoff,
    content_drift,
    desired_config,
    id_owner,
    register,
    resolve_admin_url,
)
from gonka_operator.simulator import run_simulator


def spec_of(body: dict) -> InferenceNodeSpec:  # type: ignore[type-arg]
    return InferenceNodeSpec.model_validate(body["spec"])


def test_content_drift_names_what_differs() -> None:
    body = external_body("a", "http://127.0.0.1:1")
    config = desired_config(("ns", "a"), spec_of(body), "cluster.local")
    same = NodeEntry(node=RegisteredNode(**config.to_body()), state=NodeState(admin_state=AdminState(enabled=True)))
    assert content_drift(same, config, enabled=True) is None
    assert "enabled" in (content_drift(same, config, enabled=False) or "")
    edited = NodeEntry(node=RegisteredNode(**{**config.to_body(), "max_concurrent": 3}), state=NodeState())
    assert content_drift(edited, config, enabled=True) == "entry differs from the spec in max_concurrent"
    unknown = NodeEntry(node=RegisteredNode(**config.to_body()), state=NodeState())  # no admin_state reported
    assert content_drift(unknown, config, enabled=False) is None


def test_the_oldest_claimant_owns_an_id() -> None:
    ctx, _ = context(None)  # type: ignore[arg-type]
    for ns, created in (("b", "2026-01-02T00:00:00Z"), ("a", "2026-01-03T00:00:00Z"), ("c", "2026-01-01T00:00:00Z")):
        from fakekube import handled

        handled(ctx, external_body("gpu", "u", namespace=ns, created=created))
    assert id_owner(ctx, "u", "gpu", [("a", "gpu"), ("b", "gpu"), ("c", "gpu")]) == ("c", "gpu")


def test_network_node_not_ready_until_its_api_pod_is_ready() -> None:
    ctx, _ = context(None)  # type: ignore[arg-type]
    body = external_body("a", "x")
    del body["spec"]["adminURL"]
    body["spec"]["networkNodeRef"] = {"name": "gonka"}
    with pytest.raises(RegistryProblem) as missing:
        resolve_admin_url(ctx, "ns", spec_of(body))
    assert missing.value.facts.reason == "NetworkNodeNotFound"
    network(ctx, "gonka", ready=False)
    with pytest.raises(RegistryProblem) as waiting:
        resolve_admin_url(ctx, "ns", spec_of(body))
    assert waiting.value.facts.reason == "NetworkNodeNotReady" and not waiting.value.warn
    ctx.network[("ns", "gonka")].statefulset = {"status": {"readyReplicas": 1}}
    assert resolve_admin_url(ctx, "ns", spec_of(body)) == "http://gonka-api.ns.svc.cluster.local:9200"


def test_backoff_is_capped() -> None:
    assert [backoff(r) for r in (0, 1, 5, 50)] == [2.0, 4.0, 60.0, 60.0]


@pytest.fixture
async def admin() -> AsyncIterator[AdminClient]:
    async with create_http_client() as http:
        yield AdminClient(http)


@pytest.mark.parametrize("generation", ["latest", "2025-08"])
async def test_register_reports_what_it_sent(generation: str, admin: AdminClient) -> None:
    async with run_simulator(generation=generation, state_delay=0.1) as sim:
        body = external_body("a", sim.base_url)
        config = desired_config(("ns", "a"), spec_of(body), "cluster.local")
        first = await register(admin, sim.base_url, config, True, None)
        assert first.changed and first.put_succeeded == (generation == "latest")
        again = await register(admin, sim.base_url, config, True, first.entry)
        assert not again.changed and not again.put_succeeded  # nothing sent: nothing confirmed
        disabled = await register(admin, sim.base_url, config, False, again.entry)
        assert disabled.changed and not disabled.put_succeeded
        entries = await admin.list_nodes(sim.base_url)
        assert len(entries) == 1 and entries[0].state.admin_state and entries[0].state.admin_state.enabled is False
