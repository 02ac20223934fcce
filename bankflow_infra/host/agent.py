"""bankflow-agent: switches releases on the droplet with a health gate; stdlib only.

    bankflow-agent deploy BUNDLE_DIR [--release ID]   validate, pull, migrate, start beside the old
                                                       release, health gate, switch nginx, verify
    bankflow-agent receive --stdin [--deploy]          write a bundle sent as JSON on stdin (Pulumi),
                                                       then deploy it
    bankflow-agent rollback [RELEASE]                  the same switch towards a kept release
    bankflow-agent switch-staged RELEASE               a received release, no migrations (a roll)
    bankflow-agent drain | undrain                     fail / pass the load balancer's health check
    bankflow-agent lb-health [--url URL]               the drain state and the listener's answer
    bankflow-agent releases [--json]                   kept releases, current marked
    bankflow-agent status [--json]                     current release and its services
    bankflow-agent logs [SERVICE] [--tail N] [--follow] logs of the current release's app services,
                                                       or of a base service (postgres, redis, nginx)
    bankflow-agent migrate [--release ID]              run the current (or a received) release's
                                                       migrate command (the deploy's step), audited
    bankflow-agent backup | backups | restore          database dumps: see ``backups/__init__.py``
    bankflow-agent uploads-backup | uploads-snapshots | uploads-status | uploads-check | uploads-migrate
                   | uploads-seed | uploads-aside
                                                       uploads (restic): ``backups/uploads_commands.py``
    bankflow-agent backup-watch                        archive lag, newest backup, last runs; alert on
                                                       change (every minute, from a timer)
    bankflow-agent database-roles                      apply the serving release's database roles and
                                                       passwords again (every switch does it)
    bankflow-agent patch [--after-reboot]              maintenance window: upgrade packages (Docker
                                                       too), health gate, reboot if required
    bankflow-agent access-logs-ship                    upload rotated nginx access logs to the
                                                       backups bucket (every 15 minutes, from a timer)

Exit codes: 0 done (or nothing to do), 1 a step failed and the previous release still serves
(also: a file could not be written -- ENOSPC/EIO, the message names it -- with nothing replaced),
2 bad input (usage, manifest, unknown release), 3 another command holds the lock (the message
names it: action, actor, pid, since when), 4 a step failed AND restoring the previous nginx state
failed too (look now).

Every command that changes the host writes an audit line when it starts and one when it ends
(``journal.py``), and starts by reconciling the agent's state with the live host
(``reconcile.py``); read-only commands reconcile too when no other command holds the lock. A
dropped SSH session (SIGHUP, a closed stdout) changes neither the outcome nor the exit code: the
agent ignores SIGHUP while it works and stops writing to a closed stream.

``BANKFLOW_VERIFY_URL`` is the default of ``--verify-url`` (nginx as seen from the host) and
``BANKFLOW_CANDIDATE_URL`` of ``--candidate-url`` (nginx's loopback verify listener): the Pulumi
deploy command's text is fixed, so a host whose nginx is not at the default address -- the
over-SSH tests' host -- says so in the SSH session's environment instead.

This module is the CLI entry only: argparse, dispatch to the command modules, the deploy lock,
and errors mapped to exit codes (``contract.exit_codes``). Runs as ``python3 -m
bankflow_infra.host.agent`` or through the launcher ``/opt/bankflow/bin/bankflow-agent``, which
runs the shipped ``bankflow_infra/host`` directory (``__main__.py``) beside ``contract/``; all
imports are relative.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final, TextIO

from ..contract import exit_codes
from ..contract.layout import HOME_ENV, HOST_ROOT, HostPaths
from ..contract.logs import LOG_TAIL_DEFAULT, tail_lines
from ..contract.release import is_release_id
from ..contract.upstreams import DEFAULT_CANDIDATE_URL
from . import access_logs_ship, database_roles, history, lb_health, patching, patching_fleet
from . import state as st
from .backups import commands as backups
from .backups import uploads_commands as uploads
from .backups import watch as backup_watch
from .context import Context, Options, UsageError, describe
from .deploy import cmd_deploy, cmd_rollback, cmd_switch_staged
from .files import WriteFailed
from .journal import Attempt, new_attempt_id
from .logs import cmd_logs
from .manifest import ManifestError
from .migrate import cmd_migrate
from .receive import cmd_receive
from .reconcile import reconcile
from .runtime import DockerRuntime, Runtime
from .status import cmd_releases, cmd_status
from .verify import parse_nginx_endpoint

VERIFY_URL_ENV: Final = "BANKFLOW_VERIFY_URL"
CANDIDATE_URL_ENV: Final = "BANKFLOW_CANDIDATE_URL"
Handler = Callable[[Context, argparse.Namespace, BinaryIO | None], int]

# subcommand -> (handler, whether it runs under the deploy lock). Whatever changes the host or
# its containers takes the lock, so it never interleaves with a deploy. A new subcommand is its
# parser in build_parser plus one entry here.
COMMANDS: Final[dict[str, tuple[Handler, bool]]] = {
    "deploy": (lambda ctx, a, _: cmd_deploy(ctx, a.bundle, a.release), True),
    "receive": (lambda ctx, a, stdin: cmd_receive(ctx, stdin or sys.stdin.buffer, a.deploy), True),
    "rollback": (lambda ctx, a, _: cmd_rollback(ctx, a.release), True),
    "migrate": (lambda ctx, a, _: cmd_migrate(ctx, a.release), True),
    "switch-staged": (lambda ctx, a, _: cmd_switch_staged(ctx, a.release), True),
    "releases": (lambda ctx, a, _: cmd_releases(ctx, a.json), False),
    "status": (lambda ctx, a, _: cmd_status(ctx, a.json), False),
    "logs": (lambda ctx, a, _: cmd_logs(ctx, a.service, a.tail, a.follow), False),
    **backups.COMMANDS,
    **uploads.COMMANDS,
    **backup_watch.COMMANDS,
    **history.COMMANDS,
    **database_roles.COMMANDS,
    **patching.COMMANDS,
    **patching_fleet.COMMANDS,
    **access_logs_ship.COMMANDS,
    **lb_health.COMMANDS,
}
# the ones taking the switch options
SWITCH_COMMANDS: Final = ("deploy", "rollback", "receive", "switch-staged")


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
    switch.add_argument(
        "--candidate-url",
        default=os.environ.get(CANDIDATE_URL_ENV) or DEFAULT_CANDIDATE_URL,
        help=f"nginx's loopback verify listener (default: ${CANDIDATE_URL_ENV} or {DEFAULT_CANDIDATE_URL})",
    )
    switch.add_argument(
        "--watch", type=float, default=Options.watch, help="seconds of checks after the public switch"
    )
    switch.add_argument("--settle", type=float, default=Options.settle, help=argparse.SUPPRESS)
    switch.add_argument(
        "--drain",
        type=float,
        default=None,
        help="most seconds to wait for in-flight requests before stopping a release "
        "(default: the manifest's drain_seconds per service)",
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
    _register_roll_steps(sub, switch)
    backups.register(sub)
    uploads.register(sub)
    backup_watch.register(sub)
    history.register(sub)
    database_roles.register(sub)
    patching.register(sub)
    patching_fleet.register(sub)
    access_logs_ship.register(sub)
    lb_health.register(sub)
    return parser


def _register_roll_steps(sub: Any, switch: argparse.ArgumentParser) -> None:
    """migrate (also a received release's, once before a roll) and switch-staged (issue 13)."""
    migrate = sub.add_parser("migrate", help="run the current release's migrate command again")
    migrate.add_argument(
        "--release", type=_release_id, help="a received (staged) release's migrations instead (a roll)"
    )
    staged = sub.add_parser(
        "switch-staged",
        parents=[switch],
        help="switch to a received release without running its migrations (a rolling deploy)",
    )
    staged.add_argument("release", type=_release_id)


def _release_id(value: str) -> str:
    if not is_release_id(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a release id (12 lowercase hex digits)")
    return value


def switch_options(args: argparse.Namespace) -> Options:
    if args.command not in SWITCH_COMMANDS:
        return Options()
    return Options(
        health_timeout=args.health_timeout,
        verify_url=args.verify_url,
        verify_timeout=args.verify_timeout,
        settle=args.settle,
        drain=args.drain,
        keep=max(args.keep, 2),
        fresh=args.fresh,
        candidate_url=args.candidate_url,
        watch=args.watch,
        skip_migrate=args.command == "switch-staged",
    )


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
    options = switch_options(args)
    ctx = Context(
        paths, runtime or DockerRuntime(), options, st.actor(args.actor), out or sys.stdout, err or sys.stderr
    )
    hangup = _ignore_hangup()
    try:
        return _run(ctx, args, stdin)
    finally:
        _restore_hangup(hangup)
        if ctx.output_lost and out is None:
            _silence_stdout()


def _run(ctx: Context, args: argparse.Namespace, stdin: BinaryIO | None) -> int:
    handler, locked = COMMANDS[args.command]
    paths, options = ctx.paths, ctx.options
    try:
        parse_nginx_endpoint(options.verify_url)
        parse_nginx_endpoint(options.candidate_url)
        paths.ensure()
        if not locked:
            # backup-watch (every minute) and access-logs-ship (every 15 minutes) only read the
            # release: no `docker compose ls`/`nginx -t` each time.
            if args.command not in backup_watch.COMMANDS and args.command not in access_logs_ship.COMMANDS:
                _reconcile_if_idle(ctx, args.command)
            if args.command not in backups.AUDITED | uploads.AUDITED:
                return handler(ctx, args, stdin)
            return _attempt(ctx, args, stdin)
        with st.exclusive_lock(paths.lock, args.command, ctx.actor):
            # deploy and receive check their input first, then reconcile (deploy.py, receive.py)
            return _attempt(ctx, args, stdin, reconcile_first=args.command not in ("deploy", "receive"))
    except st.LockBusy as exc:
        ctx.complain(f"{args.command}: refused: {exc}")
        st.audit(paths.audit_log, ctx.actor, args.command, None, "refused", str(exc))
        return exit_codes.LOCKED
    except (ManifestError, UsageError, ValueError) as exc:
        ctx.complain(f"{args.command}: {exc}")
        if ctx.attempt:
            ctx.audit(args.command, None, "refused", str(exc))
        return exit_codes.USAGE
    except Exception as exc:  # a full disk, a runtime gone: one line naming it, on record, no traceback
        message = f"{args.command}: failed: {describe(exc) if not isinstance(exc, WriteFailed) else exc}"
        ctx.complain(message)
        if ctx.attempt:
            ctx.audit(args.command, None, "failed", message)
        return exit_codes.FAILED


def _attempt(
    ctx: Context, args: argparse.Namespace, stdin: BinaryIO | None, reconcile_first: bool = False
) -> int:
    """The command as one audited attempt: a "started" line, then its end line."""
    handler, _ = COMMANDS[args.command]
    ctx.attempt = new_attempt_id()
    # `receive --deploy` (what Pulumi runs) is a deploy on record, as its end line says
    action = "deploy" if args.command == "receive" and args.deploy else args.command
    if not Attempt(ctx.attempt, action, ctx.actor).begin(ctx.paths, f"{args.command}: started"):
        ctx.complain(f"{args.command}: the audit line could not be written to {ctx.paths.audit_log}")
    if reconcile_first:
        reconcile(ctx)
    code = handler(ctx, args, stdin)
    if not ctx.ended:
        ctx.audit(args.command, None, "ok" if code == exit_codes.OK else "failed", f"exit {code}")
    return code


def _reconcile_if_idle(ctx: Context, command: str) -> None:
    """Read-only commands reconcile too, unless a command holds the lock (then nothing is touched)."""
    with (
        contextlib.suppress(st.LockBusy),
        st.exclusive_lock(ctx.paths.lock, f"{command} (reconcile)", ctx.actor),
    ):
        reconcile(ctx)


def _ignore_hangup() -> object:
    # sshd sends SIGHUP when the session drops: a switch half done is worse than one nobody watches
    try:
        return signal.signal(signal.SIGHUP, signal.SIG_IGN)
    except ValueError:  # not the main thread (tests running the agent in a thread)
        return None


def _restore_hangup(previous: object) -> None:
    if previous is not None:
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGHUP, previous)  # type: ignore[arg-type]


def _silence_stdout() -> None:
    """stdout is a closed pipe: point fd 1 and 2 at /dev/null so the interpreter's final flush
    cannot turn a done command into exit 120."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    raise SystemExit(main())
