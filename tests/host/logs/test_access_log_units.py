"""The rendered access-log files as the host gets them: the units pass systemd-analyze, the timer
fires every 15 minutes, both logrotate configs pass the real logrotate with the service accounts,
and the unit's command line is what the shipper's parser accepts (and nothing malformed is)."""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from bankflow_infra import catalog
from bankflow_infra.contract import layout
from bankflow_infra.host import access_logs_ship
from bankflow_infra.host.backups.config import BackupUsageError
from bankflow_infra.render import host_files
from tests.host.logs.rig import require_root, run_logrotate
from tests.render.helpers import load_settings
from tests.support.tools import require_tool


def _rendered() -> dict[str, str]:
    return host_files.render_host_files(load_settings("production"))


def test_the_units_pass_systemd_analyze_and_run_every_15_minutes(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze")
    rendered = _rendered()
    units = []
    for path in (host_files.ACCESS_SERVICE, host_files.ACCESS_TIMER):
        unit = tmp_path / Path(path).name
        unit.write_text(rendered[path])
        units.append(str(unit))
    done = subprocess.run([tool, "verify", *units], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    timer = rendered[host_files.ACCESS_TIMER]
    calendar = next(line.split("=", 1)[1] for line in timer.splitlines() if line.startswith("OnCalendar="))
    done = subprocess.run([tool, "calendar", "--iterations=3", calendar], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    minutes = [int(line.split()[-2].split(":")[1]) for line in done.stdout.splitlines() if "UTC" in line][-3:]
    assert [(b - a) % 60 for a, b in itertools.pairwise(minutes)] == [15, 15]


def _ship_command(service: str) -> list[str]:
    line = next(v for v in service.splitlines() if v.startswith(f"ExecStart={layout.AGENT_BIN} "))
    return shlex.split(line.removeprefix(f"ExecStart={layout.AGENT_BIN} "))


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    access_logs_ship.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_the_unit_ships_nginx_access_log_into_the_droplets_own_folder() -> None:
    service = _rendered()[host_files.ACCESS_SERVICE]
    args = _parse(_ship_command(service))
    access_logs_ship.check_arguments(args)  # accepted as rendered
    assert args.command == "access-logs-ship"
    assert str(args.dir) == catalog.service_log_dir("nginx")
    assert args.name == catalog.ACCESS_LOG_NAME
    assert args.prefix == "access-logs/bankflow-production-server"
    # rotation first, with its own state and config (never the daily logrotate's)
    rotate = next(v for v in service.splitlines() if v.startswith("ExecStart=")).split()
    assert rotate[1:] == ["--state", f"{layout.STATE_DIR}/logrotate-access-logs.status",
                          host_files.ACCESS_LOGROTATE_INSTALLED]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dir", "logs/nginx"], "--dir: 'logs/nginx' is not an absolute path"),
        (["--name", "../access.log"], "--name: '../access.log' is not a file name"),
        (["--prefix", "access-logs/../x y"], "--prefix: 'access-logs/../x y' is not a bucket path"),
        (["--prefix", "/access-logs"], "--prefix: '/access-logs' is not a bucket path"),
        (["--settle", "-1"], "--settle: -1.0 is not a number of seconds in 0..3600"),
    ],
)
def test_a_malformed_argument_is_refused_with_one_clear_error(argv: list[str], message: str) -> None:
    good = {"--dir": "/opt/bankflow/logs/nginx", "--name": "access.log", "--prefix": "access-logs/h"}
    good.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    args = _parse(["access-logs-ship", *[x for pair in good.items() for x in pair]])
    with pytest.raises(BackupUsageError, match=r"^" + re.escape(message)):
        access_logs_ship.check_arguments(args)


def test_the_real_logrotate_accepts_both_rendered_configs(tmp_path: Path) -> None:
    require_root()  # logrotate's su and the accounts' namespace
    rendered = _rendered()
    plans = {}
    for path in (host_files.LOGROTATE, host_files.ACCESS_LOGROTATE):
        config = tmp_path / Path(path).name
        config.write_text(rendered[path])
        done = run_logrotate(config, tmp_path / f"{config.name}.status", force=False, debug=True)
        assert done.returncode == 0, done.stderr
        assert "error" not in done.stderr.lower(), done.stderr
        plans[path] = done.stderr
    for service, uid in catalog.SERVICE_UIDS.items():  # each directory worked in as its owner
        pattern = f"rotating pattern: {catalog.service_log_dir(service)}/"
        plan = plans[host_files.ACCESS_LOGROTATE if service == "nginx" else host_files.LOGROTATE]
        assert pattern in plan, service
        stanza = plan.split(pattern, 1)[1].split("rotating pattern", 1)[0]
        assert f"switching euid from 0 to {uid} and egid from 0 to {uid}" in stanza, service
    access = f"{catalog.service_log_dir('nginx')}/{catalog.ACCESS_LOG_NAME}  hourly"
    assert access in plans[host_files.ACCESS_LOGROTATE]
    assert f"{layout.LOGS_DIR}/*" not in plans[host_files.LOGROTATE]  # no glob over the shared parent
