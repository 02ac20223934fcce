"""The day-2 commands that drive the host agent over SSH (transport: ops/ssh.py).

    bankflow-infra ssh STACK [--user NAME] [-- CMD...]        a shell (or CMD) on the stack's droplet
    bankflow-infra logs STACK [SERVICE] [--tail N] [--follow] the serving containers' logs
    bankflow-infra releases STACK [--json]                    kept releases, current marked
    bankflow-infra rollback STACK [RELEASE] [--yes]           switch back (default: the previous);
                                                              behind a load balancer every droplet,
                                                              one at a time, drained while it switches
    bankflow-infra migrate STACK                              re-run the current release's migrations

Exit codes: the host agent's (0 done, 1 a step failed and the previous release still serves,
2 bad input, 3 another deploy holds the lock, 4 a step failed and restoring nginx failed too);
2 also for everything refused before connecting (outputs, arguments, host key mismatch, no ssh
client, no server in the stack); 255 when ssh could not connect or authenticate (nothing ran);
130 when interrupted. ``ssh STACK -- CMD`` exits with CMD's code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bankflow_infra.catalog import LIMITS
from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.logs import tail_lines
from bankflow_infra.contract.outputs import StackOutputs
from bankflow_infra.contract.services import APP_SERVICES
from bankflow_infra.ops.cli import session
from bankflow_infra.ops.cli.session import add_outputs_arguments
from bankflow_infra.ops.roll import roll, rollback_step, summary
from bankflow_infra.ops.roll_ssh import SshRollTransport, fleet_targets
from bankflow_infra.ops.ssh import RemoteError, SshSession, ssh_session
from bankflow_infra.ops.status_inputs import InputError, release_argument
from bankflow_infra.settings.server import OPERATOR_NAME_RE as OPERATOR_NAME


def catalog_services() -> tuple[str, ...]:
    """Every service name the catalog runs: app services first, then the base services.

    The catalog sets limits for each service it runs, app and base, in every environment; its
    list of base services needs a stack's settings, which the ops CLI never reads.
    """
    names = dict.fromkeys(APP_SERVICES)
    for per_service in LIMITS.values():
        names.update(dict.fromkeys(per_service))
    return tuple(names)


def register(commands: Any) -> None:
    _register_ssh(commands)
    _register_logs(commands)
    _register_releases(commands)


def _register_ssh(commands: Any) -> None:
    ssh = commands.add_parser(
        "ssh",
        help="a shell, or one command, on the stack's droplet (pinned host key)",
        description="Open a login shell on the stack's droplet, or run CMD there: "
        "`bankflow-infra ssh staging --user ana -- sudo docker ps`. CMD's words are quoted one by "
        "one, so shell syntax needs an explicit shell: `-- sh -c 'docker ps | grep api'`. "
        "root admits only the stack's deploy key, whose forced command runs the host agent and "
        "nothing else: a shell or any other command needs your own operator account "
        "(bankflow:server.operators) with --user and your own key (ssh-agent or ~/.ssh).",
    )
    add_outputs_arguments(ssh)
    ssh.add_argument(
        "--user",
        type=_operator_name,
        default=None,
        help="log in as this operator account with your own keys (default: root with the deploy key)",
    )
    # REMAINDER keeps CMD's own options (`-- ls -la`) away from argparse; _split_ssh_rest takes
    # our options back when they were written after STACK.
    ssh.add_argument("remote", nargs=argparse.REMAINDER, metavar="-- CMD", help="command to run instead")
    ssh.set_defaults(handler=run_ssh)


def _register_logs(commands: Any) -> None:
    logs = commands.add_parser(
        "logs",
        help="logs of the serving containers: the app services, or one service",
        description="Print the logs of the current release's containers (all app services, or "
        f"SERVICE: one of {', '.join(catalog_services())}).",
    )
    add_outputs_arguments(logs)
    logs.add_argument(
        "service", nargs="?", metavar="SERVICE", help="one service (default: every app service)"
    )
    logs.add_argument(
        "--tail",
        type=tail_lines,
        default=None,
        metavar="N",
        help="lines per service (default: the host agent's)",
    )
    logs.add_argument("--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.set_defaults(handler=run_logs)


def _register_releases(commands: Any) -> None:
    """releases, rollback and migrate: the release switch's commands."""
    releases = commands.add_parser("releases", help="the releases kept on the droplet, current marked")
    add_outputs_arguments(releases)
    releases.add_argument("--json", action="store_true", help="one JSON document")
    releases.set_defaults(handler=run_releases)

    rollback = commands.add_parser(
        "rollback",
        help="switch the droplet back to a kept release (health-gated, like a deploy)",
        description="Switch to RELEASE (default: the previous one) behind the same health gate as a "
        "deploy. Asks for confirmation; without a terminal it needs --yes.",
    )
    add_outputs_arguments(rollback)
    rollback.add_argument(
        "release",
        nargs="?",
        metavar="RELEASE",
        help="release id, 12 hex digits as `releases` lists them (checked before connecting)",
    )
    rollback.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rollback.set_defaults(handler=run_rollback)

    migrate = commands.add_parser(
        "migrate", help="run the current release's migrate command again (audited on the host)"
    )
    add_outputs_arguments(migrate)
    migrate.set_defaults(handler=run_migrate)


