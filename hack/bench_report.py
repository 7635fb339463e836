"""The tables `make bench` prints: every figure of one N with its target, or one row per N (--scale)."""

from __future__ import annotations

import json
from typing import Any


def print_single(results: dict[str, Any]) -> None:
    n = results["n"]
    rows = [
        (f"apply {n} InferenceNodes → all registered + Ready", f"{results['operator_seconds']:.1f} s", ""),
        ("raw kubectl apply --server-side of the same children → Available",
         f"{results['raw_apply_seconds']:.1f} s", ""),
        ("ratio operator / raw apply", f"{results['ratio_operator_over_raw']:.2f}", "≤ 1.2"),
        ("K8s writes per new InferenceNode (incl. the user's create)",
         f"{results['writes_per_inference_node']:.2f}", "≤ 6"),
        ("  the same without the PodDisruptionBudget",
         f"{results['writes_per_inference_node_without_pdb']:.2f}", "≤ 6"),
        ("  of which status writes", f"{results['status_writes_per_inference_node']:.2f}", "1"),
        ("writes during two idle poll intervals", f"{results['idle_writes_two_intervals']:.0f}", "0"),
        ("admin API requests per poll interval (1 network node)",
         f"{results['admin_requests_per_interval']:.1f}", "1"),
        ("operator CPU per InferenceNode (burst + trailing writes)",
         f"{results['operator_cpu_seconds_per_node'] * 1000:.0f} ms", "flat in N"),
        (f"registry poll at N={n}: wall / CPU",
         f"{results['poll_seconds_at_n'] * 1000:.0f} / {results['poll_cpu_seconds_at_n'] * 1000:.0f} ms",
         "≪ poll interval"),
        ("operator RSS once started (import baseline)", f"{results['operator_idle_rss_mib']:.0f} MiB", ""),
        (f"operator peak RSS at N={n} (current once idle)",
         f"{results['operator_peak_rss_mib']:.0f} ({results['operator_rss_after_mib']:.0f}) MiB", "≤ 150 MiB @1000"),
        ("apply → registered in the registry, single object p50 / p95",
         f"{results['latency_p50_seconds'] * 1000:.0f} / {results['latency_p95_seconds'] * 1000:.0f} ms",
         "p95 ≤ 1 s"),
        ("apply → status Registered=True (kubectl polls), p50 / p95",
         f"{results['status_latency_p50_seconds'] * 1000:.0f} / {results['status_latency_p95_seconds'] * 1000:.0f} ms",
         ""),
    ]
    for name, value, target in rows:
        print(f"  {name:<64} {value:>14}  {target}")
    print(f"  import baseline (a fresh interpreter importing what the operator imports): "
          f"{results['import_baseline_mib']:.0f} MiB")
    print("  bytes per object: JSON / parsed, as an event brings it / kept by the operator's record")
    for kind, c in results["per_kind_bytes"].items():
        print(f"    {kind:<14} {c['json']:>7} / {c['event']:>7} / {c['kept']:>7}")
    print(f"  writes by verb/resource during the burst: {json.dumps(results['writes_by_verb_resource'])}")
    print(f"  writes by verb/resource while idle: {json.dumps(results['idle_writes_by_verb_resource'])}")


SCALE_COLUMNS = (  # header, target, format of one result
    ("operator s", "", lambda r: f"{r['operator_seconds']:.1f}"),
    ("raw SSA s", "", lambda r: f"{r['raw_apply_seconds']:.1f}"),
    ("ratio", "≤ 1.2", lambda r: f"{r['ratio_operator_over_raw']:.2f}"),
    ("writes/node", "≤ 6", lambda r: f"{r['writes_per_inference_node']:.2f}"),
    ("w/o PDB", "≤ 6", lambda r: f"{r['writes_per_inference_node_without_pdb']:.2f}"),
    ("CPU ms/node", "flat", lambda r: f"{r['operator_cpu_seconds_per_node'] * 1000:.0f}"),
    ("peak RSS MiB", "≤ 150 @1000", lambda r: f"{r['operator_peak_rss_mib']:.0f}"),
    ("poll ms", "≪ interval", lambda r: f"{r['poll_seconds_at_n'] * 1000:.0f}"),
    ("poll CPU ms", "≪ interval", lambda r: f"{r['poll_cpu_seconds_at_n'] * 1000:.0f}"),
    ("p95 reg. ms", "≤ 1000", lambda r: f"{r['latency_p95_seconds'] * 1000:.0f}"),
)


def print_scale(runs: list[dict[str, Any]]) -> None:
    header = ["N", *(c[0] for c in SCALE_COLUMNS)]
    rows = [["target", *(c[1] for c in SCALE_COLUMNS)]]
    rows += [[str(r["n"]), *(c[2](r) for c in SCALE_COLUMNS)] for r in runs]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
