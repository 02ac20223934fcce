"""`health --backups`: the newest dump's age, asked of the droplet, warned past 26 h.

The SSH round trip itself is tested in tests/ops/cli/test_backup.py (newest_backup_time with a
session) and tests/ops/ssh (the transport); here the function that asks the host is replaced so the test
stays on loopback.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bankflow_infra.ops.cli import health as health_command
from bankflow_infra.ops.cli import main
from tests.ops.cli.test_health import FAST, _saved, server  # noqa: F401 -- the fixture
from tests.support.https import Certs, LocalHttps
from tests.support.outputs import outputs_document


@pytest.mark.parametrize(
    ("age_hours", "warned"),
    [(3, False), (30, True)],
    ids=["fresh", "stale"],
)
def test_backup_age_is_reported_and_warned_past_26_hours(
    age_hours, warned, certs: Certs, server: LocalHttps, tmp_path: Path, monkeypatch, capsys  # noqa: F811
) -> None:
    asked = []

    def newest(outputs, **_options):
        asked.append(outputs.stack)
        return datetime.now(UTC) - timedelta(hours=age_hours)

    monkeypatch.setattr(health_command, "newest_backup_time", newest)
    # the pgBackRest status and the last drill: tests/ops/health/test_recovery.py
    pitr = {"archive": {"lag_seconds": 0}}
    monkeypatch.setattr(health_command, "fetch_pitr_status", lambda *_a, **_k: pitr)
    monkeypatch.setattr(health_command, "fetch_drill_runs", lambda: [])
    saved = _saved(tmp_path, outputs_document(origin_certificate=certs.origin.pem))
    code = main(["health", "staging", "--origin", "--backups", "--outputs", saved, *FAST])
    out, err = capsys.readouterr()
    assert code == 0, out + err  # a stale backup warns; it does not fail the health gate
    assert asked == ["staging"]
    assert ("WARNING: newest backup is" in out) is warned
    if not warned:
        assert "newest backup" in out


def test_without_the_flag_the_droplet_is_not_asked(certs: Certs, server: LocalHttps, tmp_path: Path,  # noqa: F811
                                                   monkeypatch, capsys) -> None:
    monkeypatch.setattr(health_command, "newest_backup_time", lambda *_a, **_k: pytest.fail("asked the host"))
    saved = _saved(tmp_path, outputs_document(origin_certificate=certs.origin.pem))
    assert main(["health", "staging", "--origin", "--outputs", saved, *FAST, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backup"] is None


@pytest.mark.parametrize(
    ("days_left", "expected"),
    [(200, None), (20, "expires on"), (-1, "EXPIRED")],
    ids=["far", "within-30-days", "expired"],
)
def test_origin_certificate_expiry_is_warned_a_month_ahead(days_left, expected) -> None:
    from bankflow_infra.ops.health import certificate_warning

    now = datetime(2026, 11, 26, tzinfo=UTC)
    warning = certificate_warning((now + timedelta(days=days_left)).isoformat(), now)
    assert (warning is None) if expected is None else (expected in str(warning))


def test_the_health_table_carries_the_certificate_warning(certs: Certs, server: LocalHttps,  # noqa: F811
                                                          tmp_path: Path, capsys) -> None:
    document = outputs_document(origin_certificate=certs.origin.pem)
    document["origin_cert_expires_on"] = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    code = main(["health", "staging", "--origin", "--outputs", _saved(tmp_path, document), *FAST])
    out = capsys.readouterr().out
    assert code == 0  # a warning, not an outage
    assert "WARNING: the origin certificate expires on" in out
