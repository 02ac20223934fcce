"""The PITR rig: the backup rig's host + REAL pgBackRest 2.45 against a REAL PostgreSQL 15 with
archive_command, and S3 = moto behind nginx's TLS (pgBackRest speaks S3 over TLS only).

Docker stand-in (there is no Docker engine here): :class:`PitrStandinRuntime` runs what the agent
would run in the postgres container -- ``su-exec postgres pgbackrest ...`` (exec) and
``pgbackrest ...`` in a one-off container (run_tool) -- as the local pgbackrest, as the cluster's
owner, with the config the agent installed (``secrets/pgbackrest.conf``, the rendered file) plus a
test-only ``[bankflow]`` section: the local cluster's paths, the lock dir and the test CA (the
"container's" view of the same cluster). Container paths in the argv are mapped through the
mounts, as Docker would. ``stop_services``/``start`` of postgres are pg_ctl stop/start.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from bankflow_infra.contract.uploads import UPLOADS_CONFIG_FILE, UPLOADS_SECRET_ENV
from bankflow_infra.host.backups.pitr_restore import RESTORE_MOUNT
from bankflow_infra.host.runtime import Project, RuntimeFailure
from bankflow_infra.render.backup import render_pgbackrest_config
from tests.host.backups.rig import ACCESS_KEY, SECRET_KEY, STACK, PgStandinRuntime
from tests.support.postgres import PgCluster

CIPHER_PASS = "dGVzdC1jaXBoZXItcGFzcy1iYW5rZmxvdy0wMDAx"  # noqa: S105 - a test value
UPLOADS_PASSWORD = "uploads-repo-password-for-pitr-tests-01"  # noqa: S105 - a test value


class PitrStandinRuntime(PgStandinRuntime):
    """PgStandinRuntime + pgbackrest in the "postgres container" (Docker stand-in)."""

    def __init__(
        self,
        run_dir: Path,
        nginx: str,
        nginx_conf: Path,
        pg: PgCluster,
        secrets: Path,
        ca_file: str,
        conf: Path,
    ) -> None:
        super().__init__(run_dir, nginx, nginx_conf, pg)
        self.secrets = secrets
        self.ca_file = ca_file
        self.conf = conf  # the archive_command's config too
        self.lock = conf.parent / "pgbackrest-lock"
        self.hook: object = None  # (argv) -> None, called before a run_tool (fault injection)

    def write_conf(self) -> Path:
        """The installed secrets/pgbackrest.conf + this host's cluster paths (test-only section)."""
        text = (self.secrets / "pgbackrest.conf").read_text()
        # the rendered [bankflow] section names the container's cluster: this host's instead
        installed = "\n".join(line for line in text.splitlines() if not line.startswith("pg1-"))
        overlay = (
            f"\npg1-user=bankflow\npg1-path={self.pg.data}\npg1-socket-path={self.pg.socket_dir}\n"
            f"pg1-port={self.pg.port}\nlock-path={self.lock}\nrepo1-storage-ca-file={self.ca_file}\n"
        )
        self.conf.write_text(installed + overlay)
        owner = pwd.getpwnam(self.pg.owner) if self.pg.owner else None
        self.lock.mkdir(exist_ok=True)
        if owner:
            for path in (self.conf, self.lock):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chmod(self.conf, 0o600)
        return self.conf

    def _pgbackrest(self, argv: Sequence[str], mounts: Mapping[str, str], timeout: float | None) -> str:
        conf = self.write_conf()
        local = []
        for arg in argv[1:]:
            for host, inside in mounts.items():
                arg = arg.replace(inside, host)
            # the restored cluster's restore_command runs the local pgbackrest: give it the config
            arg = arg.replace("restore_command=pgbackrest ", f"restore_command=pgbackrest --config={conf} ")
            local.append(arg)
        command = self.pg.as_owner(["pgbackrest", f"--config={conf}", *local])
        done = subprocess.run(command, capture_output=True, timeout=min(timeout or 600, 600), check=False)
        if done.returncode != 0:
            text = " ".join(done.stderr.decode("utf-8", "replace").split())
            raise RuntimeFailure(f"pgbackrest exited {done.returncode}: {text[:600]}")
        return done.stdout.decode("utf-8", "replace")

    def exec(self, project: Project, service: str, argv: Sequence[str], **kwargs: object) -> str:
        if list(argv[:3]) == ["su-exec", "postgres", "pgbackrest"]:
            self._journal("exec", project=project.name, service=service, argv=list(argv))
            return self._pgbackrest(argv[2:], {}, kwargs.get("timeout"))  # type: ignore[arg-type]
        if not self.pg.started:
            raise RuntimeFailure(f"service {service} is not running")
        return super().exec(project, service, argv, **kwargs)  # type: ignore[arg-type]

    def run_tool(
        self,
        project: Project,
        service: str,
        argv: Sequence[str],
        mounts: Mapping[str, str],
        *,
        user: str,
        timeout: float | None = None,
    ) -> str:
        self._journal("run_tool", project=project.name, service=service, argv=list(argv), mounts=dict(mounts))
        if service != "postgres" or user != "postgres" or not argv or argv[0] != "pgbackrest":
            raise RuntimeFailure(f"stand-in: cannot run {list(argv)[:1]} in a one-off {service}")
        if callable(self.hook):
            self.hook(list(argv))
        return self._pgbackrest(argv, mounts, timeout)

    def stop_services(self, project: Project, services: Sequence[str]) -> None:
        self._journal("stop_services", project=project.name, services=list(services))
        if "postgres" in services:
            self.pg.stop_server()

    def start(self, project: Project, services: Sequence[str] = ()) -> None:
        if list(services) == ["postgres"]:
            self._journal("start", project=project.name, services=["postgres"])
            if self.pg.postmaster_pid() is None or not self.pg.started:
                try:
                    self.pg.start_server()
                except RuntimeError as exc:
                    raise RuntimeFailure(str(exc)) from None
            return
        super().start(project, services)


