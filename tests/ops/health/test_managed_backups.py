"""`health --backups` on a managed database: no pgBackRest to ask; the point in time is DigitalOcean's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.ops.cli import health as health_command
from bankflow_infra.ops.cli import main
from tests.ops.cli.test_health import FAST, _saved, server  # noqa: F401 -- the fixture
from tests.support.https import Certs, LocalHttps
from tests.support.outputs import outputs_document

DATABASE = {"cluster": "bankflow-staging-db", "host": "private-bankflow-staging-db.db.ondigitalocean.com",
            "port": 25060, "pool_port": 25061, "database": "bankflow"}


@pytest.mark.parametrize("as_json", [False, True])
def test_a_managed_database_is_not_asked_for_pgbackrest(
    as_json: bool, certs: Certs, server: LocalHttps, tmp_path: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    def no_pgbackrest(*_args: Any, **_options: Any) -> None:
        pytest.fail("asked the droplet for pgBackRest on a managed database")

    monkeypatch.setattr(health_command, "fetch_pitr_status", no_pgbackrest)
    monkeypatch.setattr(health_command, "newest_backup_time",
                        lambda *_a, **_k: datetime.now(UTC) - timedelta(hours=3))
    monkeypatch.setattr(health_command, "fetch_drill_runs", lambda: [])
    document = outputs_document(origin_certificate=certs.origin.pem) | {"database": DATABASE}
    argv = ["health", "staging", "--origin", "--backups", "--outputs", _saved(tmp_path, document), *FAST]
    code = main([*argv, *(["--json"] if as_json else [])])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    if as_json:
        assert json.loads(out)["pitr"] == {"managed_cluster": "bankflow-staging-db"}
    else:
        assert "point in time: DigitalOcean's, of the managed cluster bankflow-staging-db" in out
        assert "newest backup: 3.0 h old" in out  # the nightly dump is still ours, still checked
