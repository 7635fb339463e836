"""What a host reads at a glance on its NetworkNode: setup report, chain sync, epoch, weight.

Pure mapping (this module's functions) plus `HostWatch`, the one task that reads, per NetworkNode
and per interval, ONE `GET /admin/v1/setup/report`, ONE `GET :26657/status`, ONE
`GET :9000/v1/epochs/latest` and ONE `GET :9000/v2/participants/<address>` (the participant's
weight; the address is the cold key's, from the report), whatever the number of InferenceNodes
(their weights come from the registry poll the RegistryLoop already made: `status.registry.pocWeight`).

Followed upstream (gonka-ai/gonka v0.2.14):
* `decentralized-api/internal/server/admin/setup_report.go`: checks `{id, status PASS|FAIL|UNAVAILABLE,
  message, details}`; ids `cold_key_configured`, `cold_key_not_in_keyring`, `warm_key_in_keyring`,
  `warm_key_address_match`, `permissions_granted`, `feegrant_allowance`, `consensus_key_match`,
  `active_in_epoch` (details `{epoch, weight}`), `block_sync` (message "Chain is synced. Latest
  block: N, age: 8s": the height and age are cut off here, or every poll would write); its
  recommendation for `feegrant_allowance`: `inferenced tx inference grant-ml-ops-permissions
  <cold-key> <warm-address>`.
* CometBFT `/status`: `result.sync_info.{latest_block_height (a string), catching_up}`.
* public API `/v1/epochs/latest`: `latest_epoch.index`, `phase`, `is_confirmation_poc_active`
  (REFERENCE.md §7; numbers may come as strings).
* public API `/v2/participants/:address` (`public/server.go` v2 group, `getParticipantByAddress`):
  `{"participant": {index, address, weight, status, ...}}`, zero fields omitted; 404 when the address
  is no participant (yet). The cold key's address: setup_report.go `cold_key_configured` details.

Writes: conditions change only when a check's status or (cleaned) message changes; the height is
refreshed at most every HEIGHT_REFRESH seconds, and at once when `catching_up` or the epoch phase
flips. So idle intervals within an epoch phase cost no status write.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gonka_operator.admin import AdminError
from gonka_operator.admin.errors import AdminNotFound
from gonka_operator.conditions import Cond, now_rfc3339

if TYPE_CHECKING:
    from gonka_operator.context import Context, Key, NetworkRecord

logger = logging.getLogger(__name__)
Obj = dict[str, Any]
HEIGHT_REFRESH = 600.0
HOST_CONDITIONS = ("KeysReady", "PermissionsGranted", "ActiveInEpoch", "ChainSynced")
# condition → the setup-report checks it sums up (in this order)
CHECKS: dict[str, tuple[str, ...]] = {
    "KeysReady": ("cold_key_configured", "cold_key_not_in_keyring", "warm_key_in_keyring", "warm_key_address_match"),
    "PermissionsGranted": ("permissions_granted", "feegrant_allowance"),
    "ActiveInEpoch": ("active_in_epoch",),
    "ChainSynced": ("block_sync",),
}
_VOLATILE = re.compile(r"\.?\s*Latest block: \d+, age: [^ ()]+")


@dataclass(frozen=True)
class HostReads:
    """One interval's answers (None when the GET failed; the error says why)."""

    report: Obj | None = None
    report_error: str | None = None
    chain: Obj | None = None
    chain_error: str | None = None
    epoch: Obj | None = None
    epoch_error: str | None = None
    participant: Obj | None = None  # `/v2/participants/<cold-key address>` of the public API
    participant_error: str | None = None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _camel(check_id: str) -> str:
    return "".join(part.capitalize() for part in check_id.split("_"))


def clean_message(message: str) -> str:
    """A check's message without what moves every block (block_sync's height and age)."""
    return _VOLATILE.sub("", message).strip()


def chain_facts(chain: Obj | None) -> Obj | None:
    """`{height, catchingUp}` from CometBFT's `/status`, None when absent or malformed."""
    info = ((chain or {}).get("result") or {}).get("sync_info") or {}
    height = _int(info.get("latest_block_height"))
    if height is None or not isinstance(info.get("catching_up"), bool):
        return None
    return {"height": height, "catchingUp": info["catching_up"]}


def epoch_facts(epoch: Obj | None) -> Obj | None:
    """`{id, phase, confirmationPoC}` from `/v1/epochs/latest`, None when absent or malformed."""
    if not epoch or not isinstance(epoch.get("phase"), str):
        return None
    index = _int((epoch.get("latest_epoch") or {}).get("index"))
    if index is None:
        index = _int(epoch.get("epoch_index"))
    out: Obj = {"id": index, "phase": epoch["phase"]}
    if "is_confirmation_poc_active" in epoch:
        out["confirmationPoC"] = bool(epoch["is_confirmation_poc_active"])
    return out


