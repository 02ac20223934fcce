"""Issue 12, item 4 end to end on loopback: the real nginx writes JSON access lines into its log
directory (owned by nginx's uid), the real logrotate rotates the file with the rendered config
(as that uid; nginx told to reopen), and the shipper puts every line in moto's S3 -- each request
once, with its client source port and cf-ray -- and nothing is left on the host but the live log.

The log_format here stands in for render/nginx.py's (H3, issue 12): the same fields, as JSON.
"""

from __future__ import annotations

import gzip
import http.client
import json
import subprocess
import time
from pathlib import Path

from bankflow_infra import catalog
from bankflow_infra.host.access_logs_ship import ship_access_logs
from bankflow_infra.render.host_files import render_access_logrotate
from tests.host.logs.rig import host_tree, require_root, run_logrotate
from tests.host.logs.ship_rig import BUCKET, PREFIX, open_test_bucket
from tests.support.ports import free_port
from tests.support.s3 import S3
from tests.support.tools import require_tool

LOG_FORMAT = (
    "log_format bankflow_access escape=json '{\"time\":\"$time_iso8601\",\"msec\":\"$msec\","
    "\"client_ip\":\"$remote_addr\",\"client_port\":\"$http_x_client_source_port\",\"cf_ray\":\"$http_cf_ray\","
    "\"host\":\"$host\",\"method\":\"$request_method\",\"uri\":\"$request_uri\",\"status\":$status,"
    "\"bytes\":$body_bytes_sent,\"request_time\":$request_time}';"
)



def _start_nginx(root: Path, log: Path, port: int) -> subprocess.Popen[bytes]:
    nginx = require_tool("nginx")
    run = root / "nginx-run"
    run.mkdir()
    temp = " ".join(f"{k}_temp_path {run}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = run / "nginx.conf"
    conf.write_text(
        f"daemon off; pid {run}/nginx.pid; error_log {run}/error.log warn; worker_processes 2;\n"
        f"events {{ worker_connections 64; }}\nhttp {{ {temp}\n  {LOG_FORMAT}\n"
        f"  access_log {log} bankflow_access;\n"
        f"  server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }} }}\n"
    )
    process = subprocess.Popen([nginx, "-c", str(conf), "-e", str(run / "error.log")])
    for _ in range(100):
        if (run / "nginx.pid").exists() and log.exists():
            return process
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"nginx did not start: {(run / 'error.log').read_text(errors='replace')}")


def _request(port: int, n: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {catalog.CLIENT_PORT_HEADER: str(40000 + n), "CF-Ray": f"ray{n}-GRU"}
    connection.request("GET", f"/r/{n}", headers=headers)
    assert connection.getresponse().read() == b"ok\n"
    connection.close()


def test_nginx_lines_are_rotated_and_shipped_whole(s3: S3, host_root: Path, tmp_path: Path) -> None:
    require_root()
    tree = host_tree(host_root)
    log_dir = tree.service_dir("nginx")
    log = log_dir / catalog.ACCESS_LOG_NAME
    port = free_port()
    nginx = _start_nginx(host_root, log, port)
    try:
        for n in range(200):
            _request(port, n)
        config = tmp_path / "logrotate-access-logs"
        pid = host_root / "nginx-run" / "nginx.pid"
        config.write_text(render_access_logrotate(str(log), reopen=f'kill -USR1 "$(cat {pid})"'))
        done = run_logrotate(config, tmp_path / "status")
        assert done.returncode == 0, done.stderr
        for _ in range(100):  # nginx reopens on USR1: a new file, the next lines in it
            if log.exists():
                break
            time.sleep(0.05)
        for n in range(200, 250):
            _request(port, n)
        spool = tmp_path / "spool"
        spool.mkdir(mode=0o700)
        bucket = open_test_bucket(s3, tmp_path)
        shipped: list[str] = []
        for _ in range(50):  # until nginx's workers let go of the renamed file
            report = ship_access_logs(bucket, log_dir, catalog.ACCESS_LOG_NAME, PREFIX, spool, settle=0)
            assert report.failed == []
            shipped += report.shipped
            if shipped:
                break
            time.sleep(0.1)
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)

    keys = s3.keys(BUCKET)
    assert len(keys) == 1, keys
    assert keys[0].startswith(f"{PREFIX}/{catalog.ACCESS_LOG_NAME}-")
    text = gzip.decompress(s3.client.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read()).decode()
    # Each request once. Two workers each write a line after answering, so the file's order may
    # swap neighbours (the client's next request can be logged by the other worker first).
    entries = sorted((json.loads(line) for line in text.splitlines()), key=lambda e: int(e["uri"][3:]))
    assert [e["uri"] for e in entries] == [f"/r/{n}" for n in range(200)]
    assert [(e["client_port"], e["cf_ray"]) for e in entries] == [
        (str(40000 + n), f"ray{n}-GRU") for n in range(200)
    ]
    assert [p.name for p in log_dir.iterdir()] == [catalog.ACCESS_LOG_NAME]  # only the live log is left
    live_lines = log.read_text().splitlines()
    live = sorted((json.loads(line)["uri"] for line in live_lines), key=lambda uri: int(uri[3:]))
    assert live == [f"/r/{n}" for n in range(200, 250)]  # the lines after the rotation: in the new file