# --------------------------------------------------------------------------- plumbing


def _split_ssh_rest(rest: Sequence[str]) -> tuple[list[str], list[str]]:
    """(our options, CMD) from what followed STACK: options are only allowed before ``--``."""
    words = list(rest)
    if not words or not words[0].startswith("-"):
        return [], words  # `ssh STACK CMD...` or `ssh STACK -- CMD...` (argparse ate that `--`)
    if "--" in words:
        at = words.index("--")
        return words[:at], words[at + 1 :]
    return words, []


def _our_options(words: list[str]) -> argparse.Namespace | None:
    """--outputs/--project-dir written after STACK; None when anything else is there."""
    parser = argparse.ArgumentParser(prog="bankflow-infra ssh STACK", add_help=False, exit_on_error=False)
    parser.add_argument("--outputs", type=Path, default=None)
    parser.add_argument("--project-dir", type=Path, default=None)
    parser.add_argument("--user", default=None)  # checked by run_ssh, with its own message
    try:
        parsed, extras = parser.parse_known_args(words)
    except argparse.ArgumentError:
        return None
    return None if extras else parsed


# --------------------------------------------------------------------------- handlers


def _remote(args: argparse.Namespace, command: str, action: Callable[[SshSession], int]) -> int:
    def on_host(_outputs: StackOutputs, ssh: SshSession) -> int:
        return action(ssh)

    return session.with_remote(args, command, on_host)


def run_ssh(args: argparse.Namespace) -> int:
    options, command = _split_ssh_rest(args.remote)
    if options:
        parsed = _our_options(options)
        if parsed is None:
            session.error("ssh", f"unknown option(s) {' '.join(options)}: put the remote command after `--`")
            return exit_codes.USAGE
        args.outputs = parsed.outputs or args.outputs
        args.project_dir = parsed.project_dir or args.project_dir
        if parsed.user is not None:
            try:
                args.user = _operator_name(parsed.user)
            except argparse.ArgumentTypeError as problem:
                session.error("ssh", f"--user: {problem}")
                return exit_codes.USAGE
    return _remote(args, "ssh", lambda ssh: ssh.shell(command or None, args.user))


def _operator_name(value: str) -> str:
    """An operator account name as server.operators accepts it (checked before connecting)."""
    if not OPERATOR_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an operator account name (lowercase letter first, then lowercase "
            "letters, digits, - or _, at most 32; see bankflow:server.operators)"
        )
    return value


def run_logs(args: argparse.Namespace) -> int:
    services = catalog_services()
    if args.service is not None and args.service not in services:
        session.error(
            "logs", f"unknown service {args.service!r}; the catalog's services are {', '.join(services)}"
        )
        return exit_codes.USAGE
    agent_args = ["logs"]
    if args.service is not None:
        agent_args.append(args.service)
    if args.tail is not None:
        agent_args += ["--tail", str(args.tail)]
    if args.follow:
        agent_args.append("--follow")
    # Following on a terminal gets a remote tty: Ctrl-C then hangs up the remote `logs` at once
    # instead of leaving it until its next line meets the closed connection.
    tty = args.follow and sys.stdin.isatty() and sys.stdout.isatty()
    return _remote(args, "logs", lambda ssh: ssh.run_agent(agent_args, tty=tty).returncode)


