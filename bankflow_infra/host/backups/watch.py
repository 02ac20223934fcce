"""``bankflow-agent backup-watch``: nothing about backups fails silently. Stdlib only.

Run every minute by ``bankflow-backup-watch.timer``. It asks PostgreSQL (psql in the postgres
container) how far WAL archiving lags, pgBackRest (``info --output=json`` in the same container)
when the newest backup finished, and the audit log how the last backup runs ended
(``watch_checks``); it posts what changed to the stack's Slack webhook, de-duplicated
(``watch_alerts``), and prints one line per check. Exit 0 when every check passes, 1 when one
fails (the unit's failed runs show in ``systemctl --failed`` and the journal), 2 on bad input.

Without a webhook (the stack configured only e-mail alerts) the checks still run and fail the
unit, and ``health --backups`` reports them; nothing is posted.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

from ...contract.alerts import WATCH_STATE_FILE, WATCHED_RUNS
from ...contract.exit_codes import FAILED, OK
from ...contract.pgbackrest import STANZA, clean
from ..context import Context
from ..runtime import RuntimeFailure
from .config import load_live_database
from .watch_alerts import (
    AlertsConfigError,
    load_alerts_config,
    load_state,
    next_state,
    plan_messages,
    post,
    save_state,
    slack_payload,
)
from .watch_checks import (
    ARCHIVE_SQL,
    Check,
    WatchInputError,
    archive_check,
    backup_age_check,
    last_runs,
    parse_archive_row,
    parse_pgbackrest_info,
    run_checks,
)

# In the postgres container, as its superuser over the local socket; file logging off so a run
# as another user never leaves a log file the archiver cannot write.
PSQL_ARGV: Final = ("psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "--no-password", "-d", "postgres")
PGBACKREST_INFO_ARGV: Final = ("pgbackrest", f"--stanza={STANZA}", "--log-level-file=off",
                               "--log-level-console=off", "--output=json", "info")  # fmt: skip
EXEC_TIMEOUT: Final = 60.0
AUDIT_TAIL_BYTES: Final = 512 * 1024  # the last runs are at the end; the log may be large

Exec = Callable[[Sequence[str]], str]  # argv in the postgres container -> stdout


def gather_checks(exec_in_postgres: Exec, user: str, audit_log: Path, now: datetime) -> list[Check]:
    """Every check; a source that cannot be read fails its check with the reason."""
    try:
        row = exec_in_postgres([*PSQL_ARGV, "-U", user, "-c", ARCHIVE_SQL])
        archive = archive_check(parse_archive_row(row))
    except (RuntimeFailure, WatchInputError, OSError) as exc:
        archive = archive_check(None, clean(str(exc)))
    try:
        newest = parse_pgbackrest_info(exec_in_postgres(PGBACKREST_INFO_ARGV))
        age = backup_age_check(newest, now)
    except (RuntimeFailure, WatchInputError, OSError) as exc:
        age = backup_age_check(None, now, clean(str(exc)))
    return [archive, age, *run_checks(last_runs(_audit_tail(audit_log), WATCHED_RUNS), WATCHED_RUNS)]


def _audit_tail(path: Path) -> list[str]:
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(size - AUDIT_TAIL_BYTES, 0))
            return handle.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return []


def run_watch(ctx: Context, exec_in_postgres: Exec, user: str, now: datetime | None = None) -> int:
    """The checks, the alerts that are due, the state; the exit code."""
    now = now or datetime.now(UTC)
    try:
        config = load_alerts_config(ctx.paths.secrets)
    except AlertsConfigError as exc:
        ctx.complain(f"backup-watch: {exc}: alerts cannot be posted")
        config = None
    checks = gather_checks(exec_in_postgres, user, ctx.paths.audit_log, now)
    state_path = ctx.paths.state / WATCH_STATE_FILE
    state = load_state(state_path)
    delivered = []
    for message in plan_messages(state, checks, now):
        if config is None:
            ctx.complain(f"backup-watch: no webhook configured, not posted: {message.text}")
            continue
        problem = post(config.slack_url, slack_payload(config, socket.gethostname(), message))
        if problem is None:
            delivered.append(message)
        else:
            ctx.complain(f"backup-watch: alert {message.kind} for {message.key} {problem}; retried next run")
    save_state(state_path, next_state(state, checks, delivered, now))
    for check in checks:
        line = f"{'FAIL' if check.failing else 'ok'}  {check.key}: {check.summary}"
        (ctx.complain if check.failing else ctx.say)(line)
    return FAILED if any(c.failing for c in checks) else OK


def cmd_backup_watch(ctx: Context, _args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    live = load_live_database(ctx)  # BackupUsageError (exit 2) when nothing is deployed

    def exec_in_postgres(argv: Sequence[str]) -> str:
        return ctx.runtime.exec(live.base, live.config.service, list(argv), timeout=EXEC_TIMEOUT)

    return run_watch(ctx, exec_in_postgres, live.config.user)


Handler = Callable[[Context, argparse.Namespace, "BinaryIO | None"], int]
# subcommand -> (handler, under the deploy lock): read-only, never waits for a deploy
COMMANDS: Final[dict[str, tuple[Handler, bool]]] = {"backup-watch": (cmd_backup_watch, False)}


def register(sub: Any) -> None:
    sub.add_parser(
        "backup-watch",
        help="check WAL archive lag, the newest backup's age and the last backup runs; alert on change",
    )
