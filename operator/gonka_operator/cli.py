"""`gonka-operator` command line: run, crds, render, simulate-network-node, simulate-ml-node,
simulate-hf-hub, preload-model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from gonka_operator.crdgen import crds_yaml


def _run(args: list[str]) -> int:
    """Run the operator: kopf's own CLI, with our handlers module, standalone by default."""
    from kopf.cli import main as kopf_main

    argv = ["run", "--module", "gonka_operator.handlers"]
    if "--peering" not in " ".join(args):
        argv.append("--standalone")
    namespaced = any(a in ("-n", "--namespace", "-A", "--all-namespaces") or a.startswith(("--namespace=", "-n="))
                     for a in args)
    if not namespaced:
        argv.append("--all-namespaces")
    sys.argv = ["kopf", *argv, *args]
    try:
        kopf_main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def render_manifest(docs: list[dict[str, Any]], cluster_domain: str = "cluster.local",
                    operator_namespace: str | None = None) -> list[dict[str, Any]]:
    """Every object the operator would create for these CRs (same builders, no cluster needed)."""
    from gonka_operator import inference_node, network_node
    from gonka_operator.settings import Settings

    settings = Settings(operator_namespace=operator_namespace)
    out: list[dict[str, Any]] = []
    for doc in docs:
        if not doc or doc.get("apiVersion") != "gonka.ai/v1alpha1":
            continue
        body = {**doc, "metadata": {"namespace": "default", "uid": f"<uid of {doc['metadata']['name']}>",
                                    **doc["metadata"]}}
        if doc["kind"] == "NetworkNode":
            out += network_node.desired_children(body, {}, settings.operator_pod_labels, cluster_domain,
                                                 settings.operator_namespace)
        elif doc["kind"] == "InferenceNode":
            out += inference_node.desired_children(body)
    return out


class _NoAliases(yaml.SafeDumper):
    """Objects that share a sub-dict (labels, selectors) are written out in full: no &id001/*id001,
    which a reviewer of a GitOps pull request cannot read."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _render(path: str, cluster_domain: str, operator_namespace: str | None) -> int:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    objs = render_manifest(list(yaml.safe_load_all(text)), cluster_domain, operator_namespace)
    sys.stdout.write("---\n".join(yaml.dump(o, Dumper=_NoAliases, sort_keys=False) for o in objs))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="gonka-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the operator (extra options go to kopf run)", add_help=False)
    sub.add_parser("crds", help="print the CustomResourceDefinitions")
    render = sub.add_parser("render", help="print every object a manifest would create (dry run)")
    render.add_argument("-f", "--filename", required=True, help="manifest file, or - for stdin")
    render.add_argument("--cluster-domain", default="cluster.local")
    render.add_argument("--operator-namespace", default=None,
                        help="namespace of the operator's pods (admitted to the admin port 9200); "
                        "without it the policy admits no pod")
    sub.add_parser("simulate-network-node", help="run the admin API stand-in", add_help=False)
    sub.add_parser("simulate-ml-node", help="run the ML-node stand-in", add_help=False)
    sub.add_parser("simulate-hf-hub", help="run the Hugging Face Hub stand-in", add_help=False)
    sub.add_parser("preload-model", help="download a model snapshot into the HF cache (the preload Job)",
                   add_help=False)
    if argv and argv[0] == "simulate-hf-hub":
        from gonka_operator.hubsim import main as hub_main

        return hub_main(argv[1:])
    if argv and argv[0] == "preload-model":
        from gonka_operator.preload import main as preload_main

        return preload_main(argv[1:])
    if argv and argv[0] in ("run", "simulate-network-node", "simulate-ml-node"):
        if argv[0] == "run":
            return _run(argv[1:])
        if argv[0] == "simulate-ml-node":
            from gonka_operator.simulator.mlnode import main as mlnode_main

            return mlnode_main(argv[1:])
        from gonka_operator.simulator import main as simulator_main

        return simulator_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "crds":
        sys.stdout.write(crds_yaml())
        return 0
    return _render(args.filename, args.cluster_domain, args.operator_namespace)


if __name__ == "__main__":
    sys.exit(main())
