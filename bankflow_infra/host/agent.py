"""bankflow-agent: switches releases on the droplet with a health gate; stdlib only.

    bankflow-agent deploy BUNDLE_DIR [--release ID]   validate, pull, migrate, start beside the old
                                                       release, health gate, switch nginx, verify
    bankflow-agent receive --stdin [--deploy]          write a bundle sent as JSON on stdin (Pulumi),
                                                       then deploy it
    bankflow-agent rollback [RELEASE]                  the same switch towards a kept release
    bankflow-agent releases [--json]                   kept releases, current marked
    bankflow-agent status [--json]                     current release and its services
    bankflow-agent logs [SERVICE] [--tail N] [--follow] logs of the current release's app services,
                                                       or of a base service (postgres, redis, nginx)
    bankflow-agent migrate                             run the current release's migrate command
                                                       again (the deploy's migrate step), audited
    bankflow-agent backup | backups | restore          database dumps: see ``backups/__init__.py``

Exit codes: 0 done (or nothing to do), 1 a step failed and the previous release still serves,
2 bad input (usage, manifest, unknown release), 3 another deploy holds the lock, 4 a step failed
AND restoring the previous nginx state failed too (look now).

``BANKFLOW_VERIFY_URL`` is the default of ``--verify-url`` (nginx as seen from the host): the
Pulumi deploy command's text is fixed, so a host whose nginx is not at the default address --
the over-SSH tests' host -- says so in the SSH session's environment instead.

This module is the CLI entry only: argparse, dispatch to the command modules, the deploy lock,
and errors mapped to exit codes (``contract.exit_codes``). Runs as ``python3 -m
bankflow_infra.host.agent`` or through the launcher ``/opt/bankflow/bin/bankflow-agent``, which
runs the shipped ``bankflow_infra/host`` directory (``__main__.py``) beside ``contract/``; all
imports are relative.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, Final, TextIO

from ..contract import exit_codes
from ..contract.layout import HOME_ENV, HOST_ROOT, HostPaths
from ..contract.logs import LOG_TAIL_DEFAULT, tail_lines
from . import history
from . import state as st
from .backups import commands as backups
from .context import Context, Options, UsageError
from .deploy import cmd_deploy, cmd_rollback
from .logs import cmd_logs
from .manifest import ManifestError
from .migrate import cmd_migrate
from .receive import cmd_receive
from .runtime import DockerRuntime, Runtime
from .status import cmd_releases, cmd_status
from .verify import parse_nginx_endpoint

VERIFY_URL_ENV: Final = "BANKFLOW_VERIFY_URL"
Handler = Callable[[Context, argparse.Namespace, BinaryIO | None], int]

# subcommand -> (handler, whether it runs under the deploy lock). Whatever changes the host or
# its containers takes the lock, so it never interleaves with a deploy. A new subcommand is its
# parser in build_parser plus one entry here.
COMMANDS: Final[dict[str, tuple[Handler, bool]]] = {
    "deploy": (lambda ctx, a, _: cmd_deploy(ctx, a.bundle, a.release), True),
    "receive": (lambda ctx, a, stdin: cmd_receive(ctx, stdin or sys.stdin.buffer, a.deploy), True),
    "rollback": (lambda ctx, a, _: cmd_rollback(ctx, a.release), True),
    "migrate": (lambda ctx, _a, _: cmd_migrate(ctx), True),
    "releases": (lambda ctx, a, _: cmd_releases(ctx, a.json), False),
    "status": (lambda ctx, a, _: cmd_status(ctx, a.json), False),
    "logs": (lambda ctx, a, _: cmd_logs(ctx, a.service, a.tail, a.follow), False),
    **backups.COMMANDS,
    **history.COMMANDS,
}
SWITCH_COMMANDS: Final = ("deploy", "rollback", "receive")  # the ones taking the switch options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bankflow-agent", description="BankFlow release switch on the host")
    parser.add_argument("--home", help=f"host root (default: ${HOME_ENV} or {HOST_ROOT})")
    parser.add_argument(
        "--actor", help="who is acting, for the audit log (default: BANKFLOW_ACTOR/SUDO_USER/USER)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    switch = argparse.ArgumentParser(add_help=False)
    switch.add_argument("--health-timeout", type=float, default=Options.health_timeout)
    switch.add_argument(
        "--verify-url",
        default=os.environ.get(VERIFY_URL_ENV) or Options.verify_url,
        help=f"nginx as seen from the host (default: ${VERIFY_URL_ENV} or {Options.verify_url})",
    )
    switch.add_argument("--verify-timeout", type=float, default=Options.verify_timeout)
    switch.add_argument("--settle", type=float, default=Options.settle, help=argparse.SUPPRESS)
    switch.add_argument(
        "--drain", type=float, default=Options.drain, help="seconds before stopping the old release"
    )
    switch.add_argument("--keep", type=int, default=Options.keep, help="releases to keep")
    switch.add_argument("--fresh", action="store_true", help="new app containers even if unchanged")
    deploy = sub.add_parser("deploy", parents=[switch], help="deploy a release bundle dir")
    deploy.add_argument("bundle", type=Path)
    deploy.add_argument("--release", help="release id (default: the bundle dir's hex name, else its digest)")
    rollback = sub.add_parser("rollback", parents=[switch], help="switch back to a kept release")
    rollback.add_argument("release", nargs="?")
    receive = sub.add_parser("receive", parents=[switch], help="write a bundle sent as JSON on stdin")
    receive.add_argument("--stdin", action="store_true", required=True, help="read the bundle from stdin")
    receive.add_argument("--deploy", action="store_true", help="then deploy it")
    for name in ("releases", "status"):
        sub.add_parser(name).add_argument("--json", action="store_true")
    logs = sub.add_parser("logs", help="logs of the serving containers (app services, or a base service)")
    logs.add_argument("service", nargs="?", help="one service (default: every app service)")
    logs.add_argument("--tail", type=tail_lines, default=LOG_TAIL_DEFAULT, help="lines per service")
    logs.add_argument("--follow", action="store_true", help="keep printing new lines")
    sub.add_parser("migrate", help="run the current release's migrate command again")
    backups.register(sub)
    history.register(sub)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    runtime: Runtime | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: BinaryIO | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    paths = HostPaths.from_env(args.home)
    options = Options()
    if args.command in SWITCH_COMMANDS:
        options = Options(
            args.health_timeout,
            args.verify_url,
            args.verify_timeout,
            args.settle,
            args.drain,
            max(args.keep, 2),
            args.fresh,
        )
    ctx = Context(
        paths, runtime or DockerRuntime(), options, st.actor(args.actor), out or sys.stdout, err or sys.stderr
    )
    handler, locked = COMMANDS[args.command]
    try:
        parse_nginx_endpoint(options.verify_url)
        paths.ensure()
        if not locked:
            return handler(ctx, args, stdin)
        with st.exclusive_lock(paths.lock):
            return handler(ctx, args, stdin)
    except st.LockBusy as exc:
        print(f"{args.command}: {exc}", file=ctx.err)
        st.audit(paths.audit_log, ctx.actor, args.command, None, "refused", str(exc))
        return exit_codes.LOCKED
    except (ManifestError, UsageError, ValueError) as exc:
        print(f"{args.command}: {exc}", file=ctx.err)
        if locked:
            st.audit(paths.audit_log, ctx.actor, args.command, None, "refused", str(exc))
        return exit_codes.USAGE


if __name__ == "__main__":
    raise SystemExit(main())
