"""The network node's other faces (latest generation): public API, ML callback server, chain RPC.

- Public API (upstream port 9000, `decentralized-api/internal/server/public/`):
  `GET /v1/epochs/latest` from the epoch clock (`epoch.py`); `GET /v2/participants/:address`
  (`server.go`'s v2 group → `getParticipantByAddress`, the chain's `QueryGetParticipantResponse`
  written by echo's `c.JSON`, i.e. encoding/json: `{"participant": {...}}` with the proto's
  `omitempty` names, zero values left out, `status` the enum's number, ACTIVE = 1; an unknown address
  is the keeper's `codes.NotFound "not found"` → 404 `{"error": "not found"}` through
  `middleware.TransparentErrorHandler`). The stand-in knows one participant, its host's: the account
  (cold key) address of the setup report's `cold_key_configured` details; its weight is the sum of
  the registered ML nodes' `poc_weight`.
- ML callback server (upstream port 9100, `decentralized-api/internal/server/mlnode/server.go`):
  `POST /v2/poc-batches/<model>/generated|validated` (v0.2.14+, model path-escaped, possibly twice),
  `POST /v2/poc-batches/generated|validated` and `POST /v1/poc-batches/generated|validated` (older
  ML nodes). Every body is recorded (`PocRecorder`) and answered 200 `{}`; a body that is not a
  JSON object is a 400. `GET /stand-in/v1/poc-batches` lists what arrived.
- Chain RPC (CometBFT `:26657/status`, REFERENCE.md §2/§7): `result.node_info`, `result.sync_info
  {latest_block_hash, latest_block_height (a string, as CometBFT sends it), latest_block_time,
  catching_up}`, `result.validator_info {address, pub_key {type, value}, voting_power}`.
- `GET /admin/v1/setup/report` (admin `setup_report.go`): `{experimental, generated_at, cached_until,
  overall_status, checks [{id, status, message, details?}], summary}` (`cold_key_configured` PASS has
  `details {address, pubkey}`, as upstream's `checkColdKey`); every check PASS unless configured
  otherwise (`--setup-report FILE`, `--setup-check ID=STATUS`, `POST /stand-in/v1/setup-report`);
  `block_sync` follows the chain's `catching_up`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from aiohttp import web

from gonka_operator.simulator.broker import PocRecord

if TYPE_CHECKING:
    from gonka_operator.simulator.server import Simulator

NET_KEY: web.AppKey[Any] = web.AppKey("network")
STATUSES = ("PASS", "FAIL", "UNAVAILABLE")
# (id, message when PASS, message when FAIL): the checks of setup_report.go the stand-in reports.
SETUP_CHECKS: tuple[tuple[str, str, str], ...] = (
    ("cold_key_configured", "Cold key is configured", "Cold key is not configured"),
    ("cold_key_not_in_keyring", "Cold key correctly NOT in keyring",
     "Cold key is in keyring (should only be in environment config)"),
    ("warm_key_in_keyring", "Warm key found in keyring", "Warm key not found in keyring"),
    ("warm_key_address_match", "Warm key address matches signer address", "Warm key address mismatch"),
    ("permissions_granted", "All required permissions granted", "Missing required permissions"),
    ("feegrant_allowance", "Fee allowance from cold to warm key is configured",
     "No fee allowance from cold to warm key. Warm-key txs cannot pay fees from the cold account"),
    ("consensus_key_match", "Consensus key matches participant registration", "Consensus key mismatch"),
    ("active_in_epoch", "Participant is active in the current epoch", "Participant is NOT active in the current epoch"),
    ("block_sync", "Node is in sync with the chain", "Node is catching up"),
)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=json.dumps)


def _sim(request: web.Request) -> Simulator:
    return cast("Simulator", request.app[NET_KEY])


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_setup_checks(values: dict[str, Any]) -> dict[str, dict[str, str]]:
    """`{"permissions_granted": "FAIL"}` or `{"x": {"status": "FAIL", "message": "..."}}` → normalised."""
    out: dict[str, dict[str, str]] = {}
    for check_id, value in values.items():
        item = {"status": value} if isinstance(value, str) else dict(value)
        status = str(item.get("status", "")).upper()
        if status not in STATUSES:
            raise ValueError(f"setup check {check_id}: status must be one of {STATUSES}, got {item.get('status')!r}")
        out[str(check_id)] = {"status": status, **({"message": str(item["message"])} if "message" in item else {})}
    return out


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _bech32(hrp: str, data: bytes) -> str:
    """BIP-173 bech32 of `data` (8-bit → 5-bit groups, polymod checksum): a Cosmos SDK address."""
    acc, bits, groups = 0, 0, []
    for byte in data:
        acc, bits = (acc << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            groups.append((acc >> bits) & 31)
    if bits:
        groups.append((acc << (5 - bits)) & 31)
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + groups + [0] * 6
    chk = 1
    for v in values:
        top, chk = chk >> 25, ((chk & 0x1FFFFFF) << 5) ^ v
        for i, gen in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            chk ^= gen if (top >> i) & 1 else 0
    chk ^= 1
    return hrp + "1" + "".join(_BECH32[g] for g in groups + [(chk >> 5 * (5 - i)) & 31 for i in range(6)])


def account_key(seed: str) -> tuple[str, str]:
    """(address, base64 pubkey) of the host's made-up account (cold) key: a 33-byte compressed-key
    shape from the seed, its address as the Cosmos SDK derives it (ripemd160 of sha256, bech32 "gonka")."""
    pubkey = b"\x02" + hashlib.sha256(f"account:{seed}".encode()).digest()
    return address_of(pubkey)[0], base64.b64encode(pubkey).decode()


def address_of(pubkey: bytes) -> tuple[str, bytes]:
    """(bech32 "gonka" address, its 20 bytes) of a public key, as the Cosmos SDK derives it."""
    digest = hashlib.sha256(pubkey).digest()
    try:
        account = hashlib.new("ripemd160", digest).digest()
    except ValueError:  # an OpenSSL without its legacy provider: same length, still deterministic
        account = hashlib.sha256(digest).digest()[:20]
    return _bech32("gonka", account), account


def setup_report(overrides: dict[str, dict[str, str]], catching_up: bool,
                 account: tuple[str, str] | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    checks = []
    known = {c[0] for c in SETUP_CHECKS}
    for check_id, passed, failed in SETUP_CHECKS:
        status = "FAIL" if check_id == "block_sync" and catching_up else "PASS"
        item = overrides.get(check_id, {})
        status = item.get("status", status)
        message = item.get("message") or (passed if status == "PASS" else failed if status == "FAIL"
                                          else f"Unable to check {check_id.replace('_', ' ')}")
        check: dict[str, Any] = {"id": check_id, "status": status, "message": message}
        if check_id == "cold_key_configured" and status == "PASS" and account is not None:
            check["details"] = {"address": account[0], "pubkey": account[1]}
        checks.append(check)
    for check_id, item in overrides.items():
        if check_id not in known:
            checks.append({"id": check_id, "status": item["status"], "message": item.get("message", "")})
    counts = {s: sum(c["status"] == s for c in checks) for s in STATUSES}
    overall = "FAIL" if counts["FAIL"] else "UNAVAILABLE" if counts["UNAVAILABLE"] else "PASS"
    return {
        "experimental": True,
        "generated_at": _rfc3339(now),
        "cached_until": _rfc3339(now + timedelta(minutes=1)),
        "overall_status": overall,
        "checks": checks,
        "summary": {
            "total_checks": len(checks),
            "passed_checks": counts["PASS"],
            "failed_checks": counts["FAIL"],
            "unavailable_checks": counts["UNAVAILABLE"],
            "issues": [c["message"] for c in checks if c["status"] != "PASS"],
            "recommendations": [],
        },
    }


# -- public API -----------------------------------------------------------------------------------


async def epochs_latest(request: web.Request) -> web.Response:
    return _json(_sim(request).epoch_clock.latest())


async def public_status(request: web.Request) -> web.Response:
    # The api container's health (REFERENCE.md §2 "Health": `GET :9000/v1/status`, what the
    # operator's probes ask); answered once the public server is up, like upstream.
    return _json({"status": "ok", "epoch": _sim(request).epoch_clock.latest()})


async def participant_by_address(request: web.Request) -> web.Response:
    sim = _sim(request)
    address, pubkey = account_key(sim.validator_seed)
    if request.match_info["address"] != address:
        return _json({"error": "not found"}, 404)
    weight = 0
    for node_id in sim.registry.node_ids():
        node = sim.registry.get(node_id)
        if node is not None:
            weight += sum(int(v.get("poc_weight", 0)) for v in node.runtime.epoch_ml_nodes.values())
    validator = base64.b64encode(hashlib.sha256(sim.validator_seed.encode()).digest()).decode()
    participant: dict[str, Any] = {"index": address, "address": address, "weight": weight, "join_height": 1,
                                   "status": 1, "validator_key": validator, "worker_public_key": pubkey,
                                   "current_epoch_stats": {}}
    return _json({"participant": {k: v for k, v in participant.items() if v not in (0, "")}})


def build_public_app(sim: Simulator) -> web.Application:
    app = web.Application()
    app[NET_KEY] = sim
    app.router.add_get("/v1/status", public_status)
    app.router.add_get("/v1/epochs/latest", epochs_latest)
    app.router.add_get("/v2/participants/{address}", participant_by_address)
    return app


# -- ML callback server ---------------------------------------------------------------------------


async def poc_callback(request: web.Request) -> web.Response:
    raw = request.raw_path.split("?")[0]
    parts = raw.strip("/").split("/")  # v1|v2, poc-batches, [model], generated|validated
    kind = parts[-1]
    if len(parts) not in (3, 4) or parts[1] != "poc-batches" or kind not in ("generated", "validated"):
        return _json({"message": "Not Found"}, 404)
    model = None
    if len(parts) == 4:
        model = parts[2]
        for _ in range(3):  # the api escapes the model id twice; decode until stable
            decoded = unquote(model)
            if decoded == model:
                break
            model = decoded
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return _json({"message": "invalid request body"}, 400)
    sim = _sim(request)
    sim.poc_recorder.records.append(PocRecord(kind, raw, model, body, time.time()))
    return _json({})


async def poc_batches(request: web.Request) -> web.Response:
    return _json([r.as_json() for r in _sim(request).poc_recorder.records])


def build_callback_app(sim: Simulator) -> web.Application:
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app[NET_KEY] = sim
    app.router.add_post("/v1/poc-batches/{tail:.*}", poc_callback)
    app.router.add_post("/v2/poc-batches/{tail:.*}", poc_callback)
    app.router.add_get("/stand-in/v1/poc-batches", poc_batches)
    return app


# -- chain RPC ------------------------------------------------------------------------------------


async def chain_status(request: web.Request) -> web.Response:
    sim = _sim(request)
    height = sim.epoch_clock.height
    key = hashlib.sha256(sim.validator_seed.encode()).digest()
    return _json({
        "jsonrpc": "2.0",
        "id": -1,
        "result": {
            "node_info": {"id": key[:20].hex(), "network": "gonka-mainnet", "version": "0.38.17",
                          "moniker": "stand-in"},
            "sync_info": {
                "latest_block_hash": hashlib.sha256(str(height).encode()).hexdigest().upper(),
                "latest_block_height": str(height),
                "latest_block_time": _rfc3339(datetime.now(UTC)),
                "catching_up": sim.catching_up,
            },
            "validator_info": {
                "address": hashlib.sha256(key).hexdigest()[:40].upper(),
                "pub_key": {"type": "tendermint/PubKeyEd25519", "value": base64.b64encode(key).decode()},
                "voting_power": "0",
            },
        },
    })


def build_chain_app(sim: Simulator) -> web.Application:
    app = web.Application()
    app[NET_KEY] = sim
    app.router.add_get("/status", chain_status)
    return app
