"""A real PostgreSQL 15 cluster archiving WAL to a real pgBackRest 2.45 repository (posix, in a
temp dir, encrypted aes-256-cbc), and a local Slack stand-in: an HTTP server on 127.0.0.1 that
records what is posted. Used by the backup-watch tests and the restore-drill test.

The cluster is tests/support/postgres.py's, switched to archiving (archive_mode needs a restart:
``pg_ctl restart`` reuses the start options). As root, PostgreSQL and pgBackRest run as the
cluster's owner (``runuser``), as the archiver does on the host. The source side keeps its
cipher pass in its 0600 pgbackrest.conf, as the host does; the drill gets it from the environment.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.postgres import SUPERUSER, PgCluster, start_cluster
from tests.support.tools import require_tool

STANZA = "bankflow"
CIPHER_PASS = "drill-test-cipher-pass-0123456789"  # noqa: S105 - a test value


@dataclass
class Archiving:
    pg: PgCluster
    pgbackrest: str

    @property
    def repo(self) -> Path:
        return self.pg.root / "repo"

    @property
    def config(self) -> Path:
        return self.pg.root / "pgbackrest.conf"

    def as_owner(self, argv: Sequence[str]) -> list[str]:
        return self.pg._as_owner(argv)

    def pgbackrest_argv(self, *args: str) -> list[str]:
        return self.as_owner([self.pgbackrest, f"--config={self.config}", f"--stanza={STANZA}", *args])

    def run_pgbackrest(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(self.pgbackrest_argv(*args), capture_output=True, text=True, timeout=timeout,
                              check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"pgbackrest {args[0]} failed: {done.stderr.strip()[-1500:]}")
        return done.stdout

    def set_archive_command(self, command: str) -> None:
        self.pg.psql(f"ALTER SYSTEM SET archive_command = '{command}'", "postgres")
        self.pg.psql("SELECT pg_reload_conf()", "postgres")

    def push_command(self) -> str:
        return f"{self.pgbackrest} --config={self.config} --stanza={STANZA} archive-push %p"

    def ready_files(self) -> list[Path]:
        return sorted((self.pg.data / "pg_wal" / "archive_status").glob("*.ready"))

    def wait_archived(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ready_files():
            if time.monotonic() > deadline:
                raise RuntimeError(f"WAL not archived within {timeout} s: {self.ready_files()}")
            time.sleep(0.2)


def _owned_dir(path: Path, owner: str | None) -> None:
    path.mkdir(mode=0o700)
    if owner:
        info = pwd.getpwnam(owner)
        os.chown(path, info.pw_uid, info.pw_gid)


def start_archiving_cluster() -> Archiving:
    """A cluster archiving to a fresh stanza (created), with no backup yet."""
    pgbackrest = require_tool("pgbackrest")
    pg = start_cluster()
    rig = Archiving(pg, pgbackrest)
    try:
        for name in ("repo", "pgbr-log", "pgbr-spool"):
            _owned_dir(pg.root / name, pg.owner)
        rig.config.write_text(
            "[global]\n"
            f"repo1-path={rig.repo}\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass={CIPHER_PASS}\n"
            "repo1-retention-full=2\n"
            f"log-path={pg.root / 'pgbr-log'}\nlock-path={pg.root / 'pgbr-log'}\n"
            f"spool-path={pg.root / 'pgbr-spool'}\n"
            "log-level-console=warn\nlog-level-file=off\nstart-fast=y\n"
            f"[{STANZA}]\npg1-path={pg.data}\npg1-socket-path={pg.socket_dir}\npg1-port={pg.port}\n"
            f"pg1-user={SUPERUSER}\n"
        )
        os.chmod(rig.config, 0o600)
        if pg.owner:
            info = pwd.getpwnam(pg.owner)
            os.chown(rig.config, info.pw_uid, info.pw_gid)
        for sql in ("ALTER SYSTEM SET archive_mode = on", "ALTER SYSTEM SET wal_level = replica",
                    f"ALTER SYSTEM SET archive_command = '{rig.push_command()}'"):  # fmt: skip
            pg.psql(sql, "postgres")
        restart = subprocess.run(
            rig.as_owner([pg.bins["pg_ctl"], "-D", str(pg.data), "-l", str(pg.root / "server.log"),
                          "-m", "fast", "-w", "-t", "60", "restart"]),
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        if restart.returncode != 0:
            raise RuntimeError(f"pg_ctl restart failed: {restart.stderr.strip()}")
        rig.run_pgbackrest("stanza-create")
    except BaseException:
        pg.stop()
        raise
    return rig


# --------------------------------------------------------------------------- the Slack stand-in


@dataclass
class Webhook:
    """An HTTP server on 127.0.0.1 recording each POSTed JSON body; answers ``status``."""

    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200

    def texts(self) -> list[str]:
        return [str(p.get("text", "")) for p in self.posts]


@contextmanager
def local_webhook() -> Iterator[Webhook]:
    hook = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if hook.status == 200:
                hook.posts.append(json.loads(body))
            self.send_response(hook.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/hook-secret-path"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
