"""Running the stand-in: in the caller's event loop (`run_simulator`) or in a thread (`serve_in_thread`).

The listening socket is managed here (not by an aiohttp site) so that `refuse_for()` can close it,
drop every open connection, and listen again on the same port afterwards.
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
from gonka_operator.simulator.state import DEFAULT_MODELS, Registry

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

    @property
    def generation(self) -> str:
        return self.registry.generation

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`: what AdminClient takes (the api itself is under /admin/v1)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def accepting(self) -> bool:
        return self._listener is not None

    async def start(self) -> None:
        kwargs: dict[str, Any] = {} if self._access_log else {"access_log": None}
        self._runner = web.AppRunner(build_app(self), handle_signals=False, shutdown_timeout=1.0, **kwargs)
        await self._runner.setup()
        try:
            await self._listen()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
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
        self.faults.error500_until = self.faults.slow_until = self.faults.slow_delay = 0.0


@asynccontextmanager
async def run_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    generation: str = "latest",
    models: Iterable[str] = DEFAULT_MODELS,
    state_delay: float = 1.0,
) -> AsyncIterator[Simulator]:
    """`async with run_simulator(generation="2025-08") as sim:` → a started stand-in on loopback."""
    sim = Simulator(host=host, port=port, generation=generation, models=models, state_delay=state_delay)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()