def grant_command(warm_address: str | None, seed_api_url: str) -> str:
    """The human's step with the cold key (REFERENCE.md §7), the warm address filled in."""
    warm = warm_address or "<warm-key-address>"
    return (f"inferenced tx inference grant-ml-ops-permissions <cold-key-name> {warm} --from <cold-key-name> "
            f"--keyring-backend file --gas 2000000 --node {seed_api_url.rstrip('/')}/chain-rpc/")


def account_address_of(report: Obj | None) -> str | None:
    """The participant's (cold key's) address: upstream's `cold_key_configured` check details
    `{address, pubkey}` (setup_report.go `checkColdKey`, PASS only)."""
    for check in (report or {}).get("checks") or []:
        if isinstance(check, dict) and check.get("id") == "cold_key_configured" and check.get("status") == "PASS":
            address = (check.get("details") or {}).get("address")
            return address if isinstance(address, str) and address else None
    return None


def participant_weight(participant: Obj | None) -> int | None:
    """`participant.weight` of `/v2/participants/<address>` (encoding/json omits a zero weight)."""
    body = (participant or {}).get("participant")
    if not isinstance(body, dict):
        return None
    return _int(body.get("weight", 0))


def warm_address_of(report: Obj | None) -> str | None:
    """The warm key's address as the report's details show it (upstream: `warm_key_address`)."""
    for check in (report or {}).get("checks") or []:
        details = check.get("details") if isinstance(check, dict) else None
        if isinstance(details, dict) and isinstance(details.get("warm_key_address"), str):
            return str(details["warm_key_address"])
    return None


def report_conditions(reads: HostReads, chain: Obj | None, command: str) -> list[Cond]:
    """KeysReady, PermissionsGranted, ActiveInEpoch, ChainSynced from the setup report (ChainSynced
    also from the chain's own `catching_up`). A check FAIL → False with the check's message (and
    the command to run, for permissions); UNAVAILABLE or no report → Unknown with why."""
    by_id: dict[str, Obj] = {}
    for check in (reads.report or {}).get("checks") or []:
        if isinstance(check, dict) and isinstance(check.get("id"), str):
            by_id[check["id"]] = check
    out = []
    for ctype, ids in CHECKS.items():
        present = [by_id[i] for i in ids if i in by_id]
        failed = [c for c in present if c.get("status") == "FAIL"]
        unavailable = [c for c in present if c.get("status") not in ("PASS", "FAIL")]
        cond: Cond
        if reads.report is None:
            cond = Cond(ctype, None, "ReportUnavailable", f"setup report: {reads.report_error or 'not read yet'}")
        elif failed:
            message = "; ".join(clean_message(str(c.get("message", ""))) for c in failed)
            if ctype == "PermissionsGranted":
                message += f". Run with the cold key: {command}"
            cond = Cond(ctype, False, _camel(str(failed[0]["id"])) + "Failed", message)
        elif unavailable:
            message = "; ".join(clean_message(str(c.get("message", ""))) for c in unavailable)
            cond = Cond(ctype, None, _camel(str(unavailable[0]["id"])) + "Unavailable", message)
        elif not present:
            cond = Cond(ctype, None, "NotReported", f"the setup report has no {', '.join(ids)} check")
        else:
            cond = Cond(ctype, True, "Passed", "; ".join(clean_message(str(c.get("message", ""))) for c in present))
        if ctype == "ChainSynced" and chain is not None and chain["catchingUp"]:
            cond = Cond(ctype, False, "CatchingUp", "the chain node is catching up (:26657/status catching_up=true)")
        out.append(cond)
    return out


def _age(rfc3339: str | None) -> float:
    try:
        then = datetime.strptime(rfc3339 or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - then).total_seconds()


def chain_block(previous: Obj | None, chain: Obj | None, epoch: Obj | None, previous_epoch: Obj | None,
                now: str) -> Obj | None:
    """status.chain `{height, catchingUp, observedAt}`: the previous block kept unless it is
    HEIGHT_REFRESH old, `catching_up` flipped or the epoch phase flipped."""
    if chain is None:
        return previous
    if previous and previous.get("catchingUp") == chain["catchingUp"] \
            and (epoch or {}).get("phase") == (previous_epoch or {}).get("phase") \
            and _age(previous.get("observedAt")) < HEIGHT_REFRESH:
        return previous
    return {**chain, "observedAt": now}


