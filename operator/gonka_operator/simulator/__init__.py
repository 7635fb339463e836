"""Stand-in for a Gonka network node's admin API (REFERENCE.md §4), part of the product.

The real admin API cannot run without a live chain, so demos and tests use this one:
`gonka-operator simulate-network-node --port 9200 --generation 2025-08|latest --models A,B`
(also `python -m gonka_operator.simulator ...`). It serves `http://HOST:PORT/admin/v1/`:

- `GET nodes`, `POST nodes`, `POST nodes/batch`, `DELETE nodes/{id}`, `POST nodes/{id}/enable|disable`,
  and `PUT nodes/{id}` (latest only; the 2025-08 router answers 405), with both generations' errors
  and quirks (see `state.py`). A new node is `UNKNOWN`, then `INFERENCE` after `--state-delay` s.

Debug endpoints (stand-in only, never faulted, not counted):

- `POST /debug/faults {"mode": "refuse"|"slow"|"error500"|"none", "seconds": N, "delay": s}`:
  `refuse` closes the listening socket and every open connection, so connections are refused for
  N seconds, then listens again on the same port; `slow` delays every admin answer by `delay` s for
  N seconds; `error500` answers every admin request 500 `{"error": "internal error"}` for N seconds;
  `none` ends them all.
- `POST /debug/nodes/{id}/fail {"reason": "..."}` → the node's state becomes FAILED with that reason;
  `POST /debug/nodes/{id}/recover` → back to UNKNOWN, then INFERENCE.
- `GET /debug/config` → the saved config (with the 2025-08 duplicates).
- `GET /debug/requests` → `{"<METHOD> <route template>": count}` for admin requests, e.g.
  `{"PUT /admin/v1/nodes/{id}": 2}`.
- `GET /debug/governance`, `POST /debug/governance {"models": [...]}` → the approved model list.
- `POST /debug/reset` → forget nodes, saved config and counts; end 500/slow faults.

In-process: `async with run_simulator(generation="2025-08") as sim:` (`sim.base_url`,
`sim.refuse_for(s)`, `sim.fail_with_500_for(s)`, `sim.slow_for(s, delay)`, `sim.saved_config()`,
`sim.request_counts()`, ...); in another thread: `with serve_in_thread(...) as sim:`.
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