def run_releases(args: argparse.Namespace) -> int:
    agent_args = ["releases", "--json"] if args.json else ["releases"]
    return _remote(args, "releases", lambda ssh: ssh.run_agent(agent_args).returncode)


def run_migrate(args: argparse.Namespace) -> int:
    return _remote(args, "migrate", lambda ssh: ssh.run_agent(["migrate"]).returncode)


def run_rollback(args: argparse.Namespace) -> int:
    if not args.yes and not session.has_terminal():
        # Checked before anything else: a script must say --yes, never hang on a prompt or
        # roll production back because nobody was there to answer.
        session.error("rollback", "not a terminal: refusing to roll back without --yes")
        return exit_codes.USAGE

    if args.release is not None:
        try:
            # Before the outputs are even read: a bad id never reaches a connection.
            args.release = release_argument(args.release)
        except InputError as refused:
            session.error("rollback", str(refused))
            return exit_codes.USAGE

    def action(ssh: SshSession) -> int:
        if not args.yes:
            answer = _confirm(ssh, args.stack, args.release)
            if answer is not None:
                return answer
        agent_args = ["rollback", *([args.release] if args.release else [])]
        return ssh.run_agent(agent_args).returncode

    def run() -> int:
        outputs = session.load(args, show_secrets=True)
        if len(outputs.origin_ips) > 1:  # behind the load balancer: one droplet at a time
            return rollback_fleet(outputs, args.release, args.yes)
        with ssh_session(outputs, note=session.note) as ssh:
            return action(ssh)

    return session.guarded("rollback", run)


def rollback_fleet(outputs: StackOutputs, release: str | None, yes: bool) -> int:
    """``rollback`` on every droplet in roll order, each drained at the load balancer while it
    switches (ops/roll.py); a failure puts the droplets already switched back and exits 1."""
    targets = fleet_targets(outputs)
    to = release or "each droplet's previous release"
    names = ", ".join(t.name for t in targets)
    print(
        f"stack {outputs.stack}: roll back {names} to {to}, one at a time behind the load balancer",
        file=sys.stderr,
    )
    if not yes and not session.confirmed("Proceed? [y/N] "):
        session.error("rollback", "not confirmed; nothing changed")
        return session.DECLINED
    # no usable deploy key in the outputs: ssh falls back to the ssh-agent, as for one droplet
    transport = SshRollTransport(outputs.stack, outputs.deploy_private_key or "", note=session.note)
    result = roll(
        targets,
        rollback_step(release),
        transport,
        say=lambda text: print(f"{session.PROGRAM} rollback: {text}", file=sys.stderr, flush=True),
    )
    print(f"{session.PROGRAM} {summary(result)}", file=sys.stderr)
    return exit_codes.OK if result.ok else exit_codes.FAILED


def _confirm(ssh: SshSession, stack: str, release: str | None) -> int | None:
    """Show what would switch and ask; None to go on, else the exit code to stop with."""
    listed = ssh.run_agent(["releases", "--json"], capture=True)
    if listed.returncode != 0:
        return listed.returncode
    try:
        rows = json.loads(listed.stdout)
        current = next((r["release"] for r in rows if r.get("current")), None)
        target = release or next((r["release"] for r in rows if r.get("previous")), None)
        kept = [str(r["release"]) for r in rows]
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise RemoteError(f"unexpected `releases --json` answer from stack {stack!r}: {error}") from None
    if target is None or target not in kept:
        session.error(
            "rollback",
            f"no kept release {target or '(previous)'} on stack {stack!r}; kept: {', '.join(kept) or 'none'}",
        )
        return exit_codes.USAGE
    print(f"stack {stack}: roll back from release {current or '(none)'} to {target}", file=sys.stderr)
    if not session.confirmed("Proceed? [y/N] "):
        session.error("rollback", "not confirmed; nothing changed")
        return session.DECLINED
    return None
