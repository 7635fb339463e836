"""HTTP face of the stand-in: the admin API routes of REFERENCE.md §4/§6 plus `/debug/` and
`/stand-in/v1/` controls (stand-in only, never faulted, not counted).

Latest generation extras on the admin port: `GET /admin/v1/setup/report` (`network.setup_report`),
`GET /admin/v1/poc/timing` → `{"available": true, "timing": {...}}` (the same timing as
`onboarding.timing`, admin `timing_calculator.go`).

Faults (set by `POST /debug/faults` or the `Simulator` methods) apply to `/admin/v1/...` only, so
the `/debug/` routes stay usable while a fault is on. Every `/admin/v1/...` request is counted by
"<METHOD> <route template>" (e.g. "PUT /admin/v1/nodes/{id}"), even when a fault answers it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from gonka_operator.simulator.network import account_key, parse_setup_checks, setup_report
from gonka_operator.simulator.state import ApiError

if TYPE_CHECKING:
    from gonka_operator.simulator.server import Simulator

logger = logging.getLogger(__name__)

PREFIX = "/admin/v1"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SIM_KEY: web.AppKey[Any] = web.AppKey("simulator")


@dataclass
class Faults:
    """Deadlines on the event loop's clock (`loop.time()`); 0 = off."""

    error500_until: float = 0.0
    slow_until: float = 0.0
    slow_delay: float = 0.0
    refuse_until: float = 0.0

    def clear(self) -> None:
        self.error500_until = self.slow_until = self.slow_delay = self.refuse_until = 0.0


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=json.dumps)


def _error(exc: ApiError) -> web.Response:
    return _json(exc.body, exc.status)


def _sim(request: web.Request) -> Simulator:
    return cast("Simulator", request.app[SIM_KEY])


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    return f"{request.method} {path}"


@web.middleware
async def _faults_and_counts(request: web.Request, handler: _Handler) -> web.StreamResponse:
    if not request.path.startswith(PREFIX + "/") and request.path != PREFIX:
        return await handler(request)
    sim = _sim(request)
    sim.counts[route_template(request)] += 1
    faults, now = sim.faults, asyncio.get_running_loop().time()
    if now < faults.slow_until:
        await asyncio.sleep(faults.slow_delay)
    if now < faults.error500_until:
        return _json({"error": "internal error"}, 500)
    return await handler(request)


async def _read_json(request: web.Request) -> Any:
    try:
        return await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"invalid request body: {exc}") from exc


# -- admin API --------------------------------------------------------------------------------------


def _poke(request: web.Request) -> None:
    """A registration or admin change wakes the broker (upstream: TriggerStatusQuery/Reconciliation)."""
    broker = _sim(request).broker
    if broker is not None:
        broker.trigger()


async def list_nodes(request: web.Request) -> web.Response:
    return _json(_sim(request).registry.entries())


async def create_node(request: web.Request) -> web.Response:
    try:
        config = _sim(request).registry.register(await _read_json(request))
    except ApiError as exc:
        return _error(exc)
    logger.info("Registered node %s", config["id"])
    _poke(request)
    return _json(config)


async def put_node(request: web.Request) -> web.Response:
    registry = _sim(request).registry
    if registry.legacy:  # the 2025-08 router has no PUT route (echo answers 405 like this)
        return _json({"message": "Method Not Allowed"}, 405)
    try:
        config = registry.register(await _read_json(request), path_id=request.match_info["id"])
    except ApiError as exc:
        return _error(exc)
    logger.info("Upserted node %s", config["id"])
    _poke(request)
    return _json(config)


async def create_batch(request: web.Request) -> web.Response:
    try:
        status, body = _sim(request).registry.register_batch(await _read_json(request))
    except ApiError as exc:
        return _error(exc)
    _poke(request)
    return _json(body, status)


async def delete_node(request: web.Request) -> web.Response:
    removed = _sim(request).registry.delete(request.match_info["id"])
    logger.info("Deleted node %s (was present: %s)", request.match_info["id"], removed)
    return _json(removed)


async def enable_node(request: web.Request) -> web.Response:
    return _set_enabled(request, True)


