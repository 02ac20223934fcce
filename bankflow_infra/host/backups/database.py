"""The database through the runtime: SQL, pg_restore and the swap, in the postgres container
over its local socket (no password). Stdlib only.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..context import Context
from ..runtime import RuntimeFailure
from .config import BackupUsageError, LiveDatabase

DUMP_TIMEOUT: Final = 2 * 3600.0  # the systemd unit's TimeoutStartSec
SQL_TIMEOUT: Final = 600.0
SWAP_ATTEMPTS: Final = 3


@dataclass
class PostgresClient:
    """SQL and pg_restore in the postgres container, over its local socket (no password)."""

    ctx: Context
    live: LiveDatabase  # whose postgres service
    deadline: float | None = None  # time.monotonic() by which everything must be done (restore)

    def _timeout(self, default: float) -> float:
        if self.deadline is None:
            return default
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeFailure("the restore's deadline has passed")
        return min(default, remaining)

    def psql(self, sql: str, database: str = "postgres") -> str:
        config = self.live.config
        argv = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "--no-password", "-U", config.user,
                "-d", database, "-c", sql]  # fmt: skip
        return self.ctx.runtime.exec(self.live.base, config.service, argv, timeout=self._timeout(SQL_TIMEOUT))

    def exists(self, database: str) -> bool:
        query = f"SELECT 1 FROM pg_database WHERE datname = {_literal(database)}"  # noqa: S608 - quoted
        return self.psql(query).strip() == "1"

    def create_like(self, database: str, model: str) -> None:
        """An empty database with ``model``'s encoding and locale (the cluster's defaults without one)."""
        owner = _ident(self.live.config.user)
        options = f"TEMPLATE template0 OWNER {owner}"
        if self.exists(model):
            row = self.psql(
                "SELECT pg_encoding_to_char(encoding), datcollate, datctype, datlocprovider, "  # noqa: S608
                f"coalesce(daticulocale, '') FROM pg_database WHERE datname = {_literal(model)}"
            ).strip()
            encoding, collate, ctype, provider, icu = [*row.split("|"), "", "", "", "", ""][:5]
            options += (
                f" ENCODING {_literal(encoding)} LC_COLLATE {_literal(collate)} LC_CTYPE {_literal(ctype)}"
            )
            if provider == "i":
                options += f" LOCALE_PROVIDER icu ICU_LOCALE {_literal(icu)}"
        self.psql(f"CREATE DATABASE {_ident(database)} WITH {options}")

    def drop(self, database: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {_ident(database)} WITH (FORCE)")

    def restore(self, dump: Path, database: str) -> None:
        config = self.live.config
        argv = ["pg_restore", "--exit-on-error", "--single-transaction", "--no-password", "-U", config.user,
                "-d", database]  # fmt: skip
        timeout = self._timeout(DUMP_TIMEOUT)
        self.ctx.runtime.exec(self.live.base, config.service, argv, stdin_path=dump, timeout=timeout)

    def apply_globals(self, globals_sql: Path) -> str:
        """``pg_dumpall --globals-only`` output (roles without passwords): roles the dump's owners
        and grants name exist before pg_restore. Not ON_ERROR_STOP: a role that exists already
        ("already exists") is what we want; role passwords stay the bundle's (applied on deploy)."""
        argv = ["psql", "-X", "-q", "--no-password", "-U", self.live.config.user, "-d", "postgres"]
        return self.ctx.runtime.exec(
            self.live.base, self.live.config.service, argv, stdin_path=globals_sql,
            timeout=self._timeout(SQL_TIMEOUT),
        )  # fmt: skip

    def leftovers(self, database: str) -> list[str]:
        """``<database>_before_restore_*``: what earlier dump restores kept."""
        pattern = _literal(database.replace("_", "\\_") + "\\_before\\_restore\\_%")
        return self.psql(f"SELECT datname FROM pg_database WHERE datname LIKE {pattern} ORDER BY 1").split()  # noqa: S608

    def list_archive(self, dump: Path) -> str:
        return self.ctx.runtime.exec(
            self.live.base, self.live.config.service, ["pg_restore", "--list"], stdin_path=dump,
            timeout=self._timeout(SQL_TIMEOUT),
        )  # fmt: skip

    def swap(self, live: str, restored: str, previous: str) -> bool:
        """``restored`` becomes ``live`` in one transaction; the old one is renamed ``previous``.
        Returns whether there was a live database to keep."""
        had_live = self.exists(live)
        statements = [f"ALTER DATABASE {_ident(restored)} RENAME TO {_ident(live)}"]
        if had_live:
            statements.insert(0, f"ALTER DATABASE {_ident(live)} RENAME TO {_ident(previous)}")
        terminate = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "  # noqa: S608 - quoted literals
            f"WHERE datname IN ({_literal(live)}, {_literal(restored)}) AND pid <> pg_backend_pid()"
        )
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            self.psql(terminate)
            try:
                self.psql("BEGIN; " + "; ".join(statements) + "; COMMIT;")
                return had_live
            except RuntimeFailure as exc:
                if "being accessed by other users" not in str(exc) or attempt == SWAP_ATTEMPTS:
                    raise
                self.ctx.sleep(1.0)
        return had_live  # pragma: no cover - the loop returns or raises


def _ident(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise BackupUsageError(f"refusing database identifier {name!r}")
    return f'"{name}"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"

