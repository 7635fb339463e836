"""Stand-in for one Gonka ML node (the `mlnode` container), part of the product.

`gonka-operator simulate-ml-node --port 8080 [--allow-targets CIDR,...]` serves, on ONE port and
ONLY unprefixed paths (a `/v3.0.8/...` call is a 404 here exactly as on the real mlnode: the version
prefix is the routing proxy's business), what the api of v0.2.14 calls and mlnode >= 3.0.12
answers (gonka-ai/gonka `mlnode/packages/api/src/api/`):

- `GET /api/v1/state` → `{"state": "INFERENCE"|"STOPPED"}` (`routes.py`; PoC v2 runs inside vLLM,
  so the state stays INFERENCE while generating), `POST /api/v1/stop` → `{"status": "OK"}`.
- `POST /api/v1/inference/up {"model", "dtype", "additional_args"}` → `{"status": "OK"}` and vLLM
  "loads" for `--load-seconds`; `POST /api/v1/inference/down` (`inference/routes.py`); a body
  without `model` is FastAPI's 422.
- `GET /health` = `GET /livez` (`health.py`: `{status, service_state, gpu, managers}`, 503 when
  unhealthy: no GPU, or inference running but not healthy yet), `GET /readyz` → `{"ready": bool}`.
- `/v1/...` goes to "vLLM" (`proxy.py` `ProxyMiddleware`: every path starting with `/v1`): while no
  vLLM runs 503 `No vLLM backend available`, while it loads 503 `vLLM backend not ready`; when up,
  `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions` answer OpenAI-shaped
  (canned text, no model), anything else under /v1 is vLLM's 404.
- PoC v2 (`inference/pow_v2_routes.py`, client `decentralized-api/mlnodeclient/poc_v2_requests.go`):
  `POST /api/v1/inference/pow/init/generate` (503 `No vLLM backends available` unless inference is
  up) starts generation: every `--batch-interval` s one batch of `--batch-size` artifacts is POSTed
  to `<url>/generated` (the vLLM PoC plugin appends `/generated` to the url the api gave), body
  `GeneratedArtifactBatchV2 {block_hash, block_height, public_key, node_id, artifacts[{nonce,
  vector_b64}], encoding}` (`mlnodeclient/poc_v2.go`); nonces are node_id, node_id + node_count, ...
  `POST .../pow/generate` with `validation.artifacts` answers `{"status": "queued", "request_id"}`
  and POSTs `ValidatedResultV2` to `<url>/validated`; `GET .../pow/status`, `POST .../pow/stop`.
- Unknown paths: FastAPI's 404 `{"detail": "Not Found"}`.

Every request is logged (logger `gonka_operator.simulator.mlnode`) and recorded; stand-in-only:
`GET /stand-in/v1/requests` → `[{"method", "path", "status"}]`, `GET /stand-in/v1/callbacks` →
what it POSTed to callback URLs and the answers. Callback URLs are contacted only when their host
is loopback or inside `--allow-targets`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import logging
import signal
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web

from gonka_operator.simulator.targets import TargetPolicy, TargetRefused, parse_cidrs

logger = logging.getLogger(__name__)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ML_KEY: web.AppKey[Any] = web.AppKey("mlnode")
VLLM_PORT = 5001  # what the backend port looks like in answers (the real one runs vLLM on 5001+)
K_DIM = 12


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=json.dumps)


def _detail(status: int, detail: Any) -> web.Response:
    return _json({"detail": detail}, status)


def artifact_vector(block_hash: str, public_key: str, nonce: int) -> str:
    """A deterministic fp16 little-endian vector of K_DIM values, base64 (the v2 artifact encoding)."""
    digest = hashlib.sha256(f"{block_hash}:{public_key}:{nonce}".encode()).digest()
    values = [(b - 128) / 128 for b in digest[:K_DIM]]
    return base64.b64encode(struct.pack(f"<{K_DIM}e", *values)).decode()


@dataclass
class Generation:
    body: dict[str, Any]
    task: asyncio.Task[None]
    batches: int = 0


@dataclass
class MLNode:
    """State of the stand-in ML node; its HTTP face is `build_app`."""

    load_seconds: float = 0.5
    batch_interval: float = 0.2
    batch_size: int = 8
    gpus: int = 1
    policy: TargetPolicy = field(default_factory=TargetPolicy)
    model: str | None = None
    args: list[str] = field(default_factory=list)
    ready_at: float = 0.0
    generation: Generation | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    http: httpx.AsyncClient | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # -- inference ("vLLM") -------------------------------------------------------------------------

    @property
    def inference_running(self) -> bool:
        return self.model is not None

    @property
    def inference_healthy(self) -> bool:
        return self.model is not None and time.monotonic() >= self.ready_at

    def inference_up(self, model: str, args: list[str]) -> None:
        self.stop_generation()
        self.model, self.args = model, list(args)
        self.ready_at = time.monotonic() + self.load_seconds
        shown = " ".join(args)
        shown = shown if len(shown) <= 300 else f"{shown[:300]}... ({len(shown)} characters)"
        logger.info("vLLM starting with %s %s (ready in %s s)", model, shown, self.load_seconds)

    def stop_all(self) -> None:
        self.stop_generation()
        if self.model is not None:
            logger.info("vLLM with %s stopped", self.model)
        self.model, self.args = None, []

    @property
    def service_state(self) -> str:
        return "INFERENCE" if self.inference_running else "STOPPED"

    # -- PoC v2 -------------------------------------------------------------------------------------

    def stop_generation(self) -> None:
        if self.generation is not None:
            self.generation.task.cancel()
            logger.info("PoC generation stopped after %s batches", self.generation.batches)
            self.generation = None

    def start_generation(self, body: dict[str, Any]) -> None:
        self.stop_generation()
        gen = Generation(body, asyncio.get_running_loop().create_task(self._generate(body)))
        self.generation = gen

    async def _generate(self, body: dict[str, Any]) -> None:
        node_id, count = int(body["node_id"]), max(1, int(body["node_count"]))
        nonces = itertools.count(node_id, count)
        url = body.get("url")
        while True:
            batch_nonces = [next(nonces) for _ in range(self.batch_size)]
            batch = {
                "block_hash": body["block_hash"],
                "block_height": body["block_height"],
                "public_key": body["public_key"],
                "node_id": node_id,
                "artifacts": [
                    {"nonce": n, "vector_b64": artifact_vector(body["block_hash"], body["public_key"], n)}
                    for n in batch_nonces
                ],
                "encoding": {"dtype": "f16", "k_dim": K_DIM, "endian": "le"},
            }
            if url:
                await self.post_callback(f"{url.rstrip('/')}/generated", batch)
            if self.generation is not None:
                self.generation.batches += 1
            await asyncio.sleep(self.batch_interval)

    async def post_callback(self, url: str, body: dict[str, Any]) -> None:
        record: dict[str, Any] = {"url": url, "body": body}
        self.callbacks.append(record)
        parts = urlsplit(url)
        try:
            await self.policy.check(parts.hostname or "", parts.port or 80)
            assert self.http is not None
            resp = await self.http.post(url, json=body)
            record["status"] = resp.status_code
            logger.info("POST %s -> %s", url, resp.status_code)
        except TargetRefused as exc:
            record["error"] = str(exc)
            logger.warning("Callback %s not sent: %s", url, exc)
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
            logger.warning("Callback %s failed: %s", url, record["error"])

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self.stop_generation()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _ml(request: web.Request) -> MLNode:
    node: MLNode = request.app[ML_KEY]
    return node


@web.middleware
async def _log_and_record(request: web.Request, handler: _Handler) -> web.StreamResponse:
    ml = _ml(request)
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        if exc.status == 404:
            resp = _detail(404, "Not Found")
        elif exc.status == 405:
            resp = _detail(405, "Method Not Allowed")
        else:
            raise
    if not request.path.startswith("/stand-in/"):
        ml.requests.append({"method": request.method, "path": request.path_qs, "status": resp.status})
        logger.info("%s %s -> %s", request.method, request.path_qs, resp.status)
    return resp


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError):
        return _detail(422, [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}])
    if not isinstance(body, dict):
        return _detail(422, [{"type": "model_attributes_type", "loc": ["body"], "msg": "Input should be an object"}])
    return body


def _missing(body: dict[str, Any], *names: str) -> web.Response | None:
    absent = [n for n in names if n not in body]
    if not absent:
        return None
    return _detail(422, [{"type": "missing", "loc": ["body", n], "msg": "Field required"} for n in absent])


# -- management API -------------------------------------------------------------------------------


async def state(request: web.Request) -> web.Response:
    return _json({"state": _ml(request).service_state})


async def stop(request: web.Request) -> web.Response:
    _ml(request).stop_all()
    return _json({"status": "OK"})


async def inference_up(request: web.Request) -> web.Response:
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    if (missing := _missing(body, "model")) is not None:
        return missing
    args = body.get("additional_args") or []
    if not isinstance(body["model"], str) or not isinstance(args, list):
        return _detail(422, [{"type": "string_type", "loc": ["body", "model"],
                              "msg": "Input should be a valid string"}])
    _ml(request).inference_up(body["model"], [str(a) for a in args])
    return _json({"status": "OK"})


async def inference_down(request: web.Request) -> web.Response:
    _ml(request).stop_all()
    return _json({"status": "OK"})


def _health_body(ml: MLNode) -> tuple[dict[str, Any], bool]:
    running, healthy = ml.inference_running, ml.inference_healthy
    ok = ml.gpus > 0 and (not running or healthy)
    devices = [{"index": i, "name": "Stand-in GPU", "total_memory_gb": 80.0, "free_memory_gb": 80.0,
                "used_memory_gb": 0.0, "available": True} for i in range(ml.gpus)]
    return {
        "status": "healthy" if ok else "unhealthy",
        "service_state": ml.service_state,
        "gpu": {"available": ml.gpus > 0, "count": ml.gpus, "devices": devices},
        "managers": {"inference": {"running": running, "healthy": healthy},
                     "train": {"running": False, "healthy": False}},
    }, ok


async def health(request: web.Request) -> web.Response:
    body, ok = _health_body(_ml(request))
    return _json(body, 200 if ok else 503)


async def readyz(request: web.Request) -> web.Response:
    ml = _ml(request)
    ready = not ml.inference_running or ml.inference_healthy
    return _json({"ready": ready}, 200 if ready else 503)


# -- PoC v2 ---------------------------------------------------------------------------------------

_POC_FIELDS = ("block_hash", "block_height", "public_key", "node_id", "node_count", "params")


async def pow_init_generate(request: web.Request) -> web.Response:
    ml = _ml(request)
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    if (missing := _missing(body, *_POC_FIELDS)) is not None:
        return missing
    if not ml.inference_healthy:
        return _detail(503, "No vLLM backends available")
    ml.start_generation(body)
    logger.info("PoC generation started for node_id %s of %s, callback %s", body["node_id"], body["node_count"],
                body.get("url"))
    return _json({"status": "OK", "backends": 1, "n_groups": 1,
                  "results": [{"port": VLLM_PORT, "status": "OK"}], "errors": None})


async def pow_generate(request: web.Request) -> web.Response:
    ml = _ml(request)
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    if (missing := _missing(body, *_POC_FIELDS, "nonces")) is not None:
        return missing
    if not ml.inference_healthy:
        return _detail(503, "No vLLM backends available")
    request_id = str(uuid.uuid4())
    artifacts = (body.get("validation") or {}).get("artifacts") or []
    mismatches = [a["nonce"] for a in artifacts
                  if a.get("vector_b64") != artifact_vector(body["block_hash"], body["public_key"], a["nonce"])]
    if body.get("url"):
        result = {
            "request_id": f"{VLLM_PORT}:{request_id}",
            "block_hash": body["block_hash"],
            "block_height": body["block_height"],
            "public_key": body["public_key"],
            "node_id": body["node_id"],
            "n_total": len(artifacts),
            "n_mismatch": len(mismatches),
            "mismatch_nonces": mismatches,
            "p_value": 1.0 if not mismatches else 0.0,
            "fraud_detected": bool(mismatches),
        }
        ml.spawn(ml.post_callback(f"{body['url'].rstrip('/')}/validated", result))
    return _json({"status": "queued", "request_id": f"{VLLM_PORT}:{request_id}"})


async def pow_status(request: web.Request) -> web.Response:
    ml = _ml(request)
    if not ml.inference_healthy:
        return _json({"status": "NO_BACKENDS", "backends": []})
    status = "GENERATING" if ml.generation is not None else "IDLE"
    return _json({"status": status, "backends": [{"port": VLLM_PORT, "status": status}]})


async def pow_stop(request: web.Request) -> web.Response:
    ml = _ml(request)
    if not ml.inference_healthy:
        return _json({"status": "OK", "message": "No backends to stop"})
    ml.stop_generation()
    return _json({"status": "OK", "results": [{"port": VLLM_PORT, "status": "stopped"}], "errors": None})


# -- "vLLM" behind /v1 ----------------------------------------------------------------------------


async def vllm(request: web.Request) -> web.Response:
    ml = _ml(request)
    if ml.model is None:
        return web.Response(status=503, body=b"No vLLM backend available")
    if not ml.inference_healthy:
        return web.Response(status=503, body=b"vLLM backend not ready")
    path, created = request.path, int(time.time())
    if path == "/v1/models" and request.method == "GET":
        return _json({"object": "list", "data": [{"id": ml.model, "object": "model", "created": created,
                                                  "owned_by": "vllm", "root": ml.model}]})
    if path in ("/v1/chat/completions", "/v1/completions") and request.method == "POST":
        chat = path.endswith("chat/completions")
        text = "This is the ML-node stand-in: no model runs here."
        choice: dict[str, Any] = ({"index": 0, "message": {"role": "assistant", "content": text},
                                   "finish_reason": "stop"} if chat
                                  else {"index": 0, "text": text, "finish_reason": "stop"})
        return _json({"id": f"cmpl-{uuid.uuid4().hex}", "object": "chat.completion" if chat else "text_completion",
                      "created": created, "model": ml.model, "choices": [choice],
                      "usage": {"prompt_tokens": 1, "completion_tokens": 11, "total_tokens": 12}})
    return _detail(404, "Not Found")


# -- stand-in only --------------------------------------------------------------------------------


async def recorded_requests(request: web.Request) -> web.Response:
    return _json(_ml(request).requests)


async def recorded_callbacks(request: web.Request) -> web.Response:
    return _json(_ml(request).callbacks)


def build_app(ml: MLNode) -> web.Application:
    # uvicorn has no body limit (aiohttp's default is 1 MiB): the proxy test sends more
    app = web.Application(middlewares=[_log_and_record], client_max_size=1024**3)
    app[ML_KEY] = ml
    r = app.router
    r.add_get("/api/v1/state", state)
    r.add_post("/api/v1/stop", stop)
    r.add_post("/api/v1/inference/up", inference_up)
    r.add_post("/api/v1/inference/down", inference_down)
    r.add_post("/api/v1/inference/pow/init/generate", pow_init_generate)
    r.add_post("/api/v1/inference/pow/generate", pow_generate)
    r.add_get("/api/v1/inference/pow/status", pow_status)
    r.add_post("/api/v1/inference/pow/stop", pow_stop)
    r.add_get("/health", health)
    r.add_get("/livez", health)
    r.add_get("/readyz", readyz)
    r.add_route("*", "/v1/{tail:.*}", vllm)
    r.add_get("/stand-in/v1/requests", recorded_requests)
    r.add_get("/stand-in/v1/callbacks", recorded_callbacks)
    return app


class MLNodeServer:
    """The ML stand-in on `host:port` in the caller's event loop (`port=0`: a free one)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, allow_targets: list[str] | None = None,
                 **kwargs: Any) -> None:
        self.node = MLNode(policy=TargetPolicy(parse_cidrs(allow_targets or [])), **kwargs)
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        # trust_env=False: no proxy from the environment, callbacks stay on the allowed targets
        self.node.http = httpx.AsyncClient(timeout=10, trust_env=False)
        self._runner = web.AppRunner(build_app(self.node), handle_signals=False, access_log=None,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        await self.node.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.node.http is not None:
            await self.node.http.aclose()


def build_parser(prog: str = "gonka-operator simulate-ml-node") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Stand-in for one Gonka ML node (mlnode management API, "
                                "vLLM under /v1, PoC v2) on one port, unprefixed paths only. No GPU, no model.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port, 0 = any free one (default %(default)s)")
    p.add_argument("--load-seconds", type=float, default=0.5,
                   help="seconds vLLM takes to become healthy after inference/up (default %(default)s)")
    p.add_argument("--batch-interval", type=float, default=0.2,
                   help="seconds between PoC batches while generating (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="artifacts per PoC batch (default %(default)s)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs it reports; 0 makes /health unhealthy (default 1)")
    p.add_argument("--allow-targets", action="append", default=[], metavar="CIDR[,CIDR]",
                   help="networks callback URLs may point to besides loopback (repeatable)")
    p.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    return p


async def _serve(args: argparse.Namespace) -> None:
    server = MLNodeServer(host=args.host, port=args.port, allow_targets=args.allow_targets,
                          load_seconds=args.load_seconds, batch_interval=args.batch_interval,
                          batch_size=args.batch_size, gpus=args.gpus)
    await server.start()
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop_event.set)
    print(f"ML-node stand-in listening on {server.base_url}/", flush=True)
    try:
        await stop_event.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the ML stand-in until SIGINT/SIGTERM. Returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the stand-ins log their own calls
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        logger.error("Could not listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
