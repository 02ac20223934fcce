"""The backup rig: a host with a deployed release, a REAL PostgreSQL and a REAL S3 endpoint.

- PostgreSQL 15: a throw-away cluster (``tests/support/postgres.py``).
- S3: moto's server on 127.0.0.1 (``tests/support/s3.py``), reached by the real rclone the host
  setup installs, with the rendered ``secrets/rclone.conf``.
- Docker stand-in: there is no Docker engine here, so :class:`PgStandinRuntime` (the host tests'
  LocalProcessRuntime: app services are local HTTP servers, nginx is the real one) runs what the
  agent would ``docker compose exec`` in the postgres container -- pg_dump, pg_dumpall,
  pg_restore, psql -- as local processes against the throw-away cluster, with the same argv.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.host import state as st
from bankflow_infra.host.backups import commands
from bankflow_infra.host.context import Context, Options
from bankflow_infra.host.runtime import Project, RuntimeFailure
from bankflow_infra.render.backup import render_rclone_config
from tests.host.fixtures import HostEnv
from tests.host.standin import LocalProcessRuntime
from tests.support.postgres import PgCluster

ACCESS_KEY = "AKBANKFLOWTEST0000001"
SECRET_KEY = "c2VjcmV0LWJhbmtmbG93LXRlc3Qta2V5LTAwMDAwMQ=="  # noqa: S105 - a test value
STACK = "test"


class PgStandinRuntime(LocalProcessRuntime):
    """LocalProcessRuntime + ``exec``: the postgres container's clients, run locally (Docker stand-in)."""

    def __init__(self, run_dir: Path, nginx: str, nginx_conf: Path, pg: PgCluster) -> None:
        super().__init__(run_dir, nginx, nginx_conf)
        self.pg = pg

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
        self._journal("exec", project=project.name, service=service, argv=list(argv))
        if (
            service != "postgres"
            or not argv
            or argv[0] not in ("pg_dump", "pg_dumpall", "pg_restore", "psql")
        ):
            raise RuntimeFailure(f"stand-in: cannot exec {list(argv)[:1]} in {service}")
        command = [self.pg.client(argv[0]), *argv[1:]]
        stdin = stdin_path.open("rb") if stdin_path else subprocess.DEVNULL
        stdout: Any = subprocess.PIPE
        if stdout_path is not None:
            stdout = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            done = subprocess.run(
                command,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=self.pg.env(),
                timeout=min(timeout or 300, 300),
                check=False,
            )
        finally:
            if stdin_path:
                stdin.close()  # type: ignore[union-attr]
            if stdout_path is not None:
                os.close(stdout)
        if done.returncode != 0:
            tail = done.stderr.decode().strip().splitlines()
            raise RuntimeFailure(
                f"{argv[0]} in {service} exited {done.returncode}: {tail[-1] if tail else ''}"
            )
        return (done.stdout or b"").decode()

    def exec_argvs(self) -> list[list[str]]:
        return [list(e["argv"]) for e in self.journal() if e["call"] == "exec"]  # type: ignore[call-overload]


def backup_config(endpoint: str, bucket: str, local_days: int = 7) -> dict[str, Any]:
    return {
        "schema": 1,
        "stack": STACK,
        "bucket": bucket,
        "endpoint": endpoint,
        "local_days": local_days,
        "database": "bankflow",
        "user": "bankflow",
        "service": "postgres",
        "remote": "bankflow-backups",
    }


def add_backup_files(bundle: Path, endpoint: str, bucket: str, local_days: int = 7) -> None:
    (bundle / "backup").mkdir(exist_ok=True)
    (bundle / "backup" / "backup.json").write_text(json.dumps(backup_config(endpoint, bucket, local_days)))
    fd = os.open(bundle / "secrets" / "rclone.conf", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, render_rclone_config(ACCESS_KEY, SECRET_KEY).encode())
    os.close(fd)


def run_agent(env: HostEnv, *args: str) -> tuple[int, str, str]:
    """``bankflow-agent ARGS`` for the backup subcommands, exactly as agent.main dispatches them
    (its COMMANDS table: handler + deploy lock; ValueError -> exit 2)."""
    parser = argparse.ArgumentParser(prog="bankflow-agent")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.register(sub)
    parsed = parser.parse_args(list(args))
    out, err = io.StringIO(), io.StringIO()
    paths = HostPaths(env.home)
    ctx = Context(paths, env.runtime, Options(), "test", out, err, sleep=lambda _s: None)
    handler, locked = commands.COMMANDS[parsed.command]
    try:
        paths.ensure()
        if locked:
            with st.exclusive_lock(paths.lock):
                code = handler(ctx, parsed, None)
        else:
            code = handler(ctx, parsed, None)
    except ValueError as exc:
        print(f"{parsed.command}: {exc}", file=err)
        code = 2
    return code, out.getvalue(), err.getvalue()
