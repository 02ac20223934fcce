"""The weekly restore drill (``bankflow-infra workflow restore-drill``): restore the newest
pgBackRest backup into a throwaway PostgreSQL 15, check it, report, alert on failure.

Steps, each bounded and named in the result when it fails:
1. ``info``: pgBackRest ``info --output=json`` picks the newest good backup (a wrong cipher pass
   or a damaged backup.info fails here, with pgBackRest's reason made printable);
2. ``restore``: ``pgbackrest restore --set=<label> --type=immediate --target-action=promote
   --archive-mode=off`` into ``WORK/data`` -- the backup plus the WAL that makes it consistent,
   pgBackRest checking every file's checksum; archiving off, so the drill never pushes WAL;
3. ``start``: ``pg_ctl start`` on a private socket (no TCP listener), with its own ``pg_hba``
   (local trust: the restored production pg_hba is not used), preload libraries and TLS off;
   waits until the cluster is promoted;
4. ``amcheck``: ``pg_amcheck --all --install-missing`` (every table's heap and every B-tree index);
5. ``counts`` and ``checksums`` (drill_checks.py), the backup's databases (``info --set``)
   present, and, with ``--expect``, the counts and checksums equal to those expected.
The cluster is stopped and its data removed in every case (it is a copy of production data).

Secrets never touch argv, the result or the report: the cipher pass and the S3 key reach
pgBackRest as its own environment variables (``PGBACKREST_REPO1_CIPHER_PASS``,
``PGBACKREST_REPO1_S3_KEY``, ``PGBACKREST_REPO1_S3_KEY_SECRET``), which only pgBackRest and the
server (its restore_command runs archive-get) receive; tool messages are scrubbed of them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bankflow_infra import catalog
from bankflow_infra.contract import pgbackrest
from bankflow_infra.ops.notify import scrub, secret_values
from bankflow_infra.ops.workflow import drill_checks as checks

CIPHER_ENV: Final = "PGBACKREST_REPO1_CIPHER_PASS"
S3_KEY_ENVS: Final = ("PGBACKREST_REPO1_S3_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET")
RESULT_SCHEMA: Final = 1
STEP_TIMEOUT: Final = 600.0
SOCKET_PORT: Final = 5432  # names the socket file in the private socket dir; no TCP listener


def drill_secrets(env: Mapping[str, str]) -> list[str]:
    """Values never to show: the secret-looking variables (notify's rule) and every pgBackRest
    variable -- the cipher pass's name (``..._CIPHER_PASS``) matches no secret-name pattern."""
    extra = [v for k, v in env.items() if k.startswith("PGBACKREST_") and len(v) >= 6]
    return sorted({*secret_values(env), *extra}, key=len, reverse=True)


class DrillFailed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True)
class DrillRequest:
    stack: str
    repo_type: str  # s3 | posix
    repo_path: str
    s3_bucket: str | None
    s3_endpoint: str | None
    s3_region: str
    pg_bin: Path
    work_dir: Path
    expect: Path | None
    as_user: str | None
    checksum_tables: int
    deadline: float  # seconds for the whole drill
    job_retry: int | None = None  # pgBackRest's job-retry; None: its default (2, the 2nd after 15 s)

    @property
    def data(self) -> Path:
        return self.work_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.work_dir / "socket"


