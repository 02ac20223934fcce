"""Database backups on the droplet: dump, upload, list, restore. Stdlib only, like all of host/.

    bankflow-agent backup                          pg_dump -Fc + pg_dumpall --globals-only inside the
                                                   postgres container, sha256 recorded, uploaded to the
                                                   stack's Spaces bucket and verified, old local dumps
                                                   pruned (the systemd timer runs this nightly)
    bankflow-agent backups [--json]                the bucket's dumps, newest first (key, size, age)
    bankflow-agent restore --from KEY|latest --yes [--bucket NAME --endpoint URL]
                                                   download, verify, stop the apps, restore into a
                                                   fresh database, swap it in by rename, start the apps

Where dumps go comes from the current release's ``backup/backup.json`` (rendered by
``bankflow_infra.render.backup``); the Spaces key is ``secrets/rclone.conf`` (0600), which only
rclone reads (``rclone --config FILE``): no credential is ever in a command line, the agent's
environment or its output. rclone runs with a clean environment, so no AWS_*/RCLONE_* variable of
the caller can redirect it.

Restore never touches the live database until the dump has been restored completely somewhere
else: it is downloaded and checked (size and MD5 against the bucket, sha256 against the dump's
checksum file, ``pg_restore --list``), restored with ``--single-transaction --exit-on-error``
into a scratch database, and only then swapped in with two ``ALTER DATABASE ... RENAME`` in one
transaction. An expired, missing or corrupt dump therefore leaves the database exactly as it
was; the previous database is kept as ``<db>_before_restore_<UTC time>`` to drop by hand once
the restored data is confirmed. App services are stopped for the restore (no write may land in
a database that is about to be replaced) and always started again, also when it fails.

Exit codes: 0 done, 1 a step failed (the message says what, and that the database is
unchanged), 2 bad input (unknown key, missing --yes, no configuration), 3 another backup,
restore or deploy is running.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Protocol

from . import state as st
from .manifest import Manifest, load_manifest
from .runtime import Completed, Project, RuntimeFailure

if TYPE_CHECKING:
    from .agent import Context

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_LOCKED: Final = 3

# The bundle's files (bankflow_infra/render/backup.py; a test checks the names agree).
BACKUP_CONFIG: Final = "backup/backup.json"
RCLONE_CONFIG: Final = "rclone.conf"  # in the live secrets dir
BACKUPS_DIR_NAME: Final = "backups"  # under the host root: catalog.BACKUPS_DIR, 0700
LOCK_NAME: Final = "backup.lock"  # in the state dir: one backup or restore at a time

DUMP_MAGIC: Final = b"PGDMP"  # the first bytes of every pg_dump custom-format archive
TIME_FORMAT: Final = "%Y%m%dT%H%M%SZ"
KEY_RE: Final = re.compile(r"^bankflow-(?P<stack>[A-Za-z0-9_.-]{1,100})-(?P<time>\d{8}T\d{6}Z)\.dump$")
_LOCAL_RE: Final = re.compile(
    r"^\.?bankflow-[A-Za-z0-9_.-]{1,100}-(?P<time>\d{8}T\d{6}Z)\.(?:dump|globals\.sql|sha256)(?:\.partial)?$"
)
_IDENT_RE: Final = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
_SERVICE_RE: Final = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_BUCKET_RE: Final = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ENDPOINT_RE: Final = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/?$")
_REMOTE_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

DUMP_TIMEOUT: Final = 2 * 3600.0  # the systemd unit's TimeoutStartSec
TRANSFER_TIMEOUT: Final = 2 * 3600.0
LIST_TIMEOUT: Final = 300.0
SQL_TIMEOUT: Final = 600.0
SWAP_ATTEMPTS: Final = 3
HEALTH_TIMEOUT: Final = 120.0
# rclone: bounded retries and timeouts, no progress output; the same for every call.
RCLONE_FLAGS: Final = (
    "--retries",
    "3",
    "--low-level-retries",
    "10",
    "--contimeout",
    "20s",
    "--timeout",
    "5m",
    "--stats",
    "0",
)
RCLONE_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BackupFailed(Exception):
    """A step failed; the message is safe to print (names, sizes, tails of tool errors)."""


class BackupUsageError(ValueError):
    """Bad input (exit 2); a ValueError so the agent's main reports it like its own usage errors."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BackupConfig:
    stack: str
    bucket: str
    endpoint: str
    local_days: int
    database: str
    user: str
    service: str
    remote: str


