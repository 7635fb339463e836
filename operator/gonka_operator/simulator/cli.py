"""`gonka-operator simulate-network-node` / `python -m gonka_operator.simulator`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from gonka_operator.simulator.server import Simulator
from gonka_operator.simulator.state import DEFAULT_MODELS, GENERATIONS

logger = logging.getLogger(__name__)


def build_parser(prog: str = "gonka-operator simulate-network-node") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Stand-in for a Gonka network node's admin API (http://HOST:PORT/admin/v1/), "
        "for demos and tests. Not a network node: it only keeps a registry.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=9200, help="port, 0 = any free one (default %(default)s)")
    parser.add_argument(
        "--generation",
        choices=GENERATIONS,
        default="latest",
        help="admin API generation (default %(default)s)",
    )
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help="comma-separated models approved by governance (default %(default)s)",
    )
    parser.add_argument(
        "--state-delay",
        type=float,
        default=1.0,
        help="seconds a new node stays UNKNOWN before INFERENCE (default %(default)s)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    sim = Simulator(
        host=args.host,
        port=args.port,
        generation=args.generation,
        models=models,
        state_delay=args.state_delay,
        access_log=args.access_log,
    )
    await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # One line on stdout, flushed: scripts starting it with --port 0 read the address from it.
    print(f"network-node stand-in ({args.generation}) listening on {sim.base_url}/admin/v1/", flush=True)
    logger.info("Approved models: %s", ", ".join(models) or "(none)")
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in until SIGINT/SIGTERM. Returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        logger.error("Could not listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
