"""`restore STACK --to-time T` on a managed database: a DigitalOcean fork, the live cluster only read.

The real command (argument parsing, outputs file, pydo, HTTP) against a loopback stand-in of the
DigitalOcean API (do_databases.py) that records every request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.ops.cli import backup_fork, main
from bankflow_infra.ops.doctor_apis import DIGITALOCEAN_TOKEN_ENV, DIGITALOCEAN_URL_ENV
from tests.ops.backup_guard.do_databases import TOKEN, DatabasesState, databases_api, live_cluster
from tests.support.outputs import outputs_document

CLUSTER = "bankflow-production-db"
NOW = datetime.now(UTC).replace(microsecond=0)
TIME_FORMAT = "%Y-%m-%d %H:%M:%SZ"
LIVE_RULES = [{"type": "tag", "value": "stack-production"}]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabasesState]:
    live = live_cluster(CLUSTER)
    state = DatabasesState(clusters=[live, live_cluster("someone-else-db")])
    state.backups[live["id"]] = [
        {"created_at": f"{NOW - timedelta(days=days, hours=1):%Y-%m-%dT%H:%M:%SZ}", "size_gigabytes": 1.5}
        for days in range(7)
    ]
    state.firewalls[live["id"]] = [{"uuid": "r1", "cluster_uuid": live["id"], **rule} for rule in LIVE_RULES]
    monkeypatch.setattr(backup_fork, "POLL_SECONDS", 0.01)
    monkeypatch.setenv(DIGITALOCEAN_TOKEN_ENV, TOKEN)
    with databases_api(state) as url:
        monkeypatch.setenv(DIGITALOCEAN_URL_ENV, url)
        yield state


def outputs_file(tmp_path: Path) -> Path:
    document = outputs_document("production") | {
        "database": {"cluster": CLUSTER, "host": f"private-{CLUSTER}.db.ondigitalocean.com", "port": 25060,
                     "pool_port": 25061, "database": "bankflow"}}
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(document))
    return path


def restore(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["restore", "production", "--outputs", str(outputs_file(tmp_path)), *args])
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    return code, out, err


def live_id(state: DatabasesState) -> str:
    return next(c["id"] for c in state.clusters if c["name"] == CLUSTER)


def writes(state: DatabasesState) -> list[tuple[str, str, Any]]:
    return [(r.method, r.path, r.body) for r in state.requests if r.method != "GET"]


def test_a_fork_at_the_time_copies_the_cluster_and_never_writes_to_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], api: DatabasesState
) -> None:
    target = NOW - timedelta(days=2, minutes=7)
    code, out, err = restore(tmp_path, capsys, "--to-time", target.strftime(TIME_FORMAT), "--yes")
    assert code == 0, err
    live = live_id(api)
    [(method, path, body)] = writes(api)  # exactly one write: the create
    assert (method, path) == ("POST", "/v2/databases")
    assert body["backup_restore"] == {"database_name": CLUSTER,
                                      "backup_created_at": target.strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert body["name"] == f"{CLUSTER}-fork-{target:%Y%m%d-%H%M}"
    source = api.cluster(live)
    assert source is not None
    for key in ("engine", "version", "region", "size", "num_nodes", "private_network_uuid", "tags"):
        assert body[key] == source[key], key
    assert body["rules"] == LIVE_RULES  # trusted sources from the first moment
    # The live cluster: GETs only (the list, its backups, its trusted sources).
    assert {r.path for r in api.requests if live in r.path} == {f"/v2/databases/{live}/backups",
                                                                f"/v2/databases/{live}/firewall"}
    assert all(r.method == "GET" for r in api.requests if live in r.path)
    fork = next(c for c in api.clusters if c["name"] == body["name"])
    assert fork["status"] == "online"
    assert api.firewalls[fork["id"]] == LIVE_RULES
    assert f"is online at private-{body['name']}.db.ondigitalocean.com, port 25060" in out
    assert f"Stack production still serves from {CLUSTER}, unchanged" in out
    assert "docs/RUNBOOK-managed-database.md" in out
    # the uploads of the same moment: the host agent's command, with the same time
    assert f"bankflow-agent uploads-aside --to-time '{target.strftime(TIME_FORMAT)}'" in out


def test_latest_lets_digitalocean_take_its_newest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], api: DatabasesState
) -> None:
    code, _out, err = restore(tmp_path, capsys, "--latest", "--yes", "--fork-name", "prod-db-check")
    assert code == 0, err
    [(_method, _path, body)] = writes(api)
    assert body["backup_restore"] == {"database_name": CLUSTER}
    assert body["name"] == "prod-db-check"


def test_a_time_before_the_oldest_backup_is_refused_before_anything_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], api: DatabasesState
) -> None:
    code, _out, err = restore(tmp_path, capsys, "--to-time", (NOW - timedelta(days=8)).strftime(TIME_FORMAT),
                              "--yes")
    assert code == 2
    assert "is before the oldest backup DigitalOcean keeps" in err
    assert "backups are kept 7 days" in err
    assert writes(api) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to-time", (NOW + timedelta(hours=1)).strftime(TIME_FORMAT), "--yes"], "is in the future"),
        (["--to-time", "yesterday", "--yes"], "is not 'YYYY-MM-DD HH:MM:SSZ'"),
        (["--backup-set", "20260101-000000F", "--yes"], "no pgBackRest backup sets"),
        (["--latest", "--source-stack", "staging", "--yes"], "--source-stack does not apply"),
        (["--latest"], "not a terminal: refusing to create a fork without --yes"),
    ],
)
def test_refused_before_any_api_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], api: DatabasesState, args: list[str], message: str
) -> None:
    code, _out, err = restore(tmp_path, capsys, *args)
    assert code == 2
    assert message in err
    assert api.requests == []


def test_a_taken_fork_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], api: DatabasesState
) -> None:
    code, _out, err = restore(tmp_path, capsys, "--latest", "--yes", "--fork-name", "someone-else-db")
    assert code == 2
    assert "a cluster named 'someone-else-db' exists already" in err
    assert writes(api) == []


def test_without_a_token_nothing_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], api: DatabasesState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DIGITALOCEAN_TOKEN_ENV)
    code, _out, err = restore(tmp_path, capsys, "--latest", "--yes")
    assert code == 2
    assert "DIGITALOCEAN_TOKEN is not set" in err
    assert api.requests == []


def test_a_rejected_token_is_reported_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], api: DatabasesState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DIGITALOCEAN_TOKEN_ENV, "dop_v1_" + "0" * 64)
    code, _out, err = restore(tmp_path, capsys, "--latest", "--yes")
    assert code == 1
    assert "DigitalOcean: HTTP 401: Unauthorized: Unable to authenticate you; nothing changed" in err
    assert "0" * 64 not in err
    assert writes(api) == []


def test_a_fork_that_is_not_online_by_the_deadline_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], api: DatabasesState
) -> None:
    api.reads_until_online = 10**6
    code, out, _err = restore(tmp_path, capsys, "--latest", "--yes", "--wait-minutes", "0.001")
    assert code == 1
    assert "is not online yet (status 'creating'); DigitalOcean keeps building it" in out
    assert [m for m, _p, _b in writes(api)] == ["POST"]


def test_trusted_sources_dropped_by_the_create_are_set_on_the_fork(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], api: DatabasesState
) -> None:
    api.keep_rules_on_create = False
    code, _out, err = restore(tmp_path, capsys, "--latest", "--yes")
    assert code == 0, err
    (_post, _path, body), (put, put_path, put_body) = writes(api)
    fork = next(c for c in api.clusters if c["name"] == body["name"])
    assert (put, put_path, put_body) == ("PUT", f"/v2/databases/{fork['id']}/firewall", {"rules": LIVE_RULES})
    assert live_id(api) not in put_path
