"""``bankflow-infra plan STACK``: the offline plan (see ops/plan.py) and its diagram (ops/graph.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bankflow_infra.contract import exit_codes
from bankflow_infra.ops.cli import session
from bankflow_infra.settings import SettingsError

DESCRIPTION = """\
Run the Pulumi program for STACK under Pulumi's mock engine (no pulumi CLI, no credentials, no
network) and show every resource it would create with all its inputs, then the stack outputs.
Values the cloud computes (IDs, IP addresses, keys) are placeholders; secrets show as [secret].
The rendered host bundle is written to --out (secret files redacted).

With --graph it prints a diagram of the resources instead, by layer and component, with the
traffic path (Cloudflare, firewall, nginx, services, PostgreSQL/Redis) and the backup path;
--changed-from marks what differs from a base plan (the output of plan STACK --json on the
target branch)."""

EPILOG = """\
exit status:
  0  the plan (or diagram) was printed
  2  bad input, nothing written: a missing or unreadable Pulumi.yaml / Pulumi.STACK.yaml, a bad
     config value (every problem named with its key), an unusable --out or --changed-from

examples:
  bankflow-infra plan staging
  bankflow-infra plan production --json > plan.json
  bankflow-infra plan staging --graph > staging.mmd
  bankflow-infra plan staging --graph markdown --changed-from base.json"""


def register(commands: Any) -> None:
    plan = commands.add_parser(
        "plan",
        help="show what a stack would create, offline (mock engine, no credentials)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument("stack", metavar="STACK", help="stack name: reads Pulumi.STACK.yaml")
    plan.add_argument("--json", action="store_true", help="print one JSON document instead of a tree")
    plan.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write the rendered files (default: build/STACK)"
    )
    plan.add_argument(
        "--project-dir",
        type=Path,
        default=Path.cwd(),
        metavar="DIR",
        help="the directory holding Pulumi.yaml (default: the current directory)",
    )
    plan.add_argument(
        "--graph",
        nargs="?",
        const="mermaid",
        choices=("mermaid", "dot", "markdown"),
        help="print a diagram instead of the tree: mermaid (the default), dot (Graphviz) or markdown "
        "(a Mermaid block for a pull-request comment); writes no files",
    )
    plan.add_argument(
        "--changed-from",
        type=Path,
        metavar="FILE",
        help="with --graph: mark what differs from this base plan (the output of plan STACK --json)",
    )
    plan.set_defaults(handler=run)


def _base_rows(path: Path) -> list[dict[str, Any]]:
    from bankflow_infra.ops.plan import PlanError

    try:
        document = json.loads(path.read_text())
        rows = document["resources"]
        if not all({"type", "name", "parent", "inputs"} <= set(r) for r in rows):
            raise ValueError
    except OSError as error:
        raise PlanError(f"--changed-from {path}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise PlanError(
            f"--changed-from {path}: not a plan document; make it with `bankflow-infra plan STACK --json`"
        ) from None
    return list(rows)


def run(args: argparse.Namespace) -> int:
    from bankflow_infra.ops.plan import PlanError, check_out_dir, format_tree, plan_stack, write_bundle

    out_dir = args.out or args.project_dir / "build" / args.stack
    try:
        if args.changed_from is not None and args.graph is None:
            raise PlanError("--changed-from needs --graph")
        base_rows = _base_rows(args.changed_from) if args.changed_from is not None else None
        if args.graph is None:
            check_out_dir(out_dir)
        result = plan_stack(args.project_dir, args.stack)
        if args.graph is not None:
            sys.stdout.write(_diagram(result, args.graph, base_rows, args.changed_from))
            return exit_codes.OK
        written = write_bundle(result.bundle, out_dir) if result.bundle is not None else []
    except (PlanError, SettingsError) as error:
        session.error("plan", str(error))
        return exit_codes.USAGE
    if args.json:
        print(json.dumps(result.document(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(format_tree(result))
        print(f"\nRendered files: {len(written)} written to {out_dir} (secret files redacted)")
    return exit_codes.OK


def _diagram(result: Any, form: str, base_rows: list[dict[str, Any]] | None, base: Path | None) -> str:
    from bankflow_infra.ops.graph import build_graph
    from bankflow_infra.ops.graph_render import dot, markdown, mermaid

    graph = build_graph(result.stack, result.resource_rows(), result.settings, base_rows)
    if form == "dot":
        return dot(graph)
    if form == "markdown":
        return markdown(graph, base.name if base is not None else None)
    return mermaid(graph)
