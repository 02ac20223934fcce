"""The roles rig: a deployed host whose postgres is a REAL PostgreSQL 15 that checks passwords.

- PostgreSQL: the shared throw-away cluster (``tests/support/postgres.py``), restarted with a TCP
  listener on 127.0.0.1 and a ``pg_hba.conf`` whose only network line is ``scram-sha-256`` (the
  image's local socket stays ``trust``, as in the postgres image), ``log_statement=all`` so the
  server log would show any password or verifier the agent sent.
- Docker stand-in: the backup tests' :class:`PgStandinRuntime` (psql in the "postgres container" =
  the local psql on the cluster's socket), recording every exec's stdin as well.
- Bundles: the host tests' hand-made bundles plus what the renderer adds for roles (the
  manifest's ``database`` entry, DATABASE_URL of the app role, POSTGRES_PASSWORD).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bankflow_infra.host.runtime import Project
from tests.host.backups.rig import PgStandinRuntime
from tests.support.postgres import DATABASE, SUPERUSER, PgCluster, start_cluster

APP_ROLE = "bankflow_app"
TCP_HOST = "127.0.0.1"


def new_password() -> str:
    return secrets.token_urlsafe(30).replace("-", "x").replace("_", "y")


def tcp_scram_cluster() -> PgCluster:
    """The shared cluster, restarted to accept password logins over TCP with SCRAM only."""
    cluster = start_cluster()
    try:
        (cluster.data / "pg_hba.conf").write_text(
            f"local all all trust\nhost all all {TCP_HOST}/32 scram-sha-256\n"
        )
        options = (
            f"-k {cluster.socket_dir} -p {cluster.port} -c listen_addresses={TCP_HOST} -c fsync=off "
            "-c log_statement=all -c log_min_error_statement=error -c log_connections=on"
        )
        done = subprocess.run(
            cluster._as_owner([cluster.bins["pg_ctl"], "-D", str(cluster.data), "-l",
                               str(server_log(cluster)), "-o", options, "-m", "fast", "-w", "-t", "60",
                               "restart"]),
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl restart failed: {done.stderr.strip()}")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def server_log(cluster: PgCluster) -> Path:
    return cluster.root / "server.log"


def tcp_login(
    cluster: PgCluster, user: str, password: str, sql: str = "SELECT current_user"
) -> tuple[bool, str]:
    """A real password login over TCP (SCRAM per pg_hba): (succeeded, output or error)."""
    done = subprocess.run(
        [cluster.client("psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", TCP_HOST, "-p",
         str(cluster.port), "-U", user, "-d", DATABASE, "-c", sql],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": password,
             "PGCONNECT_TIMEOUT": "5", "LC_ALL": "C.UTF-8"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.returncode == 0, (done.stdout + done.stderr).strip()


class RecordingPgRuntime(PgStandinRuntime):
    """PgStandinRuntime that also keeps what every exec read on stdin, and can make PostgreSQL
    refuse the roles transaction for real (``fail_roles``: a failing statement just before its
    COMMIT, so everything before it has run inside the transaction)."""

    def __init__(self, run_dir: Path, nginx: str, nginx_conf: Path, pg: PgCluster) -> None:
        super().__init__(run_dir, nginx, nginx_conf, pg)
        self.stdin_seen: list[str] = []
        self.fail_roles = False

    def exec(
        self,
        project: Project,
        service: str,
        argv: Sequence[str],
        *,
        stdin_path: Path | None = None,
        stdout_path: Path | None = None,
        timeout: float | None = None,
    ) -> str:
        if stdin_path is not None:
            text = stdin_path.read_text()
            self.stdin_seen.append(text)
            if self.fail_roles and "ALTER ROLE" in text:
                broken = stdin_path.with_name(stdin_path.name + ".broken")
                broken.write_text(text.replace("\nCOMMIT;", "\nSELECT 1 / 0;\nCOMMIT;"))
                try:
                    return super().exec(project, service, argv, stdin_path=broken, timeout=timeout)
                finally:
                    broken.unlink()
        return super().exec(project, service, argv, stdin_path=stdin_path, stdout_path=stdout_path,
                            timeout=timeout)  # fmt: skip


def add_roles(bundle: Path, app_password: str, superuser_password: str, *, app_user: str = APP_ROLE) -> Path:
    """What render/bundle.py adds to a release once the stack generates the app role's password."""
    manifest_path = bundle / "release.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["database"] = {
        "service": "postgres",
        "database": DATABASE,
        "superuser": SUPERUSER,
        "superuser_password": {"file": "secrets/postgres.env", "key": "POSTGRES_PASSWORD"},
        "app_role": APP_ROLE,
        "app_url": {"file": "secrets/app.env", "key": "DATABASE_URL"},
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    files = {
        "app.env": f"DATABASE_URL=postgres://{app_user}:{app_password}@postgres:5432/{DATABASE}\n"
        "JWT_SECRET=test-secret-value\n",
        "postgres.env": f"POSTGRES_PASSWORD={superuser_password}\n",
    }
    for name, text in files.items():
        path = bundle / "secrets" / name
        path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, text.encode())
        os.close(fd)
    return bundle