def parse_config(document: Any, source: str) -> BackupConfig:
    problems: list[str] = []
    doc = document if isinstance(document, dict) else {}
    if not isinstance(document, dict):
        problems.append("expected a JSON object")

    def text(key: str, pattern: re.Pattern[str]) -> str:
        value = doc.get(key)
        if not isinstance(value, str) or not pattern.match(value):
            problems.append(f"{key}: refused {value!r}")
            return ""
        return value

    config = BackupConfig(
        stack=text("stack", re.compile(r"^[A-Za-z0-9_.-]{1,100}$")),
        bucket=text("bucket", _BUCKET_RE),
        endpoint=text("endpoint", _ENDPOINT_RE),
        local_days=0,
        database=text("database", _IDENT_RE),
        user=text("user", _IDENT_RE),
        service=text("service", _SERVICE_RE),
        remote=text("remote", _REMOTE_RE),
    )
    days = doc.get("local_days")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        problems.append(f"local_days: expected a whole number of days in 1..3650, got {days!r}")
        days = 1
    if problems:
        raise BackupUsageError(f"invalid backup configuration {source}: " + "; ".join(problems))
    return BackupConfig(**{**config.__dict__, "local_days": days})


def check_bucket(name: str) -> str:
    if not _BUCKET_RE.match(name):
        raise BackupUsageError(f"--bucket: {name!r} is not a bucket name")
    return name


def check_endpoint(url: str) -> str:
    if not _ENDPOINT_RE.match(url):
        raise BackupUsageError(f"--endpoint: {url!r} is not an http(s)://host[:port] URL")
    return url


def backups_dir(paths: st.HostPaths) -> Path:
    return paths.home / BACKUPS_DIR_NAME


# --------------------------------------------------------------------------- names and times


def dump_name(stack: str, when: dt.datetime) -> str:
    """``bankflow-<stack>-<UTC time>``: the dump is ``<name>.dump``, then ``.globals.sql``, ``.sha256``."""
    return f"bankflow-{stack}-{when.astimezone(dt.UTC).strftime(TIME_FORMAT)}"


def time_of(name: str) -> dt.datetime | None:
    """The UTC time in a dump's (or a sidecar file's) name; None for any other name."""
    match = KEY_RE.match(name) or _LOCAL_RE.match(name)
    if match is None:
        return None
    return dt.datetime.strptime(match.group("time"), TIME_FORMAT).replace(tzinfo=dt.UTC)


def sidecar_keys(key: str) -> tuple[str, str]:
    """(globals, checksum) keys of a dump key."""
    base = key.removesuffix(".dump")
    return f"{base}.globals.sql", f"{base}.sha256"


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str
    md5: str


def digest_file(path: Path) -> FileDigest:
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return FileDigest(size, sha256.hexdigest(), md5.hexdigest())


def checksum_text(entries: Mapping[str, str]) -> str:
    """``sha256sum`` format: ``sha256sum -c`` verifies the files by hand too."""
    return "".join(f"{digest}  {name}\n" for name, digest in entries.items())


def parse_checksums(text: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            result[parts[1].lstrip("*")] = parts[0]
    return result


def local_prune_plan(names: Sequence[str], now: dt.datetime, local_days: int) -> list[str]:
    """Local backup files older than ``local_days`` days (by the time in their name). Any file
    whose name is not a backup's is never selected."""
    cutoff = now - dt.timedelta(days=local_days)
    doomed = []
    for name in names:
        when = time_of(name)
        if when is not None and when < cutoff:
            doomed.append(name)
    return sorted(doomed)


def _tail(text: str, limit: int = 300) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-limit:] if lines else ""


# --------------------------------------------------------------------------- the bucket (rclone)


class ProcessRunner(Protocol):
    def __call__(self, argv: Sequence[str], *, env: Mapping[str, str], timeout: float) -> Completed: ...


