"""The network-node stand-in's broker: it really drives every registered ML node (latest generation).

Follows gonka-ai/gonka `decentralized-api/broker/` (v0.2.14):

- URLs: `PoCUrlWithVersion` / `InferenceUrlWithVersion` (`broker.go`): `http://host:port/<version>
  <segment>`, or `http://host:port<segment>` when the ML-node version is empty.
- Intended state from the epoch phase and the admin state (`ShouldBeOperational`, the phase
  tracker): PoC phases → POC/GENERATING then POC/VALIDATING, Inference → INFERENCE, an entry that
  should not be operational → STOPPED. An entry registered inside a PoC window joins the next one.
- Reconcile (`node_worker_commands.go`): `InferenceUpNodeCommand` = GET `/api/v1/state`, and when it
  is INFERENCE and `<inference url>/health` answers 200, done; otherwise POST `/api/v1/stop` and
  POST `/api/v1/inference/up {"model", "dtype": "float16", "additional_args"}`. PoC v2
  (`mlnodeclient/poc_v2_requests.go`): POST `/api/v1/inference/pow/init/generate` with
  `PoCInitGenerateRequestV2 {block_hash, block_height, public_key, node_id (= node_num), node_count,
  params {model, seq_len}, url}` where url is `<callback base>/v2/poc-batches/<model, path-escaped
  twice>` (`buildValidationCallbackURL`; the ML node appends `/generated` or `/validated`); validation
  POSTs `/api/v1/inference/pow/generate` with other nodes' artifacts; back to inference POSTs
  `/api/v1/inference/pow/stop`. STOPPED: POST `/api/v1/stop`. A failed command makes the entry
  FAILED with the error as `failure_reason` (Go's `net/http` wording, e.g. `Get "http://…": dial tcp
  127.0.0.1:9: connect: connection refused`, or `unexpected status code: 404`).
- Status query (`nodeStatusQueryWorker` / `queryNodeStatus`): a settled entry is asked
  `/api/v1/state` every interval and, when INFERENCE, `<inference url>/health`; a failure makes it
  FAILED with the reason (the stand-in always records the reason; upstream's worker only logs some).
  Upstream's 30 s reconcile tick is `--broker-interval` here (default 1 s: entries whose intended
  state differs are handled every tick), its 60 s status query `--status-interval` (default 60 s, as upstream);
  a FAILED entry is retried every `--broker-retry` s; a version change asks everyone again.
- Traffic stays local: before any call the target is resolved and checked against the
  `TargetPolicy` (`targets.py`); a refused target is never contacted and the entry is FAILED with
  the reason.
- Weights (`epoch_ml_nodes`): when a PoC window ends, each entry gets `poc_weight` = the number of
  artifacts its ML node delivered to the callback server for that PoC and model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from gonka_operator.simulator.epoch import EpochClock
from gonka_operator.simulator.state import NodeRuntime, Registry, _Node
from gonka_operator.simulator.targets import TargetPolicy, TargetRefused

logger = logging.getLogger(__name__)

POC_SEQ_LEN = 256


class CommandFailed(Exception):
    """A call to the ML node failed; `str()` is the failure_reason."""


@dataclass
class PocRecord:
    """One callback the ML-callback server received."""

    kind: str  # "generated" | "validated"
    path: str
    model: str | None
    body: dict[str, Any]
    at: float

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "model": self.model, "body": self.body, "at": self.at}


@dataclass
class PocRecorder:
    records: list[PocRecord] = field(default_factory=list)

    def artifacts(self, *, block_height: int, node_num: int, model: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for r in self.records:
            b = r.body
            if (r.kind == "generated" and b.get("block_height") == block_height and b.get("node_id") == node_num
                    and (model is None or r.model in (None, model))):
                out += [a for a in b.get("artifacts") or [] if isinstance(a, dict)]
        return out


def _go_error(method: str, url: str, exc: httpx.HTTPError, target: tuple[str, int]) -> str:
    verb = method.capitalize()
    if isinstance(exc, httpx.TimeoutException):
        return f'{verb} "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    if isinstance(exc, httpx.ConnectError):
        host = f"[{target[0]}]" if ":" in target[0] else target[0]
        return f'{verb} "{url}": dial tcp {host}:{target[1]}: connect: connection refused'
    return f'{verb} "{url}": {type(exc).__name__}: {exc}'


@dataclass
class _Urls:
    poc: str
    inference: str
    poc_target: tuple[str, int]
    inference_target: tuple[str, int]


class Broker:
    """Drives the ML nodes of one stand-in. Runs on the stand-in's event loop."""

    def __init__(
        self,
        registry: Registry,
        clock: EpochClock,
        policy: TargetPolicy,
        recorder: PocRecorder,
        *,
        mlnode_version: str = "v3.0.8",
        callback_url: Callable[[], str],
        public_key: str = "stand-in-public-key",
        interval: float = 1.0,
        retry: float = 5.0,
        first_contact_delay: float = 0.0,
        status_interval: float = 60.0,
        timeout: float = 5.0,
    ) -> None:
        self.registry, self.clock, self.policy, self.recorder = registry, clock, policy, recorder
        self.callback_url = callback_url
        self.public_key = public_key
        self.interval, self.retry, self.first_contact_delay = interval, retry, first_contact_delay
        self.status_interval = status_interval
        self._mlnode_version = mlnode_version
        self._checked: dict[str, float] = {}  # when a settled entry was last asked for its state
        # trust_env=False: an HTTP(S)_PROXY in the environment would carry the checked request off
        # loopback and outside --allow-targets
        self.http = httpx.AsyncClient(timeout=timeout, trust_env=False)
        self._wake = asyncio.Event()
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._next_try: dict[str, float] = {}
        self._last_phase: tuple[int, str] | None = None
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    @property
    def mlnode_version(self) -> str:
        return self._mlnode_version

    @mlnode_version.setter
    def mlnode_version(self, version: str) -> None:
        """A new version: every client is refreshed (`checkAndRefreshClientsIfNeeded`): ask everyone again."""
        self._mlnode_version = version
        self._checked.clear()
        self._next_try.clear()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._busy.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.http.aclose()

    def trigger(self) -> None:
        """Run a round soon (after a registration, a phase change, a control call)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.round(wait=False)
            except Exception:  # a stand-in bug must not stop the broker; it is logged loudly
                logger.exception("Broker round failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def round(self, wait: bool = True) -> None:
        """One pass over every idle entry. An explicit round (`wait`) also asks settled entries for
        their state regardless of `status_interval` and waits for every command under way."""
        self.rounds += 1
        self._phase_bookkeeping()
        now = self.registry.now()
        for node_id in self.registry.node_ids():
            node = self.registry.get(node_id)
            if node is None or node.runtime.forced or node_id in self._busy:
                continue
            if now - node.since < self.first_contact_delay or now < self._next_try.get(node_id, 0.0):
                continue
            rt = node.runtime
            settled = (rt.current_status, rt.poc_current_status) == self.intended(node)
            if not wait and settled and now - self._checked.get(node_id, float("-inf")) < self.status_interval:
                continue
            self._checked[node_id] = now
            task = asyncio.get_running_loop().create_task(self._drive(node_id, node))
            self._busy[node_id] = task
            task.add_done_callback(self._done(node_id))
        if wait and self._busy:
            await asyncio.gather(*self._busy.values(), return_exceptions=True)

    def _done(self, node_id: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(_task: asyncio.Task[None]) -> None:
            self._busy.pop(node_id, None)

        return forget

    # -- phases and weights -----------------------------------------------------------------------

    def _phase_bookkeeping(self) -> None:
        self.clock.sync()
        current = (self.clock.epoch_index, self.clock.phase)
        last, self._last_phase = self._last_phase, current
        if last is None or last == current:
            return
        logger.info("Epoch %s phase %s (block %s)", current[0], current[1], self.clock.height)
        self._next_try.clear()  # a phase change is worth a new attempt everywhere
        self._checked.clear()
        if current[1] == "Inference" and last[1] != "Inference":
            self._settle_weights()

    def _settle_weights(self) -> None:
        poc_start = self.clock.poc_start
        for node_id in self.registry.node_ids():
            node = self.registry.get(node_id)
            if node is None:
                continue
            weights: dict[str, dict[str, Any]] = {}
            for model in node.config["models"]:
                count = len(self.recorder.artifacts(block_height=poc_start, node_num=node.node_num, model=model))
                blocks = max(1, self.clock.poc_length)
                weights[model] = {"node_id": node_id, "throughput": round(count / blocks, 3), "poc_weight": count,
                                  "timeslot_allocation": [True, False]}
            node.runtime.epoch_ml_nodes = weights
            logger.info("PoC of epoch %s: node %s weights %s", self.clock.epoch_index, node_id,
                        {m: w["poc_weight"] for m, w in weights.items()})

    def intended(self, node: _Node) -> tuple[str, str]:
        clock = self.clock
        phase, epoch = clock.phase, clock.epoch_index
        # ShouldBeOperational: enabled counts from the next epoch (or this one's Inference phase), a
        # disabled node keeps serving until its disable epoch ends
        operational = (epoch > node.admin_epoch or phase == "Inference") if node.enabled else node.admin_epoch >= epoch
        if not operational:
            return "STOPPED", "IDLE"
        if phase != "Inference" and node.runtime.joined_poc_start <= clock.poc_start:
            return "POC", "GENERATING" if phase.startswith("PoCGenerate") else "VALIDATING"
        return "INFERENCE", "IDLE"

    # -- one entry --------------------------------------------------------------------------------

    def _urls(self, node: _Node, poc_target: tuple[str, int], inf_target: tuple[str, int]) -> _Urls:
        c, v = node.config, self.mlnode_version

        def url(target: tuple[str, int], segment: str) -> str:
            host = f"[{target[0]}]" if ":" in target[0] else target[0]
            return f"http://{host}:{target[1]}/{v}{segment}" if v else f"http://{host}:{target[1]}{segment}"

        return _Urls(url(poc_target, c["poc_segment"]), url(inf_target, c["inference_segment"]),
                     poc_target, inf_target)

    def _still(self, node_id: str, node: _Node) -> bool:
        return self.registry.get(node_id) is node and not node.runtime.forced

    async def _drive(self, node_id: str, node: _Node) -> None:
        rt = node.runtime
        intended, poc_intended = self.intended(node)
        rt.intended_status, rt.poc_intended_status = intended, poc_intended
        c = node.config
        try:
            poc_target = await self.policy.check(c["host"], c["poc_port"])
            inf_target = await self.policy.check(c["host"], c["inference_port"])
        except TargetRefused as exc:
            if self._still(node_id, node):
                self._fail(node_id, rt, str(exc))
            return
        urls = self._urls(node, poc_target, inf_target)
        try:
            if (rt.current_status, rt.poc_current_status) != (intended, poc_intended):
                await self._reconcile(node_id, node, urls, intended, poc_intended)
            else:
                await self._query_status(node_id, node, urls)
        except CommandFailed as exc:
            if self._still(node_id, node):
                self._fail(node_id, rt, str(exc))
            return
        if self._still(node_id, node):
            rt.ml_node_version = self.mlnode_version
            self._next_try.pop(node_id, None)

    def _fail(self, node_id: str, rt: NodeRuntime, reason: str) -> None:
        if rt.current_status != "FAILED" or rt.failure_reason != reason:
            logger.info("Node %s FAILED: %s", node_id, reason)
        rt.set("FAILED", None, self.registry.now(), reason)
        self._next_try[node_id] = self.registry.now() + self.retry

    def _ok(self, node_id: str, node: _Node, status: str, poc: str) -> None:
        if not self._still(node_id, node):
            return
        if (node.runtime.current_status, node.runtime.poc_current_status) != (status, poc):
            logger.info("Node %s is %s/%s", node_id, status, poc)
        node.runtime.set(status, poc, self.registry.now(), "")

    async def _call(self, method: str, url: str, target: tuple[str, int], body: Any = None,
                    what: str | None = None) -> httpx.Response:
        try:
            if method == "GET":
                resp = await self.http.get(url)
            else:
                resp = await self.http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise CommandFailed(_go_error(method, url, exc, target)) from exc
        if resp.status_code >= 400:
            if what is not None:  # the PoC v2 client's wording
                raise CommandFailed(f"{what} failed with status {resp.status_code}: {resp.text}")
            raise CommandFailed(f"unexpected status code: {resp.status_code}")
        return resp

    async def _ml_state(self, urls: _Urls) -> str:
        resp = await self._call("GET", f"{urls.poc}/api/v1/state", urls.poc_target)
        try:
            return str(resp.json()["state"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandFailed(f"invalid /api/v1/state answer: {resp.text[:200]}") from exc

    async def _healthy(self, urls: _Urls) -> None:
        await self._call("GET", f"{urls.inference}/health", urls.inference_target)

    async def _query_status(self, node_id: str, node: _Node, urls: _Urls) -> None:
        state = await self._ml_state(urls)
        mapped = {"INFERENCE": "INFERENCE", "POW": "POC", "TRAIN": "TRAINING", "STOPPED": "STOPPED"}.get(state,
                                                                                                          "UNKNOWN")
        rt = node.runtime
        if mapped == "INFERENCE":
            await self._healthy(urls)
        if mapped == "INFERENCE" and rt.current_status == "POC":
            return  # PoC v2 runs inside vLLM: the ML node says INFERENCE while it generates
        if mapped != rt.current_status:
            self._ok(node_id, node, mapped, "IDLE" if mapped != "POC" else rt.poc_current_status)

    async def _reconcile(self, node_id: str, node: _Node, urls: _Urls, intended: str, poc: str) -> None:
        rt = node.runtime
        if intended == "INFERENCE":
            if rt.current_status == "POC":
                await self._call("POST", f"{urls.poc}/api/v1/inference/pow/stop", urls.poc_target, {},
                                 what="StopPowV2")
            await self._inference_up(node, urls)
            self._ok(node_id, node, "INFERENCE", "IDLE")
        elif intended == "POC" and poc == "GENERATING":
            await self._init_generate(node, urls)
            self._ok(node_id, node, "POC", "GENERATING")
        elif intended == "POC" and poc == "VALIDATING":
            if rt.current_status == "POC":
                await self._call("POST", f"{urls.poc}/api/v1/inference/pow/stop", urls.poc_target, {},
                                 what="StopPowV2")
            await self._validate(node, urls)
            self._ok(node_id, node, "POC", "VALIDATING")
        elif intended == "STOPPED":
            await self._call("POST", f"{urls.poc}/api/v1/stop", urls.poc_target)
            self._ok(node_id, node, "STOPPED", "IDLE")

    async def _inference_up(self, node: _Node, urls: _Urls) -> None:
        try:
            state = await self._ml_state(urls)
            if state == "INFERENCE":
                await self._healthy(urls)
                return  # "Node already in healthy inference state"
        except CommandFailed:
            pass  # upstream ignores this error and goes on with stop + inference/up
        await self._call("POST", f"{urls.poc}/api/v1/stop", urls.poc_target)
        model = self._model(node)
        args = node.config["models"][model]["args"]
        resp = await self._call("POST", f"{urls.poc}/api/v1/inference/up", urls.poc_target,
                                {"model": model, "dtype": "float16", "additional_args": args})
        try:
            answer = resp.json()
        except ValueError:
            answer = {}
        if isinstance(answer, dict) and answer.get("status") == "ERROR":
            raise CommandFailed(f"inference/up failed: {answer.get('message', '')}")

    def _model(self, node: _Node) -> str:
        return str(sorted(node.config["models"])[0])

    def _poc_body(self, node: _Node, model: str) -> dict[str, Any]:
        return {
            "block_hash": f"{self.clock.poc_start:064X}",
            "block_height": self.clock.poc_start,
            "public_key": self.public_key,
            "node_id": node.node_num,
            "node_count": max((n.node_num for i in self.registry.node_ids() if (n := self.registry.get(i))),
                              default=0) + 1,
            "params": {"model": model, "seq_len": POC_SEQ_LEN},
            "url": f"{self.callback_url().rstrip('/')}/v2/poc-batches/{quote(quote(model, safe=''), safe='')}",
        }

    async def _init_generate(self, node: _Node, urls: _Urls) -> None:
        body = self._poc_body(node, self._model(node))
        await self._call("POST", f"{urls.poc}/api/v1/inference/pow/init/generate", urls.poc_target, body,
                         what="InitGenerateV2")

    async def _validate(self, node: _Node, urls: _Urls) -> None:
        model = self._model(node)
        for other_id in self.registry.node_ids():
            other = self.registry.get(other_id)
            if other is None or other is node:
                continue
            artifacts = self.recorder.artifacts(block_height=self.clock.poc_start, node_num=other.node_num,
                                                model=model)[:8]
            if not artifacts:
                continue
            body = self._poc_body(other, model) | {
                "nonces": [a["nonce"] for a in artifacts],
                "validation": {"artifacts": artifacts},
                "stat_test": {"dist_threshold": 0.4, "p_mismatch": 0.1, "p_value_threshold": 0.05},
            }
            await self._call("POST", f"{urls.poc}/api/v1/inference/pow/generate", urls.poc_target, body,
                             what="GenerateV2")
