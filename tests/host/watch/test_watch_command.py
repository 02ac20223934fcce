"""``backup-watch`` as the agent runs it on a deployed host: the live release's postgres service,
reached through the runtime's exec (the backup tests' host: real PostgreSQL 15 -- not archiving --
real nginx, stand-in Docker that runs psql locally and refuses anything else, like pgbackrest)."""

from __future__ import annotations

import argparse
import io

import pytest

from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.host.backups import watch
from bankflow_infra.host.backups.config import BackupUsageError
from bankflow_infra.host.context import Context, Options
from tests.host.backups.conftest import BackupHost, host, pg, s3  # noqa: F401 -- the fixtures


def test_the_watch_asks_the_live_postgres_service_and_fails_on_what_it_finds(host: BackupHost) -> None:  # noqa: F811
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(HostPaths(host.env.home), host.runtime, Options(), "test", out, err)
    assert watch.cmd_backup_watch(ctx, argparse.Namespace()) == 1
    execs = host.runtime.exec_argvs()
    assert execs[0][:2] == ["psql", "-X"]
    assert "-U" in execs[0]
    assert execs[0][-2:] == ["-c", watch.ARCHIVE_SQL]
    assert execs[1] == list(watch.PGBACKREST_INFO_ARGV)
    assert "FAIL  archive: WAL archiving is off (archive_mode=off)" in err.getvalue()
    assert (
        "FAIL  backup-age: newest database backup unknown: stand-in: cannot exec ['pgbackrest']"
        in err.getvalue()
    )


def test_without_a_release_the_watch_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = Context(HostPaths(tmp_path), None, Options(), "test", io.StringIO(), io.StringIO())  # type: ignore[arg-type]
    with pytest.raises(BackupUsageError, match="no release deployed yet"):
        watch.cmd_backup_watch(ctx, argparse.Namespace())
