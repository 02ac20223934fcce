"""The watch's parsers against REAL pgBackRest 2.45 output (``info --output=json``, captured from
the installed pgbackrest with a posix repository and a PostgreSQL 15 cluster: two backups, a
missing stanza, a wrong cipher pass), and the lag and age limits at their edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bankflow_infra.host.backups.watch_checks import (
    ArchiveState,
    WatchInputError,
    archive_check,
    backup_age_check,
    parse_archive_row,
    parse_pgbackrest_info,
)

DATA = Path(__file__).parent / "data"


def test_the_newest_backup_is_the_latest_stop_of_any_type() -> None:
    newest = parse_pgbackrest_info((DATA / "info-two-backups.json").read_text())
    assert newest is not None
    assert (newest.label, newest.type) == ("20261130-012630F_20261130-012633I", "incr")
    assert newest.stop_time == datetime.fromtimestamp(1796001994, UTC)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("info-missing-stanza.json", "code 1: missing stanza path"),
        ("info-wrong-cipher.json", "code 99: [FormatError]"),
    ],
)
def test_a_stanza_in_error_is_named_printably(fixture: str, expected: str) -> None:
    stanza = "nope" if "missing" in fixture else "bankflow"
    with pytest.raises(WatchInputError, match="pgbackrest info") as caught:
        parse_pgbackrest_info((DATA / fixture).read_bytes().decode("utf-8", "replace"), stanza)
    assert expected in str(caught.value)
    assert str(caught.value).isprintable()
    assert len(str(caught.value)) < 300


def test_backup_age_limit_is_26_hours() -> None:
    newest = parse_pgbackrest_info((DATA / "info-two-backups.json").read_text())
    assert newest is not None
    assert not backup_age_check(newest, newest.stop_time + timedelta(hours=26)).failing
    assert backup_age_check(newest, newest.stop_time + timedelta(hours=26, seconds=1)).failing
    assert backup_age_check(None, newest.stop_time).failing  # an empty repository


def _state(lag: int, mode: str = "on") -> ArchiveState:
    return ArchiveState(
        mode, lag, 1, "", None, "000000010000000000000003", None, 4, "000000010000000000000004"
    )


def test_archive_lag_limit_is_five_minutes_and_archive_mode_off_fails() -> None:
    assert not archive_check(_state(300)).failing
    assert archive_check(_state(301)).failing
    assert archive_check(_state(0, "off")).failing
    assert archive_check(None, "psql in postgres exited 2: could not connect").failing


def test_an_unreadable_archiver_row_is_refused() -> None:
    with pytest.raises(WatchInputError, match="expected 9 fields"):
        parse_archive_row("on|12")
    row = parse_archive_row("on|0|0|000000010000000000000002|1796001990|||0|000000010000000000000003")
    assert row.last_archived_time == datetime.fromtimestamp(1796001990, UTC)
    assert row.last_failed_time is None