def run_process(argv: Sequence[str], *, env: Mapping[str, str], timeout: float) -> Completed:
    try:
        done = subprocess.run(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Completed(124, "", f"timed out after {timeout:.0f}s")
    except OSError as exc:
        return Completed(127, "", f"{argv[0]}: {exc.strerror or exc}")
    return Completed(
        done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
    )


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    md5: str | None


@dataclass
class Bucket:
    """One Spaces bucket through rclone. Every argv holds paths and names only."""

    config_file: Path  # rclone.conf, 0600: the only place the key is
    remote: str
    name: str
    endpoint: str
    home: Path  # rclone's HOME (cache), a root-only dir
    runner: ProcessRunner = run_process
    binary: str = "rclone"

    def argv(self, *args: str) -> list[str]:
        return [
            self.binary,
            "--config",
            str(self.config_file),
            "--s3-endpoint",
            self.endpoint,
            *RCLONE_FLAGS,
            *args,
        ]

    def location(self, key: str = "") -> str:
        return f"{self.remote}:{self.name}" + (f"/{key}" if key else "")

    def _run(self, what: str, args: Sequence[str], timeout: float) -> str:
        env = {"PATH": RCLONE_PATH, "HOME": str(self.home), "LANG": "C.UTF-8"}
        done = self.runner(self.argv(*args), env=env, timeout=timeout)
        if done.returncode != 0:
            raise BackupFailed(
                f"{what} (bucket {self.name} at {self.endpoint}) failed: rclone exited {done.returncode}: "
                f"{_tail(done.stderr) or _tail(done.stdout) or 'no message'}"
            )
        return done.stdout

    def list(self) -> list[RemoteObject]:
        out = self._run(
            "listing", ["lsjson", "--files-only", "--hash", "--no-mimetype", self.location()], LIST_TIMEOUT
        )
        return [obj for obj in (_remote_object(e) for e in _json_list(out, "listing")) if obj is not None]

    def stat(self, key: str) -> RemoteObject | None:
        out = self._run(
            f"looking up {key}",
            ["lsjson", "--stat", "--hash", "--no-mimetype", self.location(key)],
            LIST_TIMEOUT,
        )
        try:
            entry = json.loads(out) if out.strip() else None
        except ValueError as exc:
            raise BackupFailed(f"looking up {key}: unexpected rclone output ({exc})") from None
        # S3 has no directories: rclone answers a missing key with a directory entry
        return _remote_object(entry) if isinstance(entry, dict) and not entry.get("IsDir") else None

    def upload(self, local: Path, key: str) -> None:
        self._run(f"uploading {key}", ["copyto", str(local), self.location(key)], TRANSFER_TIMEOUT)

    def download(self, key: str, local: Path) -> None:
        self._run(f"downloading {key}", ["copyto", self.location(key), str(local)], TRANSFER_TIMEOUT)


def _json_list(text: str, what: str) -> list[Any]:
    try:
        value = json.loads(text) if text.strip() else []
    except ValueError as exc:
        raise BackupFailed(f"{what}: unexpected rclone output ({exc})") from None
    if not isinstance(value, list):
        raise BackupFailed(f"{what}: unexpected rclone output (not a list)")
    return value


def _remote_object(entry: Any) -> RemoteObject | None:
    if not isinstance(entry, dict) or entry.get("IsDir"):
        return None
    key, size = entry.get("Path"), entry.get("Size")
    if not isinstance(key, str) or not isinstance(size, int):
        return None
    hashes = entry.get("Hashes") if isinstance(entry.get("Hashes"), dict) else {}
    md5 = hashes.get("md5") if isinstance(hashes, dict) else None
    return RemoteObject(key, size, md5 if isinstance(md5, str) and md5 else None)


def verify_remote(bucket: Bucket, key: str, local: FileDigest) -> RemoteObject:
    """The uploaded object must have the local file's size and, when the store reports one, MD5."""
    remote = bucket.stat(key)
    if remote is None:
        raise BackupFailed(f"upload verification: {key} is not in bucket {bucket.name} after the upload")
    if remote.size != local.size:
        raise BackupFailed(
            f"upload verification: {key} is {remote.size} bytes in bucket {bucket.name}, {local.size} locally"
        )
    if remote.md5 is not None and remote.md5 != local.md5:
        raise BackupFailed(
            f"upload verification: {key} has MD5 {remote.md5} in the bucket, {local.md5} locally"
        )
    return remote


# --------------------------------------------------------------------------- the host's current release


@dataclass
class Target:
    """What backup and restore act on: the current release's postgres and app services."""

    release: str
    manifest: Manifest
    config: BackupConfig
    base: Project  # holds the postgres service
    app: Project  # the app containers serving now
    app_manifest: Manifest


def load_target(ctx: Context) -> Target:
    from .agent import projects  # the agent imports this module: import at call time

    current = st.read_current(ctx.paths)
    if current is None:
        raise BackupUsageError("no release deployed yet: no database to back up or restore")
    bundle = ctx.paths.release_dir(current.release)
    manifest = load_manifest(bundle)
    path = bundle / BACKUP_CONFIG
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupUsageError(
            f"release {current.release} has no {BACKUP_CONFIG}: deploy a release rendered with backups"
        ) from None
    except ValueError as exc:
        raise BackupUsageError(f"{path}: not JSON ({exc})") from None
    config = parse_config(document, str(path))
    if config.service not in manifest.base_services:
        raise BackupUsageError(f"{path}: service {config.service!r} is not a base service of the release")
    _, base = projects(ctx.paths, current.release, manifest)
    app_manifest = load_manifest(ctx.paths.release_dir(current.app_release))
    app, _ = projects(ctx.paths, current.app_release, app_manifest)
    return Target(current.release, manifest, config, base, app, app_manifest)


def open_bucket(
    ctx: Context, config: BackupConfig, bucket: str | None = None, endpoint: str | None = None
) -> Bucket:
    conf = ctx.paths.secrets / RCLONE_CONFIG
    if not conf.is_file():
        raise BackupUsageError(
            f"no Spaces key on this host ({conf} is missing): the release was rendered without "
            "spaces_access_key/spaces_secret_key"
        )
    mode = conf.stat().st_mode & 0o777
    if mode & 0o077:
        raise BackupFailed(f"refusing {conf}: mode {mode:o} lets other users read the Spaces key (want 600)")
    home = ctx.paths.state / "rclone"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    # run_process looked up at call time: the tests record every rclone argv by replacing it
    return Bucket(
        conf, config.remote, bucket or config.bucket, endpoint or config.endpoint, home, run_process
    )


@contextmanager
def backup_lock(paths: st.HostPaths) -> Iterator[None]:
    try:
        with st.exclusive_lock(paths.state / LOCK_NAME):
            yield
    except st.LockBusy as exc:
        raise _Locked(
            f"another backup or restore is running ({str(exc).rsplit('(', 1)[-1].rstrip(')')})"
        ) from None


class _Locked(Exception):
    pass


def _ensure_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


# --------------------------------------------------------------------------- backup


@dataclass
class BackupResult:
    key: str
    size: int
    sha256: str
    pruned: list[str] = field(default_factory=list)


def _dump_into(ctx: Context, target: Target, argv: Sequence[str], partial: Path, final: Path) -> None:
    partial.unlink(missing_ok=True)
    try:
        ctx.runtime.exec(target.base, target.config.service, argv, stdout_path=partial, timeout=DUMP_TIMEOUT)
        os.chmod(partial, 0o600)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)