def pitr_backup_config(endpoint: str, bucket: str, pg: PgCluster, uid: int) -> dict[str, object]:
    return {
        "schema": 2,
        "stack": STACK,
        "bucket": bucket,
        "endpoint": endpoint,
        "local_days": 7,
        "database": "bankflow",
        "user": "bankflow",
        "service": "postgres",
        "remote": "bankflow-backups",
        "pitr": {
            "stanza": "bankflow",
            "data_dir": str(pg.data),
            "container_data_dir": "/var/lib/postgresql/data",
            "postgres_uid": uid,
            "archive_timeout": 60,
        },
    }


def add_pitr_files(bundle: Path, endpoint: str, bucket: str, pg: PgCluster, cipher_pass: str | None) -> None:
    uid = pwd.getpwnam(pg.owner).pw_uid if pg.owner else os.getuid()
    (bundle / "backup").mkdir(exist_ok=True)
    (bundle / "backup" / "backup.json").write_text(json.dumps(pitr_backup_config(endpoint, bucket, pg, uid)))
    conf = bundle / "secrets" / "pgbackrest.conf"
    conf.unlink(missing_ok=True)
    if cipher_pass is not None:
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, render_pgbackrest_config(endpoint, bucket, ACCESS_KEY, SECRET_KEY, cipher_pass).encode())
        os.close(fd)


def add_uploads_files(bundle: Path, endpoint: str, bucket: str, uploads_dir: Path) -> None:
    """backup/uploads.json (restic repository in the same bucket) + secrets/uploads-restic.env."""
    config = {
        "schema": 1,
        "stack": STACK,
        "repository": f"s3:{endpoint}/{bucket}/uploads",
        "uploads_dir": str(uploads_dir),
        "on_data_volume": True,
    }
    (bundle / "backup").mkdir(exist_ok=True)
    (bundle / UPLOADS_CONFIG_FILE).write_text(json.dumps(config))
    values = {
        "RESTIC_PASSWORD": UPLOADS_PASSWORD,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    env = "".join(f"{name}={value}\n" for name, value in values.items())
    fd = os.open(bundle / "secrets" / UPLOADS_SECRET_ENV, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, env.encode())
    os.close(fd)


__all__ = ["CIPHER_PASS", "RESTORE_MOUNT", "PitrStandinRuntime", "add_pitr_files", "add_uploads_files"]
