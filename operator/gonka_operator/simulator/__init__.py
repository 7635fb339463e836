"""Stand-ins for a Gonka network node and its ML nodes, part of the product (demos and tests).

They follow gonka-ai/gonka **v0.2.14** (release of 2026-07, commit ee730031; a few later details are
marked where used) with `--generation latest`, and the 2025-08 deploy files with `--generation
2025-08`. The real api cannot run without a live chain, the real mlnode not without GPUs.

`gonka-operator simulate-network-node` (also `python -m gonka_operator.simulator`):

- admin API `http://HOST:PORT/admin/v1/` (`--port`, default 9200): `GET nodes`, `POST nodes`,
  `POST nodes/batch`, `PUT nodes/{id}` (latest; 2025-08 answers 405), `DELETE nodes/{id}`,
  `POST nodes/{id}/enable|disable`, and (latest) `GET setup/report`, `GET poc/timing`. Both
  generations' errors and quirks: `state.py` (`internal/server/admin/node_handlers.go`,
  `broker/node_admin_commands.go`, `apiconfig`).
- latest only: public API `GET /v1/epochs/latest` (`--public-port`, 9000), the ML callback server
  that records every PoC batch (`--ml-callback-port`, 9100), a CometBFT-shaped `/status`
  (`--chain-port`, off by default): `network.py`; the epoch clock: `epoch.py`; the broker that
  really drives every registered ML node through `http://host:port/<--mlnode-version>/...`, sets
  INFERENCE / POC / STOPPED / FAILED (+ reason) from what it finds, tells ML nodes to generate PoC
  and turns delivered artifacts into `poc_weight`: `broker.py` (`decentralized-api/broker/`). It
  contacts only loopback and `--allow-targets` CIDRs (`targets.py`). The 2025-08 generation drives
  nothing: a new entry is UNKNOWN, then INFERENCE after `--state-delay` s, as before.
- One line per listener on stdout, `<name> listening on <url>` (first: the admin API), so scripts
  starting it with `--port 0` (then every other port is free-picked too) can read the addresses.

`gonka-operator simulate-ml-node`: `mlnode.py` (the mlnode management API, vLLM under `/v1`,
PoC v2, on one port, unprefixed paths only).

Debug endpoints of the network stand-in (stand-in only, never faulted, not counted):

- `POST /debug/faults {"mode": "refuse"|"slow"|"error500"|"none", "seconds": N, "delay": s}`:
  `refuse` closes the listening socket and every open connection, so connections are refused for
  N seconds, then listens again on the same port; `slow` delays every admin answer by `delay` s for
  N seconds; `error500` answers every admin request 500 `{"error": "internal error"}` for N seconds;
  `none` ends them all.
- `POST /debug/nodes/{id}/fail {"reason": "..."}` → the node's state becomes FAILED with that reason
  (sticky: the broker leaves it alone); `POST /debug/nodes/{id}/recover` → back to UNKNOWN, then
  whatever the broker (latest) or the timer (2025-08) finds.
- `GET /debug/config` → the saved config (with the 2025-08 duplicates).
- `GET /debug/requests` → `{"<METHOD> <route template>": count}` for admin requests, e.g.
  `{"PUT /admin/v1/nodes/{id}": 2}`.
- `GET /debug/governance`, `POST /debug/governance {"models": [...]}` → the approved model list.
- `POST /debug/reset` → forget nodes, saved config, counts and PoC batches; end 500/slow faults.
- latest: `POST /stand-in/v1/poc {"action": "open"|"validate"|"close"|"confirmation-start"|
  "confirmation-end"}` (moves the PoC window now; answers like /v1/epochs/latest),
  `POST /stand-in/v1/clock {"advance": blocks}`, `POST /stand-in/v1/broker/round` (one broker pass,
  waited for), `POST /stand-in/v1/mlnode-version {"version": "v3.0.12-post3"|""}`,
  `POST /stand-in/v1/setup-report {"checks": {"<id>": "PASS|FAIL|UNAVAILABLE"}}`,
  `POST /stand-in/v1/chain {"catching_up": true}`, `GET /stand-in/v1/poc-batches`,
  `GET /stand-in/v1/info` (every address, the callback URL, version, allowed targets).

In-process: `async with run_simulator(generation="2025-08") as sim:` (`sim.base_url`,
`sim.url_of("public"|"callback"|"chain")`, `sim.refuse_for(s)`, `sim.fail_with_500_for(s)`,
`sim.slow_for(s, delay)`, `sim.saved_config()`, `sim.request_counts()`, `sim.poc(action)`,
`await sim.broker_round()`, `sim.poc_batches()`, ...); in another thread: `with serve_in_thread(...) as sim:`.
"""

from gonka_operator.simulator.cli import build_parser, main
from gonka_operator.simulator.server import Simulator, run_simulator
from gonka_operator.simulator.state import DEFAULT_MODELS, GENERATIONS, ApiError, Registry
from gonka_operator.simulator.thread import ThreadedSimulator, serve_in_thread

__all__ = [
    "DEFAULT_MODELS",
    "GENERATIONS",
    "ApiError",
    "Registry",
    "Simulator",
    "ThreadedSimulator",
    "build_parser",
    "main",
    "run_simulator",
    "serve_in_thread",
]
