"""``bankflow-infra rotate-secrets STACK``: new generated passwords, applied by the next deploy.

The passwords are ``random.RandomPassword`` resources of the Credentials component; a new value
is a replacement of the resource (``pulumi up --replace URN``). The same ``up`` renders a bundle
with the new values and the host agent applies them to the running cluster before the new apps
start (host/database_roles.py), so rotation is one command and nothing else.

Rotated: the superuser's and the app role's database passwords and the Redis password (the base
service is recreated with it and the apps restart with the new URL in the same switch). The JWT
secret only with ``--with-jwt``: every token already issued stops verifying, i.e. every user is
logged out. Never: the backup cipher pass (pgBackRest cannot re-encrypt a repository; the resource
is protected), the uploads repository password (restic's key: ``restic key add``/``key remove`` on
the host first), the SSH deploy/host keys (the host key is in user_data: a new droplet).

Exit codes: 0 done (or dry run), 1 the ``up`` failed, 2 bad input or refused, nothing changed.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bankflow_infra import stackfile
from bankflow_infra.contract import exit_codes, grammar
from bankflow_infra.ops.cli import session
from bankflow_infra.ops.stack_access import PulumiError, PulumiMissing, Runner, StackAccess, up_argv

COMMAND: Final = "rotate-secrets"
# The Credentials component as program.py declares it: `Credentials("credentials")`, top level.
CREDENTIALS_PARENT: Final = "bankflow:index:Credentials"
PASSWORD_TYPE: Final = "random:index/randomPassword:RandomPassword"  # noqa: S105 - a type token
CREDENTIALS_NAME: Final = "credentials"


@dataclass(frozen=True)
class Secret:
    kind: str  # the resource name's suffix (components/credentials.py)
    what: str
    effect: str


ROTATED: Final = (
    Secret("postgres-password", "PostgreSQL superuser password", "applied to the cluster by the agent"),
    Secret("database-app-password", "app role (bankflow_app) password", "applied by the agent; apps restart"),
    Secret("redis-password", "Redis password", "redis recreated, apps restart with the new URL"),
)
JWT: Final = Secret("jwt-secret", "JWT signing secret", "every issued token stops verifying: users log out")
NEVER: Final = (
    ("backup cipher pass", "pgBackRest cannot re-encrypt its repository; the resource is protected"),
    ("uploads repository password", "restic's repository key; change it on the host with `restic key`"),
    ("SSH deploy and host keys", "the host key is in the droplet's user_data: a replacement droplet"),
)


def password_urn(stack: str, project: str, kind: str) -> str:
    """The URN of one generated password (tests/program/urns/*.txt lists them)."""
    return f"urn:pulumi:{stack}::{project}::{CREDENTIALS_PARENT}${PASSWORD_TYPE}::{CREDENTIALS_NAME}-{kind}"


def rotated(with_jwt: bool) -> tuple[Secret, ...]:
    return (*ROTATED, JWT) if with_jwt else ROTATED


def rotate_argv(stack: str, project: str, secrets: tuple[Secret, ...]) -> list[str]:
    """``pulumi up -s STACK --yes --replace URN ...``: `--yes` still previews (a protected
    resource stops it there)."""
    argv = list(up_argv(stack))
    for secret in secrets:
        argv += ["--replace", password_urn(stack, project, secret.kind)]
    return argv


def plan_lines(stack: str, secrets: tuple[Secret, ...], with_jwt: bool) -> list[str]:
    lines = [f"Generated secrets of stack {stack}:"]
    lines += [f"  replace  {s.what} ({CREDENTIALS_NAME}-{s.kind}): {s.effect}" for s in secrets]
    if not with_jwt:
        lines.append(f"  keep     {JWT.what}: pass --with-jwt to rotate it ({JWT.effect})")
    lines += [f"  keep     {what}: {why}" for what, why in NEVER]
    return lines


Confirm = Callable[[str], bool]


def _checked_project(args: argparse.Namespace) -> str:
    """The project's name once STACK is a valid name with a committed stack file; else raises."""
    if not grammar.is_stack_name(args.stack):
        raise stackfile.StackFileError(f"STACK {args.stack!r}: must be {grammar.STACK_NAME_RULE}")
    return stackfile.read_stack_file(args.project_dir or Path.cwd(), args.stack).project


def _backend_problem(access: StackAccess, stack: str) -> str | None:
    """Why STACK cannot be rotated in the state backend (read-only, bounded query); None: it can."""
    try:
        known = access.stack_names()
    except PulumiError as problem:
        return str(problem)
    if stack not in known:
        return f"no stack {stack!r} in the state backend; stacks there: {', '.join(known) or 'none'}"
    return None


def _confirmed(args: argparse.Namespace, count: int, confirm: Confirm | None) -> int | None:
    """None when it may run; else the exit code (nothing was run)."""
    if args.yes:
        return None
    if confirm is None:
        session.error(COMMAND, "not running without --yes when there is no terminal to confirm on")
        return exit_codes.USAGE
    if not confirm(f"Replace these {count} secrets of {args.stack} and deploy? [y/N] "):
        session.error(COMMAND, "declined; nothing was run")
        return session.DECLINED
    return None


def run_command(args: argparse.Namespace, runner: Runner, confirm: Confirm | None) -> int:
    """Check (stack name, stack file, state backend), print, confirm, run: nothing changes
    before the `up`, and bad input is one error before anything is printed or run."""
    access = StackAccess(runner, args.project_dir)
    try:
        project = _checked_project(args)
    except stackfile.StackFileError as problem:
        session.error(COMMAND, str(problem))
        return exit_codes.USAGE
    refusal = None if args.dry_run else _backend_problem(access, args.stack)
    if refusal is not None:
        session.error(COMMAND, refusal)
        return exit_codes.USAGE
    secrets = rotated(args.with_jwt)
    argv = rotate_argv(args.stack, project, secrets)
    print("\n".join(plan_lines(args.stack, secrets, args.with_jwt)))
    print(f"Command: {shlex.join(argv)}")
    if args.dry_run:
        print("Dry run: nothing was run.")
        return exit_codes.OK
    refused = _confirmed(args, len(secrets), confirm)
    if refused is not None:
        return refused
    try:
        code = access.run_step(argv)
    except PulumiMissing as missing:
        session.error(COMMAND, str(missing))
        return exit_codes.USAGE
    if code != 0:
        session.error(COMMAND, f"`pulumi up` exited {code}; the stack keeps whatever that up applied. "
                      f"Run again: {shlex.join(argv)}")  # fmt: skip
        return exit_codes.FAILED
    print(f"Rotated; the deploy applied the database passwords on the host. Check: "
          f"bankflow-infra health {args.stack}")  # fmt: skip
    return exit_codes.OK


def register(commands: Any) -> None:
    rotate = commands.add_parser(
        COMMAND, help="replace STACK's generated database/Redis passwords; the deploy applies them",
        description="`pulumi up --replace` of the generated passwords (PostgreSQL superuser, app role, "
        "Redis; JWT with --with-jwt). The same up deploys a bundle with the new values and the host "
        "agent applies the database passwords to the running cluster before the new apps start. "
        "The backup cipher pass and the uploads repository password are never rotated.")  # fmt: skip
    rotate.add_argument("stack", metavar="STACK", help="the stack (e.g. production)")
    rotate.add_argument("--with-jwt", action="store_true", help="also the JWT secret (logs every user out)")
    rotate.add_argument("--dry-run", action="store_true", help="print the plan and the command, run nothing")
    rotate.add_argument("--yes", action="store_true", help="do not ask (required without a TTY)")
    rotate.add_argument(
        "--project-dir",
        type=Path,
        default=None,
        help="directory holding Pulumi.yaml, where pulumi runs (default: current directory)",
    )
    rotate.set_defaults(handler=lambda args: run_command(
        args, subprocess.run, session.confirmed if session.has_terminal() else None))  # fmt: skip
