"""A throw-away PostgreSQL 15 cluster on a unix socket in a temp dir (real PostgreSQL).

initdb refuses to run as root: as root the cluster belongs to the ``postgres`` user (or
``nobody``) and its server runs through ``runuser``; the clients (pg_dump, pg_restore, psql)
connect over the socket as the cluster's superuser ``bankflow`` -- the role the postgres image
creates from POSTGRES_USER -- with trust authentication on the socket, as the image's
``local all all trust`` line does. Waits are bounded; ``stop`` is idempotent.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port
from tests.support.tools import find_tool, require_tool

SUPERUSER = "bankflow"  # POSTGRES_USER of the compose file: the image makes it the superuser
DATABASE = "bankflow"
CLIENTS = ("pg_dump", "pg_dumpall", "pg_restore", "psql")


def _owner() -> str | None:
    """The non-root user that owns the cluster when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


@dataclass
class PgCluster:
    root: Path  # data dir, socket dir, log; removed by stop()
    port: int
    owner: str | None
    bins: dict[str, str]
    started: bool = False
    options: str = ""  # the server's command-line options (pg_ctl -o)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def env(self) -> dict[str, str]:
        """Client environment: our socket and port, and nothing inherited that could redirect it."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PGHOST": str(self.socket_dir),
            "PGPORT": str(self.port),
            "LC_ALL": "C.UTF-8",
        }

    def _as_owner(self, argv: Sequence[str]) -> list[str]:
        return ["runuser", "-u", self.owner, "--", *argv] if self.owner else list(argv)

    def client(self, name: str) -> str:
        return self.bins[name]

    def psql(self, sql: str, database: str = DATABASE) -> str:
        done = subprocess.run(
            [self.bins["psql"], "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", SUPERUSER, "-d", database,
             "-c", sql],
            env=self.env(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def databases(self) -> list[str]:
        return sorted(
            self.psql("SELECT datname FROM pg_database WHERE NOT datistemplate", "postgres").split()
        )

    def as_owner(self, argv: Sequence[str]) -> list[str]:
        return self._as_owner(argv)

    def start_server(self, timeout: int = 60) -> None:
        """pg_ctl start on the data dir (the Docker stand-in's `compose start postgres`)."""
        done = subprocess.run(
            self._as_owner([self.bins["pg_ctl"], "-D", str(self.data), "-l", str(self.root / "server.log"),
                            "-o", self.options, "-w", "-t", str(timeout), "start"]),
            capture_output=True, text=True, timeout=timeout + 30, check=False,
        )  # fmt: skip
        self.started = done.returncode == 0
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()[-500:]}")

    def stop_server(self) -> None:
        """pg_ctl stop -m fast when running (the stand-in's `compose stop postgres`)."""
        subprocess.run(
            self._as_owner([self.bins["pg_ctl"], "-D", str(self.data), "-m", "fast", "-w", "-t", "60",
                            "stop"]),
            capture_output=True, timeout=90, check=False,
        )  # fmt: skip
        self.started = False

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if self.started:
            subprocess.run(
                self._as_owner([self.bins["pg_ctl"], "-D", str(self.data), "-m", "fast", "-w", "-t", "30",
                                "stop"]),
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(extra_options: Sequence[str] = ()) -> PgCluster:
    bins = {name: require_tool(name) for name in ("initdb", "pg_ctl", *CLIENTS)}
    owner = _owner()
    if owner:
        require_tool("runuser")
    # Not pytest's tmp_path: as root it is a 0700 directory the cluster's owner cannot enter.
    root = Path(tempfile.mkdtemp(prefix="bankflow-pg-"))
    cluster = PgCluster(root, free_port(), owner, bins)
    try:
        cluster.socket_dir.mkdir()
        if owner:
            info = pwd.getpwnam(owner)
            os.chmod(root, 0o755)  # noqa: S103 - the cluster's owner must enter it
            for path in (root, cluster.socket_dir):
                os.chown(path, info.pw_uid, info.pw_gid)
        init = subprocess.run(
            cluster._as_owner([bins["initdb"], "-D", str(cluster.data), "-U", SUPERUSER, "--auth=trust",
                               "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()[-2000:]}")
        options = f"-k {cluster.socket_dir} -p {cluster.port} -c listen_addresses='' -c fsync=off"
        options = " ".join([options, *extra_options])
        cluster.options = options
        start = subprocess.run(
            cluster._as_owner([bins["pg_ctl"], "-D", str(cluster.data), "-l", str(root / "server.log"),
                               "-o", options, "-w", "-t", "60", "start"]),
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        if start.returncode != 0:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {start.stderr.strip()} {log[-2000:]}")
        cluster.started = True
        cluster.psql(f"CREATE DATABASE {DATABASE}", "postgres")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def have_postgres() -> bool:
    return all(find_tool(name) for name in ("initdb", "pg_ctl", *CLIENTS))
