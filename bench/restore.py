"""Backup and restore throughput: pgBackRest vs plain ``pg_dump -Fc | pg_restore``, same machine.

Run: ``nice venv/bin/python -m bench.restore [--scale 70]`` (repo root; several minutes).

A throw-away PostgreSQL 15 cluster gets a pgbench database of about ``15 MB x scale`` (scale 70:
about 1.05 GB), archiving WAL with pgBackRest to two repositories at once: repo1 a local posix
directory (pgBackRest's raw speed: no network, no S3), repo2 S3 (moto on loopback behind nginx's
TLS, as the tests use, encrypted with aes-256-cbc like production). It prints, in MB of database
per second: pgBackRest full backup to each repository, pgBackRest restore from each (the files;
then the time until the restored cluster accepts connections), and pg_dump -Fc then pg_restore
into a fresh database; then the ratios. Production settings: gz compression, process-max 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.postgres import DATABASE, SUPERUSER, PgCluster, start_cluster
from tests.support.s3 import moto_s3, tls_front

CIPHER = "YmVuY2gtY2lwaGVyLXBhc3MtMDAwMDAwMDAwMDAwMDA="  # a bench value


def _timed(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(list(argv), capture_output=True, env=env, check=False, timeout=7200)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {done.stderr.decode(errors='replace')[-800:]}")
    return time.monotonic() - started


def _conf(root: Path, pg: PgCluster, s3_endpoint: str, bucket: str, ca: Path) -> Path:
    host_port = s3_endpoint.split("://", 1)[1]
    host, _, port = host_port.partition(":")
    conf = root / "pgbackrest.conf"
    conf.write_text(
        "[global]\n"
        f"repo1-path={root / 'repo-posix'}\nrepo1-retention-full=9\n"
        "repo2-type=s3\n"
        f"repo2-s3-endpoint={host}\nrepo2-storage-port={port}\nrepo2-s3-bucket={bucket}\n"
        "repo2-s3-region=us-east-1\nrepo2-s3-key=bench\nrepo2-s3-key-secret=bench\nrepo2-s3-uri-style=path\n"
        f"repo2-storage-ca-file={ca}\nrepo2-path=/pgbackrest\nrepo2-retention-full=9\n"
        f"repo2-cipher-type=aes-256-cbc\nrepo2-cipher-pass={CIPHER}\n"
        "start-fast=y\nlog-level-console=off\nlog-level-stderr=warn\nlog-level-file=off\n"
        f"lock-path={root / 'lock'}\n"
        f"[bankflow]\npg1-path={pg.data}\npg1-socket-path={pg.socket_dir}\npg1-port={pg.port}\n"
        f"pg1-user={SUPERUSER}\n"
    )
    return conf


def _chown(owner: str | None, *paths: Path) -> None:
    if owner:
        info = pwd.getpwnam(owner)
        for path in paths:
            os.chown(path, info.pw_uid, info.pw_gid)


def _restore_and_start(pg: PgCluster, conf: Path, repo: int, target: Path) -> tuple[float, float]:
    """(seconds of `pgbackrest restore`, seconds until the restored cluster answers)."""
    target.mkdir(mode=0o700)
    _chown(pg.owner, target)
    files = _timed(
        pg.as_owner(
            [
                "pgbackrest",
                f"--config={conf}",
                "--stanza=bankflow",
                f"--repo={repo}",
                f"--pg1-path={target}",
                "--type=immediate",
                "--target-action=promote",
                "--archive-mode=off",
                "restore",
            ]
        )
    )
    port = pg.port + 1000 + repo
    started = time.monotonic()
    _timed(
        pg.as_owner(
            [
                pg.bins["pg_ctl"],
                "-D",
                str(target),
                "-o",
                f"-k {pg.socket_dir} -p {port} -c listen_addresses='' -c archive_mode=off",
                "-w",
                "-t",
                "3600",
                "-l",
                str(target / "startup.log"),
                "start",
            ]
        )
    )
    ready = time.monotonic() - started
    _timed(pg.as_owner([pg.bins["pg_ctl"], "-D", str(target), "-m", "fast", "-w", "stop"]))
    shutil.rmtree(target, ignore_errors=True)
    return files, ready


def main(argv: Sequence[str] | None = None) -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request lines
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (about 15 MB each)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bankflow-bench-restore-"))
    os.chmod(root, 0o755)  # noqa: S103 - the cluster's owner works here
    with moto_s3() as s3:
        front = tls_front(s3.endpoint, root / "tls")
        ca = root / "ca.pem"
        shutil.copyfile(front.ca_file, ca)
        os.chmod(ca, 0o644)
        s3.client.create_bucket(Bucket="bankflow-bench-backups")
        conf_path = root / "pgbackrest.conf"
        archive = (
            f"-c archive_mode=on -c wal_level=replica -c max_wal_size=4GB "
            f'-c "archive_command=pgbackrest --config={conf_path} --stanza=bankflow archive-push %p"'
        )
        pg = start_cluster([archive])
        try:
            return _run(pg, args.scale, root, _conf(root, pg, front.endpoint, "bankflow-bench-backups", ca))
        finally:
            pg.stop()
            front.stop()
            shutil.rmtree(root, ignore_errors=True)


def _run(pg: PgCluster, scale: int, root: Path, conf: Path) -> int:
    (root / "lock").mkdir()
    (root / "repo-posix").mkdir()
    _chown(pg.owner, conf, root / "lock", root / "repo-posix")
    pgbr = ["pgbackrest", f"--config={conf}", "--stanza=bankflow"]
    print(f"generating the database: pgbench -i -s {scale} ...", flush=True)
    _timed(["pgbench", "-i", "-q", "-s", str(scale), "-U", SUPERUSER, DATABASE], env=pg.env())
    pg.psql("CHECKPOINT")
    size_mb = int(pg.psql(f"SELECT pg_database_size('{DATABASE}')").strip()) / 1e6
    cluster_mb = int(pg.psql("SELECT sum(pg_database_size(datname)) FROM pg_database").strip()) / 1e6
    print(f"database {DATABASE}: {size_mb:.0f} MB (cluster {cluster_mb:.0f} MB)", flush=True)
    _timed(pg.as_owner([*pgbr, "stanza-create"]))
    figures: dict[str, float] = {}
    for repo, name in ((1, "posix"), (2, "s3")):
        seconds = _timed(pg.as_owner([*pgbr, f"--repo={repo}", "--type=full", "backup"]))
        figures[f"backup {name}"] = cluster_mb / seconds
        print(
            f"pgBackRest full backup to {name}: {seconds:.1f}s, {cluster_mb / seconds:.1f} MB/s", flush=True
        )
    for repo, name in ((1, "posix"), (2, "s3")):
        files, ready = _restore_and_start(pg, conf, repo, root / f"restored-{name}")
        figures[f"restore {name}"] = cluster_mb / files
        figures[f"restore {name} ready"] = cluster_mb / (files + ready)
        print(
            f"pgBackRest restore from {name}: files {files:.1f}s ({cluster_mb / files:.1f} MB/s), "
            f"then accepting connections after {ready:.1f}s "
            f"({cluster_mb / (files + ready):.1f} MB/s overall)",
            flush=True,
        )
    dump = root / "bench.dump"
    seconds = _timed(["sh", "-c", f'pg_dump -Fc -U {SUPERUSER} {DATABASE} > "{dump}"'], env=pg.env())
    figures["pg_dump"] = size_mb / seconds
    print(
        f"pg_dump -Fc: {seconds:.1f}s, {size_mb / seconds:.1f} MB/s "
        f"({dump.stat().st_size / 1e6:.0f} MB dump)",
        flush=True,
    )
    pg.psql("CREATE DATABASE bench_restored", "postgres")
    seconds = _timed(["pg_restore", "-U", SUPERUSER, "-d", "bench_restored", str(dump)], env=pg.env())
    figures["pg_restore"] = size_mb / seconds
    print(f"pg_restore: {seconds:.1f}s, {size_mb / seconds:.1f} MB/s", flush=True)
    print("\nratios (pgBackRest / pg_dump|pg_restore, MB of database per second):")
    print(f"  backup  to S3 vs pg_dump:    {figures['backup s3'] / figures['pg_dump']:.2f}x")
    print(f"  restore from S3 vs pg_restore (files): {figures['restore s3'] / figures['pg_restore']:.2f}x")
    print(
        f"  restore from S3 vs pg_restore (until accepting connections): "
        f"{figures['restore s3 ready'] / figures['pg_restore']:.2f}x"
    )
    print(
        f"  raw (posix) vs S3: backup {figures['backup posix'] / figures['backup s3']:.2f}x, "
        f"restore {figures['restore posix'] / figures['restore s3']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