@dataclass
class Tools:
    """Runs the drill's commands, as ``as_user`` when given (PostgreSQL refuses root)."""

    request: DrillRequest
    env: Mapping[str, str]  # the caller's environment: where the secrets are
    ends_at: float

    def _argv(self, argv: Sequence[str]) -> list[str]:
        return ["runuser", "-u", self.request.as_user, "--", *argv] if self.request.as_user else list(argv)

    def pgbackrest_env(self) -> dict[str, str]:
        keep = {k: v for k, v in self.env.items() if k.startswith("PGBACKREST_")}
        return {"PATH": self.env.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", **keep}

    def client_env(self) -> dict[str, str]:
        return {"PATH": self.env.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
                "PGHOST": str(self.request.socket_dir), "PGPORT": str(SOCKET_PORT),
                "PGUSER": catalog.DATABASE_USER}  # fmt: skip

    def run(self, step: str, argv: Sequence[str], env: Mapping[str, str], check: bool = True) -> str:
        timeout = min(STEP_TIMEOUT, self.ends_at - time.monotonic())
        if timeout <= 0:
            raise DrillFailed(step, "the drill's deadline passed")
        try:
            done = subprocess.run(self._argv(argv), env=dict(env), capture_output=True, text=True,
                                  errors="replace", timeout=timeout, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise DrillFailed(step, f"{Path(argv[0]).name} did not finish within {timeout:.0f} s") from None
        except OSError as exc:
            raise DrillFailed(step, f"{argv[0]}: {exc.strerror}") from None
        if check and done.returncode != 0:
            reason = pgbackrest.clean(_reason(done.stderr + "\n" + done.stdout), 400)
            detail = scrub(reason, drill_secrets(self.env))
            raise DrillFailed(step, f"{Path(argv[0]).name} exited {done.returncode}: {detail}")
        return done.stdout

    def pg(self, name: str) -> str:
        return str(self.request.pg_bin / name)

    def psql(self, step: str, sql: str, database: str = "postgres") -> str:
        argv = [self.pg("psql"), "-X", "-q", "-At", "-F", checks.SEPARATOR, "-v", "ON_ERROR_STOP=1",
                "-d", database, "-c", sql]  # fmt: skip
        return self.run(step, argv, self.client_env())


def _reason(output: str) -> str:
    """The line that says why: pgBackRest's first ERROR line (later ones are its retries), else
    the last line."""
    lines = [line for line in output.splitlines() if line.strip()]
    return next((line for line in lines if "ERROR:" in line), lines[-1] if lines else "")


def check_request(request: DrillRequest, env: Mapping[str, str], euid: int) -> list[str]:
    """Every problem with the inputs, before anything runs."""
    problems = []
    if not env.get(CIPHER_ENV):
        problems.append(f"{CIPHER_ENV} is not set: the repository's cipher pass (an environment secret)")
    if request.repo_type == "s3":
        problems += [
            f"{name} is not set (the read-only Spaces key)" for name in S3_KEY_ENVS if not env.get(name)
        ]
        if not request.s3_bucket or not request.s3_endpoint:
            problems.append("--s3-bucket and --s3-endpoint are required with --repo-type s3")
    for tool in ("pg_ctl", "psql", "pg_amcheck", "postgres"):
        if not (request.pg_bin / tool).is_file():
            problems.append(f"--pg-bin {request.pg_bin}: no {tool} (install postgresql-15)")
    if shutil.which("pgbackrest", path=env.get("PATH")) is None:
        problems.append("pgbackrest is not on PATH (install pgbackrest 2.45)")
    if euid == 0 and not request.as_user:
        problems.append("running as root: PostgreSQL refuses root, give --as-user USER")
    if request.work_dir.exists() and any(request.work_dir.iterdir()):
        problems.append(f"--work-dir {request.work_dir} is not empty")
    return problems


def write_config(request: DrillRequest) -> Path:
    """pgbackrest.conf for the drill: where the repository is, nothing secret."""
    repo = [
        f"repo1-type={request.repo_type}",
        f"repo1-path={request.repo_path}",
        "repo1-cipher-type=aes-256-cbc",
    ]
    if request.repo_type == "s3":
        repo += [f"repo1-s3-bucket={request.s3_bucket}", f"repo1-s3-endpoint={request.s3_endpoint}",
                 f"repo1-s3-region={request.s3_region}", "repo1-s3-uri-style=path"]  # fmt: skip
    work = request.work_dir
    text = "\n".join([
        "[global]", *repo,
        f"log-path={work / 'log'}", f"lock-path={work / 'log'}", f"spool-path={work / 'log'}",
        "log-level-console=warn", "log-level-file=off",
        *([f"job-retry={request.job_retry}"] if request.job_retry is not None else []),
        f"[{pgbackrest.STANZA}]", f"pg1-path={request.data}", f"pg1-socket-path={request.socket_dir}",
        f"pg1-port={SOCKET_PORT}", f"pg1-user={catalog.DATABASE_USER}", "",
    ])  # fmt: skip
    path = work / "pgbackrest.conf"
    path.write_text(text, encoding="utf-8")
    (work / "pg_hba.conf").write_text("# the drill's own: local socket only\nlocal all all trust\n")
    return path


def prepare_work_dir(request: DrillRequest) -> None:
    for path in (request.work_dir, request.work_dir / "log", request.socket_dir):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if request.as_user:
        shutil.chown(request.work_dir, request.as_user)
        for path in (request.work_dir / "log", request.socket_dir):
            shutil.chown(path, request.as_user)


def result_document(request: DrillRequest, started: datetime, **fields: Any) -> dict[str, Any]:
    finished = datetime.now(UTC)
    return {
        "schema": RESULT_SCHEMA,
        "stack": request.stack,
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "finished": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_seconds": round((finished - started).total_seconds(), 1),
        **fields,
    }


def run_drill(request: DrillRequest, env: Mapping[str, str]) -> dict[str, Any]:
    """The drill; the result document (``ok`` false with ``failed_step`` and ``message`` on
    failure). Inputs are checked by the caller (check_request)."""
    started = datetime.now(UTC)
    tools = Tools(request, env, time.monotonic() + request.deadline)
    newest: pgbackrest.NewestBackup | None = None
    findings = checks.Findings()
    try:
        prepare_work_dir(request)
        config = write_config(request)
        newest = _newest_backup(tools, config)
        _restore(tools, config, newest)
        _start(tools)
        _check(tools, config, newest, findings)
    except DrillFailed as failure:
        return result_document(request, started, ok=False, failed_step=failure.step, message=str(failure),
                               backup=_backup_dict(newest), **_body(findings))  # fmt: skip
    finally:
        _stop_and_remove(tools)
    if findings.problems:
        message = f"{len(findings.problems)} problem(s): " + "; ".join(findings.problems)
        return result_document(request, started, ok=False, failed_step="compare", message=message,
                               backup=_backup_dict(newest), **_body(findings))  # fmt: skip
    return result_document(request, started, ok=True, failed_step=None, message="restored and consistent",
                           backup=_backup_dict(newest), **_body(findings))  # fmt: skip


def _body(findings: checks.Findings) -> dict[str, Any]:
    return {"databases": findings.databases, "checksums": findings.checksums, "problems": findings.problems}


def _backup_dict(newest: pgbackrest.NewestBackup | None) -> dict[str, str] | None:
    if newest is None:
        return None
    return {
        "label": newest.label,
        "type": newest.type,
        "stop_time": newest.stop_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _newest_backup(tools: Tools, config: Path) -> pgbackrest.NewestBackup:
    argv = ["pgbackrest", f"--config={config}", f"--stanza={pgbackrest.STANZA}", "--output=json", "info"]
    try:
        newest = pgbackrest.parse_info(tools.run("info", argv, tools.pgbackrest_env()))
    except pgbackrest.InfoError as exc:
        hint = " (a wrong cipher pass, or a damaged repository)" if "code 99" in str(exc) else ""
        raise DrillFailed("info", f"pgBackRest cannot read the repository{hint}: {exc}") from None
    if newest is None:
        raise DrillFailed("info", "the repository holds no backup to restore")
    return newest


def _restore(tools: Tools, config: Path, newest: pgbackrest.NewestBackup) -> None:
    argv = ["pgbackrest", f"--config={config}", f"--stanza={pgbackrest.STANZA}", f"--set={newest.label}",
            "--type=immediate", "--target-action=promote", "--archive-mode=off", "restore"]  # fmt: skip
    tools.run("restore", argv, tools.pgbackrest_env())


def _start(tools: Tools) -> None:
    request = tools.request
    hba = request.work_dir / "pg_hba.conf"
    options = (f"-k {request.socket_dir} -p {SOCKET_PORT} -c listen_addresses='' -c archive_mode=off "
               f"-c hba_file={hba} -c shared_preload_libraries='' -c ssl=off")  # fmt: skip
    argv = [tools.pg("pg_ctl"), "-D", str(request.data), "-l", str(request.work_dir / "log" / "server.log"),
            "-o", options, "-w", "-t", str(int(STEP_TIMEOUT)), "start"]  # fmt: skip
    # the server's restore_command (pgbackrest archive-get) needs the cipher pass too
    tools.run("start", argv, tools.pgbackrest_env())
    while tools.psql("start", "SELECT pg_is_in_recovery()").strip() != "f":
        if time.monotonic() > tools.ends_at:
            raise DrillFailed("start", "the restored cluster did not finish recovery before the deadline")
        time.sleep(0.5)


def _check(tools: Tools, config: Path, newest: pgbackrest.NewestBackup, findings: checks.Findings) -> None:
    tools.run("amcheck", [tools.pg("pg_amcheck"), "--all", "--install-missing"], tools.client_env())
    databases = tools.psql("counts", checks.DATABASES_SQL).split()
    for database in databases:
        try:
            tables = checks.parse_tables(tools.psql("counts", checks.TABLES_SQL, database))
        except ValueError as exc:
            raise DrillFailed("counts", f"database {database}: {exc}") from None
        findings.databases[database] = {t.name: t.rows for t in tables}
        for table in checks.tables_to_checksum(tables, tools.request.checksum_tables):
            digest = tools.psql("checksums", checks.checksum_sql(table), database).strip()
            findings.checksums[f"{database}:{table.name}"] = digest
    argv = ["pgbackrest", f"--config={config}", f"--stanza={pgbackrest.STANZA}", f"--set={newest.label}",
            "--output=json", "info"]  # fmt: skip
    info = tools.run("compare", argv, tools.pgbackrest_env())
    expected = _backup_databases(info)
    findings.problems += [f"database {name}: in the backup, not restored"
                          for name in checks.missing_databases(expected, databases)]  # fmt: skip
    if tools.request.expect is not None:
        path = tools.request.expect
        findings.problems += checks.compare_with_expected(
            findings, checks.load_expected(path.read_text(), str(path))
        )


def _backup_databases(info_text: str) -> list[str]:
    try:
        entry = json.loads(info_text, strict=False)[0]
        return [str(d["name"]) for d in entry["backup"][0].get("database-ref") or []]
    except (ValueError, LookupError, TypeError) as exc:
        raise DrillFailed(
            "compare", f"pgbackrest info --set: unexpected answer ({type(exc).__name__})"
        ) from None


def _stop_and_remove(tools: Tools) -> None:
    request = tools.request
    if (request.data / "postmaster.pid").exists():
        # past the deadline too: a short grace, the cluster must not outlive the drill
        tools.ends_at = max(tools.ends_at, time.monotonic() + 60)
        # a failure here is not the drill's result (the step that failed is); the data goes anyway
        with contextlib.suppress(DrillFailed):
            tools.run("stop", [tools.pg("pg_ctl"), "-D", str(request.data), "-m", "immediate", "-w", "stop"],
                      tools.client_env(), check=False)  # fmt: skip
    shutil.rmtree(request.data, ignore_errors=True)  # a copy of production data: never left behind