async def disable_node(request: web.Request) -> web.Response:
    return _set_enabled(request, False)


def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    node_id = request.match_info["id"]
    try:
        _sim(request).registry.set_enabled(node_id, enabled)
    except ApiError as exc:
        return _error(exc)
    _poke(request)
    word = "enabled" if enabled else "disabled"
    return _json({"message": f"node {word} successfully", "node_id": node_id})


# -- debug ------------------------------------------------------------------------------------------


async def set_faults(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    try:
        body = await _read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "expected a JSON object")
        mode = body.get("mode")
        seconds = float(body.get("seconds", 5))
        delay = float(body.get("delay", 2))
    except (ApiError, TypeError, ValueError) as exc:
        return _json({"error": str(exc)}, 400)
    if mode == "refuse":
        resp = _json({"mode": mode, "seconds": seconds})
        resp.force_close()  # this connection must not outlive the refusal either
        sim.refuse_for(seconds, keep=request.protocol)
        return resp
    if mode == "slow":
        sim.slow_for(seconds, delay)
    elif mode == "error500":
        sim.fail_with_500_for(seconds)
    elif mode in ("none", "clear"):
        sim.clear_faults()
    else:
        return _json({"error": f"unknown mode {mode!r}: refuse, slow, error500 or none"}, 400)
    return _json({"mode": mode, "seconds": seconds, "delay": delay})


async def fail_node(request: web.Request) -> web.Response:
    try:
        body = await _read_json(request) if request.can_read_body else {}
        reason = body.get("reason", "simulated failure") if isinstance(body, dict) else ""
        _sim(request).registry.fail(request.match_info["id"], str(reason))
    except ApiError as exc:
        return _error(exc)
    return _json({"node_id": request.match_info["id"], "current_status": "FAILED"})


async def recover_node(request: web.Request) -> web.Response:
    try:
        _sim(request).registry.recover(request.match_info["id"])
    except ApiError as exc:
        return _error(exc)
    return _json({"node_id": request.match_info["id"], "current_status": "UNKNOWN"})


async def saved_config(request: web.Request) -> web.Response:
    return _json(_sim(request).registry.saved_config())


async def request_counts(request: web.Request) -> web.Response:
    return _json(dict(_sim(request).counts))


async def reset(request: web.Request) -> web.Response:
    _sim(request).reset()
    return _json({"reset": True})


async def governance(request: web.Request) -> web.Response:
    registry = _sim(request).registry
    if request.method == "POST":
        try:
            body = await _read_json(request)
        except ApiError as exc:
            return _error(exc)
        models = body.get("models") if isinstance(body, dict) else None
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            return _json({"error": 'expected {"models": ["<model id>", ...]}'}, 400)
        registry.models = list(models)
    return _json({"models": registry.models})


# -- latest-generation admin extras -----------------------------------------------------------------


def _latest_only(request: web.Request) -> web.Response | None:
    if _sim(request).registry.legacy:  # the 2025-08 router has no such route (echo's 404)
        return _json({"message": "Not Found"}, 404)
    return None


async def get_setup_report(request: web.Request) -> web.Response:
    if (missing := _latest_only(request)) is not None:
        return missing
    sim = _sim(request)
    return _json(setup_report(sim.setup_checks, sim.catching_up, account_key(sim.validator_seed)))


async def get_poc_timing(request: web.Request) -> web.Response:
    if (missing := _latest_only(request)) is not None:
        return missing
    return _json({"available": True, "timing": _sim(request).epoch_clock.timing()})


# -- /stand-in/v1 controls (latest) -----------------------------------------------------------------