def run_backup(ctx: Context, now: dt.datetime | None = None) -> BackupResult:
    target = load_target(ctx)
    config = target.config
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    name = dump_name(config.stack, when)
    directory = backups_dir(ctx.paths)
    _ensure_private_dir(directory)
    dump, globals_sql, checksums = (
        directory / f"{name}{suffix}" for suffix in (".dump", ".globals.sql", ".sha256")
    )

    ctx.say(
        f"backup: pg_dump -Fc of database {config.database} ({config.service} of release {target.release})"
    )
    _dump_into(
        ctx,
        target,
        ["pg_dump", "--format=custom", "--no-password", "-U", config.user, "-d", config.database],
        directory / f".{dump.name}.partial",
        dump,
    )
    with dump.open("rb") as handle:
        if handle.read(len(DUMP_MAGIC)) != DUMP_MAGIC:
            raise BackupFailed(f"pg_dump wrote {dump.name} but it is not a custom-format archive")
    ctx.say("backup: pg_dumpall --globals-only (roles without their passwords, tablespaces)")
    _dump_into(
        ctx,
        target,
        ["pg_dumpall", "--globals-only", "--no-role-passwords", "--no-password", "-U", config.user],
        directory / f".{globals_sql.name}.partial",
        globals_sql,
    )
    digests = {path.name: digest_file(path) for path in (dump, globals_sql)}
    st.write_atomic(checksums, checksum_text({n: d.sha256 for n, d in digests.items()}).encode(), 0o600)
    digests[checksums.name] = digest_file(checksums)

    bucket = open_bucket(ctx, config)
    for path in (dump, globals_sql, checksums):  # the checksum file last: its presence means complete
        ctx.say(f"backup: upload {path.name} ({digests[path.name].size} bytes) to {bucket.name}")
        bucket.upload(path, path.name)
        verify_remote(bucket, path.name, digests[path.name])

    # Only after a verified upload: while uploads fail, the local dumps are the only ones.
    pruned = prune_local(directory, when, config.local_days)
    return BackupResult(dump.name, digests[dump.name].size, digests[dump.name].sha256, pruned)


