"""The PITR pieces that need no cluster: pgBackRest's info, which set a restore starts from, the
target's grammar, the restore's argv, the nightly backup type."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from bankflow_infra.host.backups.config import BackupUsageError, PitrConfig
from bankflow_infra.host.backups.pitr import auto_type, check_repository, parse_info
from bankflow_infra.host.backups.pitr_restore import (
    RESTORE_MOUNT,
    PitrTarget,
    choose_set,
    parse_target_time,
    restore_args,
)

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
PITR = PitrConfig("bankflow", "/mnt/data/postgres", "/var/lib/postgresql/data", 70, 60)


def _set(label: str, kind: str, stop: dt.datetime) -> dict[str, object]:
    start = int((stop - dt.timedelta(minutes=5)).timestamp())
    return {
        "label": label,
        "type": kind,
        "timestamp": {"start": start, "stop": int(stop.timestamp())},
        "info": {"size": 1000},
    }


def _info(*sets: dict[str, object], code: int = 0, repo_message: str = "") -> str:
    repo = [{"key": 1, "cipher": "aes-256-cbc", "status": {"code": code, "message": repo_message or "ok"}}]
    return json.dumps(
        [
            {
                "name": "bankflow",
                "backup": list(sets),
                "repo": repo,
                "archive": [{"min": "000000010000000000000001", "max": "000000010000000000000009"}],
                "status": {"code": code, "message": "other" if code else "ok"},
            }
        ]
    )


def test_info_lists_sets_oldest_first_and_the_wal_range() -> None:
    info = parse_info(
        _info(_set("B", "incr", NOW), _set("A", "full", NOW - dt.timedelta(days=1))), "bankflow"
    )
    assert [s.label for s in info.sets] == ["A", "B"]
    assert info.ok
    assert info.wal_max == "000000010000000000000009"


def test_an_unreadable_repository_is_refused_with_pgbackrests_reason() -> None:
    text = _info(code=99, repo_message="[CryptoError] unable to flush: \x07 bad decrypt")
    info = parse_info(text, "bankflow")
    with pytest.raises(BackupUsageError, match=r"CryptoError.*cipher pass.*nothing was stopped"):
        check_repository(info)
    assert parse_info("not json", "bankflow").ok is False


def test_the_restore_starts_from_the_newest_set_finished_before_the_target() -> None:
    info = parse_info(
        _info(_set("A", "full", NOW - dt.timedelta(days=2)), _set("B", "incr", NOW - dt.timedelta(days=1))),
        "bankflow",
    )
    at = NOW - dt.timedelta(hours=30)
    assert choose_set(info, PitrTarget("time", time=at)).label == "A"
    assert choose_set(info, PitrTarget("latest")).label == "B"
    with pytest.raises(BackupUsageError, match="before the oldest backup"):
        choose_set(info, PitrTarget("time", time=NOW - dt.timedelta(days=3)))
    with pytest.raises(BackupUsageError, match="no set 'C'"):
        choose_set(info, PitrTarget("set", label="C"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-11-30T11:00:00Z", "is not 'YYYY-MM-DD"),
        ("2026-13-01 00:00:00Z", "not a valid date"),
        ("2026-11-30 12:00:01Z", "in the future"),
    ],
)
def test_bad_targets_are_refused(text: str, message: str) -> None:
    with pytest.raises(BackupUsageError, match=message):
        parse_target_time(text, NOW)
    assert parse_target_time("2026-11-30 11:59:59Z", NOW) == NOW - dt.timedelta(seconds=1)


def test_restore_argv_names_the_set_the_target_and_no_container_path_in_restore_command() -> None:
    info = parse_info(_info(_set("A", "full", NOW - dt.timedelta(days=1))), "bankflow")
    chosen = info.sets[0]
    argv = restore_args(PITR, PitrTarget("time", time=NOW), chosen)
    assert argv[-1] == "restore"
    assert f"--pg1-path={RESTORE_MOUNT}" in argv
    assert "--set=A" in argv
    assert "--type=time" in argv
    assert "--target=2026-11-30 12:00:00+00" in argv
    assert "--target-action=promote" in argv
    option = next(a for a in argv if a.startswith("--recovery-option=restore_command="))
    assert RESTORE_MOUNT not in option
    assert "--type=time" not in restore_args(PITR, PitrTarget("latest"), chosen)
    assert "--type=immediate" in restore_args(PITR, PitrTarget("set", label="A"), chosen)


def test_the_nightly_backup_is_full_weekly_else_incremental() -> None:
    empty = parse_info(_info(), "bankflow")
    assert auto_type(empty, NOW) == "full"
    recent = parse_info(_info(_set("A", "full", NOW - dt.timedelta(days=3))), "bankflow")
    assert auto_type(recent, NOW) == "incr"
    old = parse_info(_info(_set("A", "full", NOW - dt.timedelta(days=7)), _set("B", "incr", NOW)), "bankflow")
    assert auto_type(old, NOW) == "full"


def test_docker_runs_pgbackrest_in_a_one_off_container_and_stops_only_postgres() -> None:
    from pathlib import Path

    from bankflow_infra.host.runtime import DockerRuntime, Project

    bundle = Path("/opt/bankflow/releases/r1")
    base = Project("bankflow", bundle, (bundle / "compose/base.yaml",), None, "r1")
    runtime = DockerRuntime()
    argv = runtime.run_tool_argv(
        base, "postgres", ["pgbackrest", "restore"], {"/mnt/d/pg.restoring-x": RESTORE_MOUNT}, "postgres"
    )
    run = argv.index("run")
    assert argv[run:] == [
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "--user",
        "postgres",
        "-v",
        f"/mnt/d/pg.restoring-x:{RESTORE_MOUNT}",
        "postgres",
        "pgbackrest",
        "restore",
    ]
    assert runtime.stop_services_argv(base, ["postgres"])[-2:] == ["stop", "postgres"]


@pytest.mark.parametrize("owns", [True, False])
def test_only_the_repositorys_owner_creates_a_missing_stanza(
    monkeypatch: pytest.MonkeyPatch, owns: bool
) -> None:
    """A rebuild writing into its environment's bucket never creates that repository's stanza: its
    fresh cluster's backup would be what a later `restore --latest` finds (an empty database)."""
    from types import SimpleNamespace

    from bankflow_infra.host.backups import pitr as pitr_module
    from bankflow_infra.host.backups.config import BackupFailed

    calls: list[tuple[str, ...]] = []
    missing = pitr_module.RepoInfo(1, "missing stanza path", (), None, None)
    done = pitr_module.parse_info(
        _info(_set("20261130-010000F", "full", dt.datetime(2026, 11, 30, 1, tzinfo=dt.UTC))), "bankflow"
    )
    answers = iter([missing, done])
    monkeypatch.setattr(pitr_module, "repo_info", lambda *_a, **_k: next(answers))
    monkeypatch.setattr(pitr_module, "exec_pgbackrest", lambda _c, _l, _p, *argv, **_k: calls.append(argv))
    ctx = SimpleNamespace(say=lambda _m: None)
    live = SimpleNamespace(config=SimpleNamespace(bucket="bankflow-production-backups"))
    config = PitrConfig("bankflow", "/mnt/bankflow-data/postgres", "/var/lib/postgresql/data", 70, 60, owns)
    if owns:
        assert pitr_module.run_pitr_backup(ctx, live, config, "full").created_stanza  # type: ignore[arg-type]
        assert calls == [("stanza-create",), ("--type=full", "backup")]
    else:
        with pytest.raises(BackupFailed, match="never creates it"):
            pitr_module.run_pitr_backup(ctx, live, config, "full")  # type: ignore[arg-type]
        assert calls == []
