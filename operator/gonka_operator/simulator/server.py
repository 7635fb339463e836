"""Running the stand-in: in the caller's event loop (`run_simulator`) or in a thread (`serve_in_thread`).

The admin listening socket is managed here (not by an aiohttp site) so that `refuse_for()` can close
it, drop every open connection, and listen again on the same port afterwards. The latest generation
also listens on the public port (`/v1/epochs/latest`), the ML callback port and, when asked, a chain
RPC port (`network.py`), and runs the epoch clock (`epoch.py`) and the broker (`broker.py`) that
drives the registered ML nodes. `None` for a port = that server is not started; 0 = a free port.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from typing import Any

from aiohttp import web

from gonka_operator.simulator.app import Faults, build_app
from gonka_operator.simulator.broker import Broker, PocRecorder
from gonka_operator.simulator.epoch import EpochClock
from gonka_operator.simulator.network import build_callback_app, build_chain_app, build_public_app
from gonka_operator.simulator.state import DEFAULT_MODELS, Registry
from gonka_operator.simulator.targets import ConnectTo, TargetPolicy, parse_cidrs

logger = logging.getLogger(__name__)


class Simulator:
    """One stand-in network node. Control methods must be called on the loop it runs in."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        generation: str = "latest",
        models: Iterable[str] = DEFAULT_MODELS,
        state_delay: float = 1.0,
        access_log: bool = False,
        public_port: int | None = 0,
        callback_port: int | None = 0,
        chain_port: int | None = None,
        callback_url: str | None = None,
        mlnode_version: str = "v3.0.8",
        allow_targets: Iterable[str] = (),
        connect_to: Iterable[str] = (),
        epoch_length: int = 100,
        poc_length: int = 20,
        validation_length: int = 10,
        wind_down: int = 2,
        block_time: float = 1.0,
        broker_interval: float = 1.0,
        broker_retry: float = 5.0,
        status_interval: float = 60.0,
        setup_checks: dict[str, dict[str, str]] | None = None,
        catching_up: bool = False,
        validator_seed: str = "stand-in",
    ) -> None:
        self.registry = Registry(generation, models, state_delay=state_delay)
        self.faults = Faults()
        self.counts: Counter[str] = Counter()
        self.host = host
        self.port = port
        self._access_log = access_log
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._reopen: asyncio.Task[None] | None = None
        self._refuse_over = asyncio.Event()
        latest = not self.registry.legacy
        # other faces (latest only): name -> requested port; filled with the bound port on start
        self.ports: dict[str, int | None] = {
            "public": public_port if latest else None,
            "callback": callback_port if latest else None,
            "chain": chain_port if latest else None,
        }
        self._extra: list[web.AppRunner] = []
        self._callback_url = callback_url
        self.epoch_clock = EpochClock(epoch_length=epoch_length, poc_length=poc_length,
                                      validation_length=validation_length, wind_down=wind_down,
                                      block_time=block_time)
        self.registry.epoch_clock = self.epoch_clock if latest else None
        self.policy = TargetPolicy(parse_cidrs(allow_targets), [ConnectTo.parse(c) for c in connect_to])
        self.poc_recorder = PocRecorder()
        self.setup_checks = dict(setup_checks or {})
        self.catching_up = catching_up
        self.validator_seed = validator_seed
        self.broker: Broker | None = None
        self._broker_args: dict[str, Any] = {"mlnode_version": mlnode_version, "interval": broker_interval,
                             "retry": broker_retry, "first_contact_delay": state_delay,
                                             "status_interval": status_interval}

    @property
    def generation(self) -> str:
        return self.registry.generation

    @property
    def account_address(self) -> str:
        """The host's account (cold key) address: setup report details, `/v2/participants/<it>`."""
        from gonka_operator.simulator.network import account_key
        return account_key(self.validator_seed)[0]

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`: what AdminClient takes (the api itself is under /admin/v1)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def accepting(self) -> bool:
        return self._listener is not None

    def url_of(self, face: str) -> str | None:
        """`http://host:port` of "public", "callback" or "chain" (None when not started)."""
        port = self.ports.get(face)
        if port is None or (face != "admin" and port == 0):
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"

    @property
    def callback_url(self) -> str:
        """The base URL ML nodes POST PoC results to (`DAPI_API__POC_CALLBACK_URL`)."""
        return self._callback_url or self.url_of("callback") or ""

    @property
    def mlnode_version(self) -> str:
        return self.broker.mlnode_version if self.broker is not None else str(self._broker_args["mlnode_version"])

    async def start(self) -> None:
        kwargs: dict[str, Any] = {} if self._access_log else {"access_log": None}
        self._runner = web.AppRunner(build_app(self), handle_signals=False, shutdown_timeout=1.0, **kwargs)
        await self._runner.setup()
        try:
            await self._listen()
            builders = {"public": build_public_app, "callback": build_callback_app, "chain": build_chain_app}
            for face, build in builders.items():
                if self.ports[face] is None:
                    continue
                runner = web.AppRunner(build(self), handle_signals=False, shutdown_timeout=1.0, **kwargs)
                await runner.setup()
                self._extra.append(runner)
                await web.TCPSite(runner, self.host, self.ports[face], reuse_address=True).start()
                self.ports[face] = runner.addresses[0][1]
            if not self.registry.legacy:
                self.broker = Broker(self.registry, self.epoch_clock, self.policy, self.poc_recorder,
                                     callback_url=lambda: self.callback_url, **self._broker_args)
                self.broker.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None
        for runner in self._extra:
            await runner.cleanup()
        self._extra.clear()
        if self._reopen is not None:
            self._reopen.cancel()
            await asyncio.gather(self._reopen, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _listen(self) -> None:
        assert self._runner is not None and self._runner.server is not None
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self._runner.server, self.host, self.port, reuse_address=True)
        self.port = self._listener.sockets[0].getsockname()[1]

    # -- faults -----------------------------------------------------------------------------------

    def refuse_for(self, seconds: float, *, keep: object = None) -> None:
        """Close the listening socket and every open connection; listen again after `seconds`."""
        loop = asyncio.get_running_loop()
        self.faults.refuse_until = loop.time() + seconds
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None and self._runner.server is not None:
            for conn in self._runner.server.connections:
                if conn is not keep:
                    conn.force_close()
        if self._reopen is not None:
            self._reopen.cancel()
        self._refuse_over = asyncio.Event()
        self._reopen = loop.create_task(self._reopen_after(seconds, self._refuse_over))
        logger.info("Refusing connections on port %s for %s s", self.port, seconds)

    async def _reopen_after(self, seconds: float, over: asyncio.Event) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(over.wait(), seconds)
        self.faults.refuse_until = 0.0
        for _ in range(100):  # the port can be briefly busy; never give up silently
            try:
                await self._listen()
            except OSError as exc:
                logger.warning("Could not listen on port %s again yet: %s", self.port, exc)
                await asyncio.sleep(0.05)
            else:
                logger.info("Accepting connections on port %s again", self.port)
                return
        logger.error("Gave up listening on port %s again", self.port)

    async def wait_accepting(self, within: float = 5.0) -> None:
        """Wait until the listening socket is open again (after a refusal window)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self._listener is None:
            if loop.time() > deadline:
                raise TimeoutError(f"stand-in on port {self.port} not listening after {within} s")
            await asyncio.sleep(0.02)

    def fail_with_500_for(self, seconds: float) -> None:
        """Answer every admin request with 500 `{"error": "internal error"}` for `seconds`."""
        self.faults.error500_until = asyncio.get_running_loop().time() + seconds

    def slow_for(self, seconds: float, delay: float) -> None:
        """Delay every admin answer by `delay` seconds for `seconds`."""
        self.faults.slow_until = asyncio.get_running_loop().time() + seconds
        self.faults.slow_delay = delay

    def clear_faults(self) -> None:
        """End every fault now (a refusal ends as soon as the socket is open again)."""
        self.faults.clear()
        self._refuse_over.set()

    # -- introspection and state ------------------------------------------------------------------

    def saved_config(self) -> list[dict[str, Any]]:
        return self.registry.saved_config()

    def nodes(self) -> list[dict[str, Any]]:
        return self.registry.entries()

    def request_counts(self) -> dict[str, int]:
        return dict(self.counts)

    def fail_node(self, node_id: str, reason: str = "simulated failure") -> None:
        self.registry.fail(node_id, reason)

    def set_models(self, models: Iterable[str]) -> None:
        self.registry.models = list(models)

    def reset(self) -> None:
        """Forget every node, the saved config and the request counts; end 500/slow faults."""
        self.registry.reset()
        self.counts.clear()
        self.poc_recorder.records.clear()
        self.faults.error500_until = self.faults.slow_until = self.faults.slow_delay = 0.0

    # -- epoch, PoC and broker (latest) -----------------------------------------------------------

    def poc(self, action: str) -> dict[str, Any]:
        """Move the PoC window now: "open", "validate", "close", "confirmation-start|end"."""
        clock = self.epoch_clock
        actions = {"open": clock.open_poc, "validate": clock.start_validation, "close": clock.close_poc}
        if action in actions:
            actions[action]()
        elif action in ("confirmation-start", "confirmation-end"):
            clock.confirmation_poc_active = action == "confirmation-start"
        else:
            raise ValueError(f"unknown PoC action {action!r}: open, validate, close, confirmation-start, "
                             "confirmation-end")
        if self.broker is not None:
            self.broker.trigger()
        return clock.latest()

    async def broker_round(self) -> None:
        """Run one broker pass now and wait for it (tests: no waiting for the interval)."""
        if self.broker is not None:
            await self.broker.round()

    def set_mlnode_version(self, version: str) -> None:
        if self.broker is not None:
            self.broker.mlnode_version = version
            self.broker.trigger()
        self._broker_args["mlnode_version"] = version

    def poc_batches(self) -> list[dict[str, Any]]:
        return [r.as_json() for r in self.poc_recorder.records]


@asynccontextmanager
async def run_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    generation: str = "latest",
    models: Iterable[str] = DEFAULT_MODELS,
    state_delay: float = 1.0,
    **kwargs: Any,
) -> AsyncIterator[Simulator]:
    """`async with run_simulator(generation="2025-08") as sim:` → a started stand-in on loopback.
    Further keyword arguments are `Simulator`'s (ports, mlnode_version, allow_targets, clock, ...)."""
    sim = Simulator(host=host, port=port, generation=generation, models=models, state_delay=state_delay, **kwargs)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()