def prune_local(directory: Path, now: dt.datetime, local_days: int) -> list[str]:
    names = [p.name for p in directory.iterdir() if p.is_file() and not p.is_symlink()]
    doomed = local_prune_plan(names, now, local_days)
    for name in doomed:
        (directory / name).unlink(missing_ok=True)
    return doomed


def cmd_backup(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    try:
        with backup_lock(ctx.paths):
            result = run_backup(ctx)
    except _Locked as exc:
        return _refuse(ctx, "backup", str(exc), EXIT_LOCKED)
    except (BackupFailed, RuntimeFailure, OSError) as exc:
        message = f"backup: failed: {_describe(exc)}"
        print(message, file=ctx.err, flush=True)
        st.audit(ctx.paths.audit_log, ctx.actor, "backup", None, "failed", message)
        return EXIT_FAILED
    message = (
        f"backup: done: {result.key} ({result.size} bytes, sha256 {result.sha256}) uploaded and verified"
    )
    if result.pruned:
        message += f"; removed local files older than the local retention: {', '.join(result.pruned)}"
    ctx.say(message)
    st.audit(ctx.paths.audit_log, ctx.actor, "backup", None, "ok", message)
    return EXIT_OK


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BackupFailed | RuntimeFailure):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {exc}"


def _refuse(ctx: Context, action: str, message: str, code: int) -> int:
    print(f"{action}: {message}", file=ctx.err, flush=True)
    st.audit(ctx.paths.audit_log, ctx.actor, action, None, "refused", message)
    return code


# --------------------------------------------------------------------------- listing


def backup_rows(objects: Sequence[RemoteObject], now: dt.datetime) -> list[dict[str, Any]]:
    """The dumps of a listing, newest first; sidecar files and foreign objects left out."""
    rows = []
    for obj in objects:
        match = KEY_RE.match(obj.key)
        when = time_of(obj.key)
        if match is None or when is None:
            continue
        rows.append(
            {
                "key": obj.key,
                "stack": match.group("stack"),
                "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "size": obj.size,
                "age_seconds": max(0, int((now - when).total_seconds())),
            }
        )
    return sorted(rows, key=lambda r: (r["time"], r["key"]), reverse=True)


def format_age(seconds: int) -> str:
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"