def host_block(previous_status: Obj | None, reads: HostReads, weight: int, seed_api_url: str,
               warm_address: str | None) -> tuple[Obj, list[Cond]]:
    """The host's status keys (`chain`, `epoch`, `weight`) and conditions, from one interval's
    reads and what the status shows now (`previous_status`)."""
    previous_status = previous_status or {}
    chain, epoch = chain_facts(reads.chain), epoch_facts(reads.epoch)
    keys: Obj = {"weight": weight}
    block = chain_block(previous_status.get("chain"), chain, epoch, previous_status.get("epoch"), now_rfc3339())
    if block is not None:
        keys["chain"] = block
    if epoch is not None:
        weight_now = participant_weight(reads.participant)
        if weight_now is None:  # not read this interval: what the status showed
            weight_now = (previous_status.get("epoch") or {}).get("participantWeight")
        if weight_now is not None:
            epoch = {**epoch, "participantWeight": weight_now}
        keys["epoch"] = epoch
    elif previous_status.get("epoch"):
        keys["epoch"] = previous_status["epoch"]
    command = grant_command(warm_address or warm_address_of(reads.report), seed_api_url)
    return keys, report_conditions(reads, chain, command)


def ml_weight(ctx: Context, nn_key: Key) -> int:
    """Sum of `status.registry.pocWeight` over the InferenceNodes of this NetworkNode (the last
    registry poll's `epoch_ml_nodes[*].poc_weight`)."""
    total = 0
    for key, record in ctx.inference.items():
        ref = ((record.body.get("spec") or {}).get("networkNodeRef") or {}).get("name")
        if key[0] == nn_key[0] and ref == nn_key[1]:
            total += _int((record.registry or {}).get("pocWeight")) or 0
    return total


class HostWatch:
    """The one task that reads each NetworkNode's setup report, chain status and epoch (see the
    module docstring). Only the active operator reads; a NetworkNode whose node/api pod is not
    Ready is not asked (its conditions keep what they said)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.task: asyncio.Task[None] | None = None
        self.reads = 0  # rounds done (tests, metrics)

    def urls(self, nn_key: Key, record: NetworkRecord) -> tuple[str | None, str, str]:
        from gonka_operator.builders.network_node import PUBLIC_API_PORT, RPC_PORT, Names
        from gonka_operator.registry import network_admin_url
        settings = self.ctx.settings
        names, (ns, name) = Names(nn_key[1]), nn_key
        domain = settings.cluster_domain
        chain = settings.chain_url_for(ns, name, f"http://{names.chain_service}.{ns}.svc.{domain}:{RPC_PORT}")
        public = settings.public_url_for(ns, name, f"http://{names.api_service}.{ns}.svc.{domain}:{PUBLIC_API_PORT}")
        return network_admin_url(self.ctx, nn_key), chain, public

    async def read(self, nn_key: Key, record: NetworkRecord) -> HostReads:
        admin_url, chain_url, public_url = self.urls(nn_key, record)
        admin = self.ctx.admin

        async def one(call: Any) -> tuple[Obj | None, str | None]:
            try:
                return await call, None
            except AdminNotFound:
                return None, "not served by this api (GET setup/report answered 404)"
            except AdminError as exc:
                return None, str(exc)

        async def no_admin() -> Obj:
            raise AdminError("no admin URL")

        report, chain, epoch = await asyncio.gather(
            one(admin.setup_report(admin_url) if admin_url else no_admin()),
            one(admin.get_json(chain_url.rstrip("/") + "/status")),
            one(admin.get_json(public_url.rstrip("/") + "/v1/epochs/latest")))
        # the participant's weight: one GET more, once the report named the cold key's address
        address = account_address_of(report[0])
        participant: tuple[Obj | None, str | None] = (None, "no participant address in the setup report")
        if address:
            participant = await one(admin.get_json(f"{public_url.rstrip('/')}/v2/participants/{address}"))
        return HostReads(report[0], report[1], chain[0], chain[1], epoch[0], epoch[1], *participant)

    async def round(self) -> None:
        from gonka_operator import disruption, network_node
        from gonka_operator.status import statefulset_ready
        ctx = self.ctx
        for nn_key, record in list(ctx.network.items()):
            if record.body["metadata"].get("deletionTimestamp") or not statefulset_ready(record.statefulset):
                disruption.release_network(ctx, nn_key, record)  # a held node-pod change of a pod that is down
                continue
            try:
                reads = await self.read(nn_key, record)
                disruption.observe_epoch(record, reads.epoch)  # the PoC window's end (the held message)
                # status.epoch first: the window as this read sees it decides a held node-pod change
                await network_node.apply_host(ctx, record, reads, ml_weight(ctx, nn_key))
                if disruption.release_network(ctx, nn_key, record):
                    continue
                await network_node.write_status(ctx, record)  # the held message, if its end became known
            except asyncio.CancelledError:
                raise
            except Exception:  # one NetworkNode must not stop the others
                logger.exception("Host status of NetworkNode %s/%s failed", *nn_key)
        self.reads += 1

    async def run(self) -> None:
        while True:
            await self.ctx.leader.wait()
            started = time.monotonic()
            await self.round()
            await asyncio.sleep(max(0.0, self.ctx.settings.registry_poll_seconds - (time.monotonic() - started)))

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="host-status")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
