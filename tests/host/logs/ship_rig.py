"""The shipper's bucket (moto's S3 on loopback, the real rclone) and access-log files in nginx's
JSON-lines format (render/nginx.py's log_format: time, client IP and source port, cf-ray, ...)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from bankflow_infra import catalog
from bankflow_infra.host.backups.storage import Bucket, ProcessRunner, run_process
from bankflow_infra.render.backup import RCLONE_REMOTE, render_rclone_config
from tests.support.s3 import S3

BUCKET = "bankflow-production-backups"
PREFIX = "access-logs/bankflow-production-server"


def open_test_bucket(s3: S3, work: Path, runner: ProcessRunner = run_process, endpoint: str = "") -> Bucket:
    conf = work / "rclone.conf"
    if not conf.exists():
        conf.write_text(render_rclone_config("test", "test"))  # moto accepts any key
        conf.chmod(0o600)
    home = work / "rclone-home"
    home.mkdir(mode=0o700, exist_ok=True)
    return Bucket(conf, RCLONE_REMOTE, BUCKET, endpoint or s3.endpoint, home, runner)


def access_line(n: int) -> str:
    """One request as nginx logs it (JSON lines, the fields Marco Civil art. 15 asks for)."""
    return json.dumps({
        "time": f"2026-11-30T03:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000:03d}+00:00",
        "client_ip": f"203.0.113.{n % 250 + 1}", "client_port": str(40000 + n), "cf_ray": f"8e{n:014x}-GRU",
        "host": "app.conciliaextrato.com", "method": "GET", "uri": f"/r/{n}", "status": 200,
        "bytes": 512, "request_time": 0.004, "upstream": "saas",
    }) + "\n"  # fmt: skip


def write_rotated(directory: Path, stamp: str, lines: list[str], age: float = 600.0) -> Path:
    """A rotated file as logrotate leaves it (owned by nginx's uid), last written ``age`` s ago."""
    path = directory / f"{catalog.ACCESS_LOG_NAME}-{stamp}"
    path.write_text("".join(lines))
    if os.geteuid() == 0:
        os.chown(path, catalog.SERVICE_UIDS["nginx"], catalog.SERVICE_UIDS["nginx"])
    old = path.stat().st_mtime - age
    os.utime(path, (old, old))
    return path


def bucket_texts(s3: S3) -> dict[str, str]:
    """Every access-log object in the bucket, unpacked: key -> log text."""
    out: dict[str, str] = {}
    for key in s3.keys(BUCKET):
        body = s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        out[key] = gzip.decompress(body).decode()
    return out