async def _object(request: web.Request) -> dict[str, Any]:
    body = await _read_json(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        raise ApiError(400, "expected a JSON object")
    return body


async def control_poc(request: web.Request) -> web.Response:
    try:
        body = await _object(request)
        latest = _sim(request).poc(str(body.get("action", "")))
    except ApiError as exc:
        return _error(exc)
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    return _json(latest)


async def control_clock(request: web.Request) -> web.Response:
    sim = _sim(request)
    try:
        body = await _object(request)
        blocks = int(body.get("advance", 0))
    except ApiError as exc:
        return _error(exc)
    except (TypeError, ValueError) as exc:
        return _json({"error": str(exc)}, 400)
    if blocks < 0:
        return _json({"error": "advance must be >= 0"}, 400)
    sim.epoch_clock.advance(blocks)
    if sim.broker is not None:
        sim.broker.trigger()
    return _json(sim.epoch_clock.latest())


async def control_broker_round(request: web.Request) -> web.Response:
    sim = _sim(request)
    await sim.broker_round()
    return _json({"rounds": sim.broker.rounds if sim.broker is not None else 0})


async def control_mlnode_version(request: web.Request) -> web.Response:
    try:
        body = await _object(request)
    except ApiError as exc:
        return _error(exc)
    version = body.get("version")
    if not isinstance(version, str):
        return _json({"error": 'expected {"version": "<v3.0.8 or empty>"}'}, 400)
    _sim(request).set_mlnode_version(version)
    return _json({"version": version})


async def control_setup_report(request: web.Request) -> web.Response:
    sim = _sim(request)
    try:
        body = await _object(request)
        checks = parse_setup_checks(body.get("checks") or {})
    except ApiError as exc:
        return _error(exc)
    except (TypeError, ValueError) as exc:
        return _json({"error": str(exc)}, 400)
    sim.setup_checks = checks
    return _json(setup_report(sim.setup_checks, sim.catching_up, account_key(sim.validator_seed)))


async def control_chain(request: web.Request) -> web.Response:
    sim = _sim(request)
    try:
        body = await _object(request)
    except ApiError as exc:
        return _error(exc)
    if "catching_up" in body:
        sim.catching_up = bool(body["catching_up"])
    return _json({"catching_up": sim.catching_up, "latest_block_height": sim.epoch_clock.height})


async def control_poc_batches(request: web.Request) -> web.Response:
    return _json(_sim(request).poc_batches())


async def control_info(request: web.Request) -> web.Response:
    sim = _sim(request)
    return _json({
        "generation": sim.generation,
        "admin": sim.base_url,
        "public": sim.url_of("public"),
        "callback": sim.url_of("callback"),
        "chain": sim.url_of("chain"),
        "poc_callback_url": sim.callback_url,
        "mlnode_version": sim.mlnode_version,
        "allow_targets": sim.policy.describe(),
    })


def build_app(sim: Simulator) -> web.Application:
    app = web.Application(middlewares=[_faults_and_counts])
    app[SIM_KEY] = sim
    r = app.router
    r.add_get(f"{PREFIX}/nodes", list_nodes)
    r.add_post(f"{PREFIX}/nodes", create_node)
    r.add_post(f"{PREFIX}/nodes/batch", create_batch)
    r.add_put(f"{PREFIX}/nodes/{{id}}", put_node)
    r.add_delete(f"{PREFIX}/nodes/{{id}}", delete_node)
    r.add_post(f"{PREFIX}/nodes/{{id}}/enable", enable_node)
    r.add_post(f"{PREFIX}/nodes/{{id}}/disable", disable_node)
    r.add_post("/debug/faults", set_faults)
    r.add_post("/debug/nodes/{id}/fail", fail_node)
    r.add_post("/debug/nodes/{id}/recover", recover_node)
    r.add_get("/debug/config", saved_config)
    r.add_get("/debug/requests", request_counts)
    r.add_post("/debug/reset", reset)
    r.add_get("/debug/governance", governance)
    r.add_post("/debug/governance", governance)
    r.add_get(f"{PREFIX}/setup/report", get_setup_report)
    r.add_get(f"{PREFIX}/poc/timing", get_poc_timing)
    r.add_get("/stand-in/v1/info", control_info)
    r.add_post("/stand-in/v1/poc", control_poc)
    r.add_post("/stand-in/v1/clock", control_clock)
    r.add_post("/stand-in/v1/broker/round", control_broker_round)
    r.add_post("/stand-in/v1/mlnode-version", control_mlnode_version)
    r.add_post("/stand-in/v1/setup-report", control_setup_report)
    r.add_post("/stand-in/v1/chain", control_chain)
    r.add_get("/stand-in/v1/poc-batches", control_poc_batches)
    return app