def cmd_backups(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    target = load_target(ctx)
    bucket_name, endpoint = _opt(args, "bucket", check_bucket), _opt(args, "endpoint", check_endpoint)
    try:
        bucket = open_bucket(ctx, target.config, bucket_name, endpoint)
        rows = backup_rows(bucket.list(), dt.datetime.now(dt.UTC))
    except BackupFailed as exc:
        print(f"backups: {exc}", file=ctx.err, flush=True)
        return EXIT_FAILED
    if args.json:
        ctx.say(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        ctx.say(f"no backups in bucket {bucket.name}")
    for row in rows:
        ctx.say(f"{row['key']}  {row['size']:>14} bytes  {format_age(row['age_seconds']):>8} ago")
    return EXIT_OK


def _opt(args: argparse.Namespace, name: str, check: Callable[[str], str]) -> str | None:
    value = getattr(args, name, None)
    return check(value) if value is not None else None


# --------------------------------------------------------------------------- restore


@dataclass
class Postgres:
    """SQL and pg_restore in the postgres container, over its local socket (no password)."""

    ctx: Context
    target: Target

    def psql(self, sql: str, database: str = "postgres") -> str:
        config = self.target.config
        argv = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "--no-password", "-U", config.user,
                "-d", database, "-c", sql]  # fmt: skip
        return self.ctx.runtime.exec(self.target.base, config.service, argv, timeout=SQL_TIMEOUT)

    def exists(self, database: str) -> bool:
        query = f"SELECT 1 FROM pg_database WHERE datname = {_literal(database)}"  # noqa: S608 - quoted
        return self.psql(query).strip() == "1"

    def create_like(self, database: str, model: str) -> None:
        """An empty database with ``model``'s encoding and locale (the cluster's defaults without one)."""
        owner = _ident(self.target.config.user)
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
        config = self.target.config
        argv = ["pg_restore", "--exit-on-error", "--single-transaction", "--no-password", "-U", config.user,
                "-d", database]  # fmt: skip
        self.ctx.runtime.exec(self.target.base, config.service, argv, stdin_path=dump, timeout=DUMP_TIMEOUT)

    def list_archive(self, dump: Path) -> str:
        return self.ctx.runtime.exec(
            self.target.base, self.target.config.service, ["pg_restore", "--list"], stdin_path=dump,
            timeout=SQL_TIMEOUT,
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


def resolve_key(bucket: Bucket, wanted: str, stack: str) -> RemoteObject:
    """The dump ``wanted`` names (``latest``: the newest dump of ``stack`` in the bucket).

    One bucket can hold several stacks' dumps (a rebuild's server and the old one both upload
    to the environment's bucket until the old one is retired): "latest" is per stack."""
    if wanted == "latest":
        rows = [r for r in backup_rows(bucket.list(), dt.datetime.now(dt.UTC)) if r["stack"] == stack]
        if not rows:
            raise BackupUsageError(f"no backups of stack {stack} in bucket {bucket.name}: nothing to restore")
        wanted = str(rows[0]["key"])
    if not KEY_RE.match(wanted):
        raise BackupUsageError(
            f"--from: {wanted!r} is not a backup key (bankflow-<stack>-<YYYYmmddTHHMMSSZ>.dump)"
        )
    found = bucket.stat(wanted)
    if found is None:
        raise BackupUsageError(
            f"backup {wanted} is not in bucket {bucket.name}: it expired (the bucket keeps dumps for the "
            "retention days) or never existed; see `backups` for what there is"
        )
    return found


def download_verified(ctx: Context, bucket: Bucket, found: RemoteObject, directory: Path) -> Path:
    local = directory / f"restore-{found.key}"
    partial = directory / f".{local.name}.partial"
    partial.unlink(missing_ok=True)
    try:
        bucket.download(found.key, partial)
        if not partial.is_file():
            raise BackupFailed(
                f"downloading {found.key}: nothing arrived (the key vanished from the bucket?)"
            )
        os.chmod(partial, 0o600)
        got = digest_file(partial)
        if got.size != found.size or (found.md5 is not None and got.md5 != found.md5):
            raise BackupFailed(
                f"downloaded {found.key} does not match the bucket ({got.size} bytes, MD5 {got.md5}; "
                f"bucket: {found.size} bytes, MD5 {found.md5})"
            )
        _, checksum_key = sidecar_keys(found.key)
        if bucket.stat(checksum_key) is not None:
            sums = directory / f".{checksum_key}.restore"
            try:
                bucket.download(checksum_key, sums)
                expected = parse_checksums(sums.read_text(encoding="utf-8", errors="replace")).get(found.key)
            finally:
                sums.unlink(missing_ok=True)
            if expected is None:
                raise BackupFailed(f"{checksum_key} lists no checksum for {found.key}")
            if expected != got.sha256:
                raise BackupFailed(
                    f"{found.key} is corrupt: sha256 {got.sha256}, but {checksum_key} recorded {expected} "
                    "when it was taken"
                )
            ctx.say(f"restore: {found.key}: sha256 matches {checksum_key}")
        else:
            ctx.say(f"restore: {found.key}: no {checksum_key} in the bucket; relying on pg_restore's checks")
        os.replace(partial, local)
    finally:
        partial.unlink(missing_ok=True)
    return local


@dataclass
class RestoreResult:
    key: str
    size: int
    previous: str | None
    apps_healthy: bool
    problems: list[str]


def run_restore(
    ctx: Context,
    wanted: str,
    bucket_name: str | None,
    endpoint: str | None,
    health_timeout: float,
    of_stack: str | None = None,
) -> RestoreResult:
    target = load_target(ctx)
    config = target.config
    bucket = open_bucket(ctx, config, bucket_name, endpoint)
    directory = backups_dir(ctx.paths)
    _ensure_private_dir(directory)

    found = resolve_key(bucket, wanted, of_stack or config.stack)
    ctx.say(f"restore: {found.key} ({found.size} bytes) from bucket {bucket.name}")
    local = download_verified(ctx, bucket, found, directory)
    try:
        with local.open("rb") as handle:
            if handle.read(len(DUMP_MAGIC)) != DUMP_MAGIC:
                raise BackupFailed(f"{found.key} is not a pg_dump custom-format archive")
        pg = Postgres(ctx, target)
        try:
            listing = pg.list_archive(local)
        except RuntimeFailure as exc:
            raise BackupFailed(
                f"{found.key} is not a valid custom-format dump (pg_restore --list: {exc})"
            ) from None
        entries = sum(1 for line in listing.splitlines() if line and not line.startswith(";"))
        ctx.say(f"restore: pg_restore --list: a valid archive of {entries} entries")
        return _restore_with_apps_stopped(ctx, target, pg, local, found, health_timeout)
    finally:
        local.unlink(missing_ok=True)


def _restore_with_apps_stopped(
    ctx: Context, target: Target, pg: Postgres, dump: Path, found: RemoteObject, health_timeout: float
) -> RestoreResult:
    config = target.config
    scratch = f"{config.database}_restoring"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dt%H%M%Sz")
    previous = f"{config.database}_before_restore_{stamp}"
    problems: list[str] = []
    failure: BaseException | None = None
    had_live = False
    try:
        try:
            ctx.say(f"restore: stop-apps: {target.app.name}")
            ctx.runtime.stop(target.app)
            pg.drop(scratch)  # a leftover of an interrupted restore: ours by its name
            pg.create_like(scratch, config.database)
            ctx.say(f"restore: pg_restore --single-transaction into scratch database {scratch}")
            pg.restore(dump, scratch)
        except RuntimeFailure as exc:
            failure = BackupFailed(f"restoring {found.key} into the scratch database failed: {exc}")
            try:
                pg.drop(scratch)
            except RuntimeFailure as drop_exc:
                problems.append(f"dropping the scratch database {scratch} failed: {drop_exc}")
        if failure is None:
            ctx.say(f"restore: swap: {scratch} becomes {config.database} (one transaction)")
            try:
                had_live = pg.swap(config.database, scratch, previous)
            except RuntimeFailure as exc:
                failure = BackupFailed(f"swapping in the restored database failed (nothing renamed): {exc}")
    finally:
        healthy = _start_apps(ctx, target, health_timeout, problems)
    if failure is not None:
        raise _RestoreFailed(str(failure), problems)
    return RestoreResult(found.key, found.size, previous if had_live else None, healthy, problems)


class _RestoreFailed(BackupFailed):
    def __init__(self, message: str, problems: Sequence[str]) -> None:
        super().__init__(message)
        self.problems = list(problems)


def _start_apps(ctx: Context, target: Target, health_timeout: float, problems: list[str]) -> bool:
    """Start the app services again and point nginx at them (a new container means a new address)."""
    from ..contract.upstreams import render_upstreams
    from .agent import upstream_addresses

    ctx.say(f"restore: start-apps: {target.app.name}")
    try:
        ctx.runtime.start(target.app)
        names = target.app_manifest.app_names()
        health = ctx.runtime.wait_healthy(target.app, names, health_timeout)
        bad = [s for s in names if not health.get(s, False)]
        include = render_upstreams(
            upstream_addresses(ctx.runtime, target.manifest, target.app.release), target.release
        )
        st.write_atomic(ctx.paths.nginx / target.manifest.upstreams_file, include.encode())
        ctx.runtime.nginx_test()
        ctx.runtime.nginx_reload()
    except RuntimeFailure as exc:
        problems.append(f"starting the app services failed: {exc}")
        return False
    if bad:
        problems.append(f"app services unhealthy after {health_timeout:.0f}s: {', '.join(bad)}")
        return False
    return True


def cmd_restore(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    if not args.yes:
        raise BackupUsageError("restore replaces the database with the dump: confirm with --yes")
    bucket_name = _opt(args, "bucket", check_bucket)
    endpoint = _opt(args, "endpoint", check_endpoint)
    if (bucket_name is None) != (endpoint is None):
        raise BackupUsageError("--bucket and --endpoint go together")
    try:
        with backup_lock(ctx.paths):
            result = run_restore(
                ctx, args.source, bucket_name, endpoint, args.health_timeout, getattr(args, "of_stack", None)
            )
    except _Locked as exc:
        return _refuse(ctx, "restore", str(exc), EXIT_LOCKED)
    except BackupUsageError as exc:
        return _refuse(ctx, "restore", f"{exc}; nothing changed", EXIT_USAGE)
    except (BackupFailed, RuntimeFailure, OSError) as exc:
        message = f"restore: failed: {_describe(exc)}; the database is unchanged"
        extra = exc.problems if isinstance(exc, _RestoreFailed) else []
        if extra:
            message += "; ATTENTION: " + "; ".join(extra)
        print(message, file=ctx.err, flush=True)
        st.audit(ctx.paths.audit_log, ctx.actor, "restore", None, "failed", message)
        return EXIT_FAILED
    message = f"restore: done: database {result.key} restored ({result.size} bytes)"
    if result.previous:
        message += (
            f"; the previous database is kept as {result.previous}: drop it once the data is confirmed "
            f"(DROP DATABASE {result.previous})"
        )
    if result.problems:
        message += "; ATTENTION: " + "; ".join(result.problems)
    print(message, file=ctx.out if result.apps_healthy else ctx.err, flush=True)
    st.audit(
        ctx.paths.audit_log, ctx.actor, "restore", None, "ok" if result.apps_healthy else "failed", message
    )
    return EXIT_OK if result.apps_healthy else EXIT_FAILED


# --------------------------------------------------------------------------- CLI


Handler = Callable[["Context", argparse.Namespace, "BinaryIO | None"], int]

# subcommand -> (handler, whether it runs under the agent's deploy lock); see agent.COMMANDS.
COMMANDS: Final[dict[str, tuple[Handler, bool]]] = {
    "backup": (cmd_backup, False),  # its own lock: a 2-hour dump never blocks a deploy
    "backups": (cmd_backups, False),
    "restore": (cmd_restore, True),  # no deploy may start or stop containers meanwhile
}


def register(sub: Any) -> None:
    """Add ``backup``, ``backups`` and ``restore`` to the agent's sub-parsers."""
    sub.add_parser("backup", help="dump the database, upload it to the bucket, verify, prune local dumps")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--bucket", help="another bucket (emergency rebuild: the original stack's)")
    where.add_argument("--endpoint", help="that bucket's S3 endpoint, https://REGION.digitaloceanspaces.com")
    listing = sub.add_parser("backups", parents=[where], help="the bucket's dumps, newest first")
    listing.add_argument("--json", action="store_true")
    restore = sub.add_parser(
        "restore", parents=[where], help="replace the database with a dump from the bucket"
    )
    restore.add_argument("--from", dest="source", required=True, metavar="KEY", help="a key, or 'latest'")
    restore.add_argument("--yes", action="store_true", help="required: the database is replaced")
    restore.add_argument(
        "--of-stack",
        help="with --from latest: whose dumps (default: this host's stack; a rebuild: the original)",
    )
    restore.add_argument("--health-timeout", type=float, default=HEALTH_TIMEOUT, help=argparse.SUPPRESS)
