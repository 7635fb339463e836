"""`gonka-operator simulate-network-node` / `python -m gonka_operator.simulator`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
from pathlib import Path

from gonka_operator.simulator.network import parse_setup_checks
from gonka_operator.simulator.server import Simulator
from gonka_operator.simulator.state import DEFAULT_MODELS, GENERATIONS

logger = logging.getLogger(__name__)


def build_parser(prog: str = "gonka-operator simulate-network-node") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Stand-in for a Gonka network node (api v0.2.14 with --generation latest): admin API, "
        "public /v1/epochs/latest, ML callback server, optional chain RPC, an epoch clock and a broker that "
        "really drives the registered ML nodes (only loopback and --allow-targets). No chain, no keys.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", "--admin-port", dest="port", type=int, default=9200,
                        help="admin API port, 0 = any free one (default %(default)s)")
    parser.add_argument("--public-port", type=int, default=None,
                        help="public API port (/v1/epochs/latest); default 9000, or 0 when --port is 0")
    parser.add_argument("--ml-callback-port", type=int, default=None,
                        help="ML callback port (PoC batches); default 9100, or 0 when --port is 0")
    parser.add_argument("--chain-port", type=int, default=None,
                        help="serve a CometBFT-shaped /status on this port (default: not served; 0 = free)")
    parser.add_argument("--poc-callback-url", default=None,
                        help="base URL ML nodes POST PoC results to (DAPI_API__POC_CALLBACK_URL; "
                        "default http://HOST:<ml-callback-port>)")
    parser.add_argument("--mlnode-version", default="v3.0.8",
                        help="ML-node version the broker puts in front of every path ('' = none; "
                        "default %(default)s)")
    parser.add_argument("--allow-targets", action="append", default=[], metavar="CIDR[,CIDR]",
                        help="networks the broker may contact besides loopback (repeatable); names are resolved "
                        "first, anything else is not contacted and becomes FAILED")
    parser.add_argument("--connect-to", action="append", default=[], metavar="GLOB[:PORT]=ADDR:PORT",
                        help="test harness: send connections for matching hosts to ADDR:PORT (repeatable)")
    parser.add_argument("--epoch-length", type=int, default=100, help="blocks per epoch (default %(default)s)")
    parser.add_argument("--poc-length", type=int, default=20, help="PoC generation blocks (default %(default)s)")
    parser.add_argument("--poc-validation-length", type=int, default=10,
                        help="PoC validation blocks (default %(default)s)")
    parser.add_argument("--poc-wind-down", type=int, default=2,
                        help="wind-down blocks after generation and after validation (default %(default)s)")
    parser.add_argument("--block-time", type=float, default=1.0,
                        help="seconds per block; 0 freezes the clock (move it with POST /stand-in/v1/poc|clock) "
                        "(default %(default)s)")
    parser.add_argument("--broker-interval", type=float, default=1.0,
                        help="seconds between broker rounds (upstream: 30 s reconcile, 60 s status; "
                        "default %(default)s)")
    parser.add_argument("--status-interval", type=float, default=60.0,
                        help="seconds between state queries of a settled entry (upstream 60 s; default %(default)s)")
    parser.add_argument("--broker-retry", type=float, default=5.0,
                        help="seconds before a FAILED entry is tried again (default %(default)s)")
    parser.add_argument("--setup-report", type=Path, default=None, metavar="FILE",
                        help='JSON {"<check id>": "PASS|FAIL|UNAVAILABLE" or {"status", "message"}} for '
                        "GET setup/report (unlisted checks PASS)")
    parser.add_argument("--setup-check", action="append", default=[], metavar="ID=STATUS",
                        help="one setup/report check result (repeatable; wins over --setup-report)")
    parser.add_argument("--catching-up", action="store_true", help="the chain RPC reports catching_up=true")
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
        help="2025-08: seconds a new node stays UNKNOWN before INFERENCE; latest: seconds before the broker "
        "first contacts a new entry (default %(default)s)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    follow = 0 if args.port == 0 else None
    checks: dict[str, object] = json.loads(args.setup_report.read_text()) if args.setup_report else {}
    for item in args.setup_check:
        check_id, _, status = item.partition("=")
        checks[check_id] = status
    sim = Simulator(
        host=args.host,
        port=args.port,
        generation=args.generation,
        models=models,
        state_delay=args.state_delay,
        access_log=args.access_log,
        public_port=args.public_port if args.public_port is not None else (follow if follow == 0 else 9000),
        callback_port=args.ml_callback_port if args.ml_callback_port is not None else (
            follow if follow == 0 else 9100),
        chain_port=args.chain_port,
        callback_url=args.poc_callback_url,
        mlnode_version=args.mlnode_version,
        allow_targets=args.allow_targets,
        connect_to=args.connect_to,
        epoch_length=args.epoch_length,
        poc_length=args.poc_length,
        validation_length=args.poc_validation_length,
        wind_down=args.poc_wind_down,
        block_time=args.block_time,
        broker_interval=args.broker_interval,
        broker_retry=args.broker_retry,
        status_interval=args.status_interval,
        setup_checks=parse_setup_checks(checks),
        catching_up=args.catching_up,
    )
    await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # One line on stdout, flushed: scripts starting it with --port 0 read the address from it.
    print(f"network-node stand-in ({args.generation}) listening on {sim.base_url}/admin/v1/", flush=True)
    for face, label, path in (("public", "public API", "/v1/"), ("callback", "ML callback", "/"),
                              ("chain", "chain RPC", "/status")):
        if (url := sim.url_of(face)) is not None:
            print(f"{label} listening on {url}{path}", flush=True)
    if not sim.registry.legacy:
        print(f"broker: ML-node version {sim.mlnode_version or '(none)'}, targets {sim.policy.describe()}, "
              f"PoC callback {sim.callback_url}", flush=True)
    logger.info("Approved models: %s", ", ".join(models) or "(none)")
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in until SIGINT/SIGTERM. Returns the process exit code."""
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
