"""Host status at a glance (host_status.py): the setup report, the chain's /status and the epoch as
NetworkNode conditions and columns. The mapping alone, then HostWatch against the real network-node
stand-in on loopback (admin, public and chain faces), with the Kubernetes side recorded."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fakekube import context, network

from gonka_operator import network_node
from gonka_operator.admin import AdminClient
from gonka_operator.conditions import find
from gonka_operator.context import InferenceRecord
from gonka_operator.host_status import HostReads, HostWatch, chain_block, clean_message, host_block
from gonka_operator.simulator import Simulator, run_simulator
from gonka_operator.simulator.network import setup_report

NN = ("ns", "host")
SEED = "http://node2.gonka.ai:8000"
SPEC = {"keyName": "warm", "accountPubKey": "A1b2", "keyringPasswordSecretRef": {"name": "kr", "key": "password"},
        "publicHost": "host.example"}


def conds(reads: HostReads, warm: str | None = None) -> dict[str, Any]:
    _, out = host_block(None, reads, 0, SEED, warm)
    return {c.type: c for c in out}


def test_all_checks_pass_gives_four_true_conditions() -> None:
    got = conds(HostReads(report=setup_report({}, catching_up=False)))
    assert {t: c.ok for t, c in got.items()} == {"KeysReady": True, "PermissionsGranted": True,
                                                  "ActiveInEpoch": True, "ChainSynced": True}
    assert "Warm key found in keyring" in got["KeysReady"].message


def test_a_failed_check_is_false_with_its_message_and_the_grant_command_has_the_warm_address() -> None:
    report = setup_report({"permissions_granted": {"status": "FAIL"}, "warm_key_in_keyring": {"status": "FAIL"},
                           "active_in_epoch": {"status": "UNAVAILABLE", "message": "Failed to get current epoch: x"}},
                          catching_up=False)
    got = conds(HostReads(report=report), warm="gonka1warm")
    assert got["KeysReady"].ok is False and got["KeysReady"].reason == "WarmKeyInKeyringFailed"
    assert got["KeysReady"].message == "Warm key not found in keyring"
    perm = got["PermissionsGranted"]
    assert perm.ok is False and perm.reason == "PermissionsGrantedFailed"
    assert "Missing required permissions" in perm.message
    assert "inferenced tx inference grant-ml-ops-permissions <cold-key-name> gonka1warm --from <cold-key-name>" \
        in perm.message and f"--node {SEED}/chain-rpc/" in perm.message
    assert got["ActiveInEpoch"].ok is None and got["ActiveInEpoch"].reason == "ActiveInEpochUnavailable"
    assert got["ActiveInEpoch"].message == "Failed to get current epoch: x"


def test_no_report_is_unknown_with_why() -> None:
    got = conds(HostReads(report_error="GET setup/report answered 404"))
    assert all(c.ok is None and c.reason == "ReportUnavailable" for c in got.values())
    assert "404" in got["KeysReady"].message


def test_block_sync_message_loses_height_and_age_and_catching_up_wins() -> None:
    # upstream setup_report.go checkBlockSync: "Chain is synced. Latest block: %d, age: %s"
    assert clean_message("Chain is synced. Latest block: 22216, age: 8s") == "Chain is synced"
    assert clean_message("Chain appears stalled. Latest block: 5, age: 2m3s (> 60s)") == \
        "Chain appears stalled (> 60s)"
    chain = {"result": {"sync_info": {"latest_block_height": "12", "catching_up": True}}}
    got = conds(HostReads(report=setup_report({}, catching_up=False), chain=chain))
    assert got["ChainSynced"].ok is False and got["ChainSynced"].reason == "CatchingUp"


def test_height_is_kept_unless_old_or_catching_up_or_phase_flips() -> None:
    prev = {"height": 10, "catchingUp": False, "observedAt": "2999-01-01T00:00:00Z"}
    inference = {"phase": "Inference"}
    assert chain_block(prev, {"height": 99, "catchingUp": False}, inference, inference, "now") is prev
    assert chain_block(prev, {"height": 99, "catchingUp": True}, inference, inference, "now")["height"] == 99
    assert chain_block(prev, {"height": 99, "catchingUp": False}, {"phase": "PoCGenerate"}, inference,
                       "now")["height"] == 99
    old = {**prev, "observedAt": "2000-01-01T00:00:00Z"}
    assert chain_block(old, {"height": 99, "catchingUp": False}, inference, inference, "now")["height"] == 99


# -- HostWatch against the stand-in ------------------------------------------------------------------

@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    # a block every 0.05 s: the height moves between every two rounds
    async with run_simulator(generation="latest", chain_port=0, block_time=0.05, epoch_length=100000,
                             broker_interval=3600) as s:
        yield s


@pytest.fixture
async def counted() -> AsyncIterator[tuple[AdminClient, Counter[str]]]:
    seen: Counter[str] = Counter()

    async def hook(request: httpx.Request) -> None:
        seen[request.url.path] += 1

    async with httpx.AsyncClient(event_hooks={"request": [hook]}) as http:
        yield AdminClient(http, total_timeout=2), seen


def _setup(sim: Simulator, admin: AdminClient, inference_nodes: int) -> tuple[Any, Any, HostWatch]:
    ctx, kube = context(admin, admin_url_overrides={"*": sim.base_url},
                        chain_url_overrides={"*": sim.url_of("chain") or ""},
                        public_url_overrides={"*": sim.url_of("public") or ""})
    record = network(ctx, NN[1], NN[0])
    record.body["spec"] = SPEC
    for i in range(inference_nodes):
        body = {"metadata": {"name": f"ml{i}", "namespace": "ns"}, "spec": {"networkNodeRef": {"name": "host"}}}
        ctx.inference[("ns", f"ml{i}")] = InferenceRecord(body=body, registry={"pocWeight": 10 + i})
    return ctx, kube, HostWatch(ctx)


async def test_one_get_per_endpoint_per_round_whatever_the_number_of_ml_nodes(
        sim: Simulator, counted: tuple[AdminClient, Counter[str]]) -> None:
    admin, seen = counted
    _ctx, kube, watch = _setup(sim, admin, inference_nodes=25)
    await watch.round()
    address = sim.account_address
    assert seen == {"/admin/v1/setup/report": 1, "/status": 1, "/v1/epochs/latest": 1,
                    f"/v2/participants/{address}": 1}
    status = kube.statuses[NN]
    assert status["epoch"]["participantWeight"] == 0  # from the public API: no PoC weight in the stand-in yet
    assert status["weight"] == sum(10 + i for i in range(25))
    assert 0 < status["chain"]["height"] <= sim.epoch_clock.height
    assert status["chain"]["catchingUp"] is False
    assert status["epoch"]["phase"] == sim.epoch_clock.phase
    assert status["epoch"]["id"] == sim.epoch_clock.epoch_index
    for ctype in ("KeysReady", "PermissionsGranted", "ActiveInEpoch", "ChainSynced"):
        assert find(status["conditions"], ctype)["status"] == "True", ctype
    await watch.round()
    assert seen == {"/admin/v1/setup/report": 2, "/status": 2, "/v1/epochs/latest": 2,
                    f"/v2/participants/{address}": 2}


async def test_idle_rounds_within_a_phase_write_nothing_flips_write_at_once(
        sim: Simulator, counted: tuple[AdminClient, Counter[str]]) -> None:
    admin, _ = counted
    _ctx, kube, watch = _setup(sim, admin, inference_nodes=2)
    await watch.round()
    first_height = kube.statuses[NN]["chain"]["height"]
    writes = len(kube.patches)
    assert writes == 1
    for _ in range(5):
        await asyncio.sleep(0.06)  # a block or more between two rounds
        await watch.round()
    assert sim.epoch_clock.height >= first_height + 5  # the chain moved meanwhile
    assert len(kube.patches) == writes, kube.patches[writes:]  # ... and cost no write

    async with httpx.AsyncClient() as http:  # the chain starts catching up: written at once
        (await http.post(sim.base_url + "/stand-in/v1/chain", json={"catching_up": True})).raise_for_status()
    await watch.round()
    assert len(kube.patches) == writes + 1
    status = kube.statuses[NN]
    assert status["chain"]["catchingUp"] is True and status["chain"]["height"] > first_height
    assert find(status["conditions"], "ChainSynced")["status"] == "False"
    await watch.round()
    assert len(kube.patches) == writes + 1

    sim.poc("open")  # the phase flips: epoch and height written at once
    await watch.round()
    assert len(kube.patches) == writes + 2
    assert kube.statuses[NN]["epoch"]["phase"] == sim.epoch_clock.phase != "Inference"


async def test_a_failing_check_shows_up_and_goes_away(sim: Simulator,
                                                       counted: tuple[AdminClient, Counter[str]]) -> None:
    admin, _ = counted
    ctx, kube, watch = _setup(sim, admin, inference_nodes=0)
    ctx.network[NN].status_written = {"onboarding": {"warmKeyAddress": "gonka1abc"}}
    async with httpx.AsyncClient() as http:
        (await http.post(sim.base_url + "/stand-in/v1/setup-report",
                         json={"checks": {"permissions_granted": "FAIL"}})).raise_for_status()
    await watch.round()
    perm = find(kube.statuses[NN]["conditions"], "PermissionsGranted")
    assert perm["status"] == "False" and "grant-ml-ops-permissions <cold-key-name> gonka1abc" in perm["message"]
    async with httpx.AsyncClient() as http:
        (await http.post(sim.base_url + "/stand-in/v1/setup-report", json={"checks": {}})).raise_for_status()
    await watch.round()
    assert find(kube.statuses[NN]["conditions"], "PermissionsGranted")["status"] == "True"


async def test_unreachable_faces_are_unknown_not_a_crash(counted: tuple[AdminClient, Counter[str]]) -> None:
    admin, _ = counted
    ctx, kube = context(admin, admin_url_overrides={"*": "http://127.0.0.1:9"},
                        chain_url_overrides={"*": "http://127.0.0.1:9"},
                        public_url_overrides={"*": "http://127.0.0.1:9"})
    record = network(ctx, NN[1], NN[0])
    record.body["spec"] = SPEC
    await HostWatch(ctx).round()
    status = kube.statuses[NN]
    assert find(status["conditions"], "KeysReady")["reason"] == "ReportUnavailable"
    assert "chain" not in status and "epoch" not in status
    # a later reconcile keeps the host conditions (no flapping removal)
    await network_node.write_status(ctx, record)
    assert find(kube.statuses[NN]["conditions"], "KeysReady") is not None


def test_participant_weight_comes_from_the_public_api_not_the_report() -> None:
    report = {"checks": [{"id": "active_in_epoch", "status": "PASS", "message": "", "details": {"weight": 5}}]}
    epoch = {"phase": "Inference", "latest_epoch": {"index": 3}}
    keys, _ = host_block(None, HostReads(report=report, epoch=epoch, participant={"participant": {"weight": 42}}),
                         0, SEED, None)
    assert keys["epoch"]["participantWeight"] == 42
    # zero is omitted by the api (encoding/json omitempty): 0, not unknown
    keys, _ = host_block(None, HostReads(report=report, epoch=epoch, participant={"participant": {}}), 0, SEED, None)
    assert keys["epoch"]["participantWeight"] == 0
    # not read this interval (e.g. 404: not on chain yet): what the status showed is kept
    previous = {"epoch": {"id": 3, "phase": "Inference", "participantWeight": 42}}
    keys, _ = host_block(previous, HostReads(report=report, epoch=epoch, participant_error="not found"), 0, SEED,
                         None)
    assert keys["epoch"]["participantWeight"] == 42


async def test_the_participant_address_is_the_cold_key_of_the_report(sim: Simulator,
                                                                     counted: tuple[AdminClient, Counter[str]]) -> None:
    admin, seen = counted
    _ctx, kube, watch = _setup(sim, admin, inference_nodes=1)
    await http_post(sim.base_url + "/admin/v1/nodes", {
        "id": "w", "host": "w.example", "inference_port": 5050, "poc_port": 8080, "max_concurrent": 500,
        "models": {"Qwen/Qwen3-32B-FP8": {"args": []}}})
    node = sim.registry.get("w")
    assert node is not None
    node.runtime.epoch_ml_nodes = {"Qwen/Qwen3-32B-FP8": {"node_id": "w", "poc_weight": 9}}
    await watch.round()
    assert kube.statuses[NN]["epoch"]["participantWeight"] == 9
    async with httpx.AsyncClient() as http:  # no cold key in the report: no address to ask for
        (await http.post(sim.base_url + "/stand-in/v1/setup-report",
                         json={"checks": {"cold_key_configured": "FAIL"}})).raise_for_status()
    seen.clear()
    await watch.round()
    assert not any(path.startswith("/v2/") for path in seen)
    assert kube.statuses[NN]["epoch"]["participantWeight"] == 9  # kept


async def http_post(url: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(url, json=body)).raise_for_status()
