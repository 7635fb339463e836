"""The stand-in in a daemon thread with its own event loop, for tests and benchmarks whose
operator runs in another process (or another loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

from gonka_operator.simulator.server import Simulator
from gonka_operator.simulator.state import DEFAULT_MODELS

T = TypeVar("T")


class ThreadedSimulator:
    """A stand-in running its own event loop in a daemon thread; methods are thread-safe."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sim: Simulator | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._base_url = ""
        self._port = 0
        self._thread = threading.Thread(target=self._run, name="gonka-simulator", daemon=True)

    def start(self, timeout: float = 10.0) -> ThreadedSimulator:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"stand-in did not start within {timeout} s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        sim = Simulator(**self._kwargs)
        try:
            await sim.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._sim = sim
        self._base_url, self._port = sim.base_url, sim.port
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await sim.stop()

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> ThreadedSimulator:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def call(self, fn: Callable[[Simulator], T], timeout: float = 10.0) -> T:
        """Run `fn(simulator)` on the stand-in's loop and return its result."""
        if self._loop is None or self._sim is None:
            raise RuntimeError("stand-in is not running")
        sim = self._sim

        async def run() -> T:
            return fn(sim)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def port(self) -> int:
        return self._port

    def refuse_for(self, seconds: float) -> None:
        self.call(lambda s: s.refuse_for(seconds))

    def fail_with_500_for(self, seconds: float) -> None:
        self.call(lambda s: s.fail_with_500_for(seconds))

    def slow_for(self, seconds: float, delay: float) -> None:
        self.call(lambda s: s.slow_for(seconds, delay))

    def clear_faults(self) -> None:
        self.call(lambda s: s.clear_faults())

    def saved_config(self) -> list[dict[str, Any]]:
        return self.call(lambda s: s.saved_config())

    def nodes(self) -> list[dict[str, Any]]:
        return self.call(lambda s: s.nodes())

    def request_counts(self) -> dict[str, int]:
        return self.call(lambda s: s.request_counts())

    def fail_node(self, node_id: str, reason: str = "simulated failure") -> None:
        self.call(lambda s: s.fail_node(node_id, reason))

    def set_models(self, models: Iterable[str]) -> None:
        wanted = list(models)
        self.call(lambda s: s.set_models(wanted))

    def reset(self) -> None:
        self.call(lambda s: s.reset())


def serve_in_thread(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    generation: str = "latest",
    models: Iterable[str] = DEFAULT_MODELS,
    state_delay: float = 1.0,
) -> ThreadedSimulator:
    """Start a stand-in in a daemon thread; `handle.base_url`, `handle.stop()` (or use `with`)."""
    return ThreadedSimulator(
        host=host, port=port, generation=generation, models=list(models), state_delay=state_delay
    ).start()
