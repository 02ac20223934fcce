"""What the bundle carries for the watch: the every-minute timer and its service, and the webhook
as a 0600 secret file only when the stack configured one."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

from bankflow_infra.contract import layout
from bankflow_infra.host.backups.watch_alerts import load_alerts_config
from bankflow_infra.render.bundle import render_bundle
from bankflow_infra.render.model import SECRET_FILE_MODE
from tests.render.conftest import origin_cert  # noqa: F401 -- the fixture
from tests.render.helpers import CLOUDFLARE, OriginCert, load_settings, make_secrets
from tests.support.tools import require_tool

URL = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/cccccccccccccccccccccccc"


def test_the_watch_runs_every_minute_as_the_agent(origin_cert: OriginCert) -> None:  # noqa: F811
    bundle = render_bundle(
        load_settings("production"), make_secrets(origin_cert), CLOUDFLARE, origin_cert.cert_pem
    )
    service = bundle.file("host/bankflow-backup-watch.service").text
    assert f"ExecStart={layout.AGENT_BIN} backup-watch\n" in service
    timer = bundle.file("host/bankflow-backup-watch.timer").text
    calendar = next(line.split("=", 1)[1] for line in timer.splitlines() if line.startswith("OnCalendar="))
    tool = require_tool("systemd-analyze")
    done = subprocess.run([tool, "calendar", "--iterations=2", calendar], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    times = [line.split()[-2] for line in done.stdout.splitlines() if "UTC" in line and ":" in line][-2:]
    minutes = [int(t.split(":")[1]) for t in times]
    assert (minutes[1] - minutes[0]) % 60 == 1  # one minute apart
    assert not any(f.path.endswith("alerts.json") for f in (*bundle.files, *bundle.secret_files))


def test_the_webhook_is_a_secret_file_the_watch_reads(origin_cert: OriginCert, tmp_path: Path) -> None:  # noqa: F811
    settings = load_settings("production")
    settings = replace(settings, alerts=replace(settings.alerts, slack_url=URL, slack_channel="#ops"))
    bundle = render_bundle(settings, make_secrets(origin_cert), CLOUDFLARE, origin_cert.cert_pem)
    [secret] = [f for f in bundle.secret_files if f.path == "secrets/alerts.json"]
    assert secret.mode == SECRET_FILE_MODE
    assert all(URL not in f.text for f in bundle.files)  # never in a plain (plan-visible) file
    (tmp_path / "alerts.json").write_text(secret.text)
    config = load_alerts_config(tmp_path)
    assert config is not None
    assert (config.stack, config.slack_url, config.slack_channel) == ("production", URL, "#ops")
