"""``bankflow-infra plan STACK [--json] [--out DIR]``: the offline plan (see ops/plan.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bankflow_infra.contract import exit_codes
from bankflow_infra.ops.cli import session
from bankflow_infra.settings import SettingsError


def register(commands: Any) -> None:
    plan = commands.add_parser(
        "plan",
        help="show what a stack would create, offline (mock engine, no credentials)",
        description="Run the Pulumi program for STACK under Pulumi's mock engine and show the "
        "resources and outputs; write the rendered host bundle (secrets redacted) to --out.",
    )
    plan.add_argument("stack", metavar="STACK", help="stack name: reads Pulumi.STACK.yaml")
    plan.add_argument("--json", action="store_true", help="print one JSON document instead of a tree")
    plan.add_argument("--out", type=Path, help="where to write the rendered files (default: build/STACK)")
    plan.add_argument("--project-dir", type=Path, default=Path.cwd(), help="directory holding Pulumi.yaml")
    plan.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bankflow_infra.ops.plan import PlanError, format_tree, plan_stack, write_bundle

    try:
        result = plan_stack(args.project_dir, args.stack)
    except (PlanError, SettingsError) as error:
        session.error("plan", str(error))
        return exit_codes.USAGE
    out_dir = args.out or args.project_dir / "build" / args.stack
    written = write_bundle(result.bundle, out_dir) if result.bundle is not None else []
    if args.json:
        print(json.dumps(result.document(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(format_tree(result))
        print(f"\nRendered files: {len(written)} written to {out_dir} (secret files redacted)")
    return exit_codes.OK
