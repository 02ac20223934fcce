"""``restore STACK --to-time T | --latest`` on a stack with a managed database: fork, never overwrite.

Engine: ops/backups_fork.py (checks, the fork, its trusted sources); DigitalOcean through
ops/backups_fork_api.py (token: DIGITALOCEAN_TOKEN). The live cluster is only read. The command
prints the plan, asks for the stack's name on a terminal (or takes --yes), creates the fork,
waits until it is online (``--wait-minutes``, default 60) and prints how to bring its data into
service: docs/RUNBOOK-managed-database.md ("Bring a fork's data into service").

Exit codes: 0 the fork is online; 1 an API call failed, or the fork was not online by the
deadline (DigitalOcean keeps building it), or the operator declined; 2 refused before anything
was created (a time outside the backups, a taken name, no token, --backup-set/--from a dump).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from typing import Any, Final

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.outputs import StackOutputs
from bankflow_infra.ops import backups_fork
from bankflow_infra.ops.backups_fork import ForkError, ForkPlan, create_fork, plan_fork
from bankflow_infra.ops.backups_fork_api import PydoDatabases
from bankflow_infra.ops.cli import session
from bankflow_infra.ops.cli.backup_pitr import check_target_time
from bankflow_infra.ops.doctor_apis import (
    DIGITALOCEAN_TOKEN_ENV,
    DIGITALOCEAN_URL,
    DIGITALOCEAN_URL_ENV,
    ApiError,
    ConfigError,
    endpoint,
    token,
)

POLL_SECONDS: Final = 15.0  # between status reads while DigitalOcean builds the fork
RUNBOOK: Final = "docs/RUNBOOK-managed-database.md"


def add_fork_arguments(restore: Any) -> None:
    restore.add_argument("--fork-name", metavar="NAME",
                         help="managed database: the fork's cluster name (default <cluster>-fork-<time>)")
    restore.add_argument("--wait-minutes", type=float, default=60.0, metavar="M",
                         help="managed database: how long to wait for the fork to be online (default 60)")


def refusal(args: argparse.Namespace) -> str | None:
    """What a managed database cannot do (no pgBackRest, no dump restore in place)."""
    if args.backup_set or args.discard_previous:
        return ("the stack's database is managed by DigitalOcean: there are no pgBackRest backup sets; "
                "restore with --to-time or --latest (a fork of the cluster)")
    if args.source_stack:
        return "--source-stack does not apply to a managed database: its backups are DigitalOcean's"
    if args.to_time and args.latest:
        return "choose one of --to-time and --latest"
    if args.to_time:
        return check_target_time(args.to_time, dt.datetime.now(dt.UTC))
    return None


def run_fork_restore(args: argparse.Namespace, outputs: StackOutputs) -> int:
    assert outputs.database is not None
    refused = refusal(args)
    if refused is not None:
        session.error("restore", f"{refused}; nothing changed")
        return exit_codes.USAGE
    if not args.yes and not session.has_terminal():
        session.error("restore", "not a terminal: refusing to create a fork without --yes; nothing changed")
        return exit_codes.USAGE
    try:
        api = PydoDatabases(token(os.environ, DIGITALOCEAN_TOKEN_ENV),
                            endpoint(os.environ, DIGITALOCEAN_URL_ENV, DIGITALOCEAN_URL))
    except ConfigError as error:
        session.error("restore", f"{error}; nothing changed")
        return exit_codes.USAGE
    target = (dt.datetime.strptime(args.to_time, "%Y-%m-%d %H:%M:%SZ").replace(tzinfo=dt.UTC)
              if args.to_time else None)
    try:
        plan = _plan(api, outputs.database.cluster, target, args.fork_name)
    except ForkError as error:
        session.error("restore", f"{error}; nothing changed")
        return exit_codes.USAGE
    except ApiError as error:
        session.error("restore", f"{error}; nothing changed")
        return exit_codes.FAILED
    print(plan_text(args.stack, plan))
    if not args.yes and session.ask(f"Type the stack name ({args.stack}) to create the fork: ") != args.stack:
        session.error("restore", "not confirmed; nothing changed")
        return session.DECLINED
    try:
        with session.stage("restore", f"forking {plan.source['name']} (the live cluster is not touched)"):
            fork, online = create_fork(api, plan, args.wait_minutes * 60, POLL_SECONDS, progress=print)
    except ApiError as error:
        session.error("restore", f"{error}; the live cluster is unchanged")
        return exit_codes.FAILED
    print(done_text(args.stack, plan, fork, online))
    return exit_codes.OK if online else exit_codes.FAILED


def _plan(api: PydoDatabases, cluster: str, target: dt.datetime | None, name: str | None) -> ForkPlan:
    clusters = api.clusters()
    source = next((c for c in clusters if c.get("name") == cluster), None)
    backups = api.backups(str(source["id"])) if source is not None else []
    rules = api.firewall(str(source["id"])) if source is not None else []
    return plan_fork(cluster, clusters, backups, rules, target, dt.datetime.now(dt.UTC), name)


def plan_text(stack: str, plan: ForkPlan) -> str:
    source = plan.source
    when = (f"{plan.target:%Y-%m-%d %H:%M:%SZ}" if plan.target
            else "its most recent daily backup (up to a day old; --to-time for a later moment)")
    return "\n".join([
        f"Fork of stack {stack}'s managed database {source['name']} as of {when}",
        f"  new cluster: {plan.fork_name} ({source.get('size')}, {source.get('num_nodes')} node(s), "
        f"{source.get('region')}, the same VPC, {len(plan.rules)} trusted source(s) copied)",
        f"  oldest backup DigitalOcean keeps: {plan.oldest_backup:%Y-%m-%d %H:%M:%SZ} "
        f"({backups_fork.BACKUP_RETENTION.days} days)",
        f"  the live cluster {source['name']} is only read; the site keeps running on it",
    ])


def done_text(stack: str, plan: ForkPlan, fork: Any, online: bool) -> str:
    private = fork.get("private_connection") if isinstance(fork.get("private_connection"), dict) else {}
    host = private.get("host") or "(its private host: see the DigitalOcean console)"
    if not online:
        return (f"The fork {plan.fork_name} ({fork.get('id')}) is not online yet (status "
                f"{fork.get('status')!r}); DigitalOcean keeps building it. Follow it in the console, then "
                f"continue with {RUNBOOK}, \"Bring a fork's data into service\".")
    return "\n".join([
        f"The fork {plan.fork_name} ({fork.get('id')}) is online at {host}, port {private.get('port', '?')}.",
        f"Stack {stack} still serves from {plan.source['name']}, unchanged. Next ({RUNBOOK}):",
        "  1. verify the fork (\"Verify a database\": row counts, the newest rows, as of the time chosen);",
        "  2. bring its data into service (\"Bring a fork's data into service\": maintenance page on, copy "
        "the fork's database into the live cluster over TLS verify-full, check, maintenance off);",
        f"  3. delete the fork when done: it is billed like any cluster (id {fork.get('id')}).",
        _uploads_line(stack, plan),
    ])


def _uploads_line(stack: str, plan: ForkPlan) -> str:
    """The uploads are not in the cluster: a scaled stack's share gets its point in time beside
    the live files, on droplet 1 (host agent ``uploads-aside``; the runbook's section 2)."""
    when = (f" --to-time '{plan.target:%Y-%m-%d %H:%M:%SZ}'" if plan.target
            else " --to-time '<the fork's backup time>'")
    return (f"The uploads of that time are not in the fork. On droplet 1 (`bankflow-infra ssh {stack} "
            f"--user <you>`, then sudo): /opt/bankflow/bin/bankflow-agent uploads-aside{when} puts them "
            "beside the live files, which it does not touch.")
