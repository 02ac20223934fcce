"""A point-in-time restore brings the database AND the uploads back to the same moment
(``host/backups/after_restore.py`` joining ``pitr_restore.py`` and ``uploads.py``): REAL PostgreSQL
15 archiving through the REAL pgBackRest 2.45 into S3 (moto behind nginx's TLS), and the REAL
restic against the same moto, driven by the agent's own commands (Docker stand-in: pitr_rig.py).

One cluster for the module (starting it and the first full backup are the slow part): every test
makes its own table and its own files, and takes the backups it restores from itself.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bankflow_infra.catalog import ARCHIVE_TIMEOUT_SECONDS
from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.host.backups.uploads_migrate import tree_digest
from bankflow_infra.host.runtime import RuntimeFailure
from tests.host.backups.pitr_rig import CIPHER_PASS, PitrStandinRuntime, add_pitr_files, add_uploads_files
from tests.host.backups.rig import run_agent
from tests.host.fixtures import HostEnv
from tests.support.ports import free_port
from tests.support.postgres import PgCluster, start_cluster
from tests.support.s3 import S3, TlsFront, tls_front
from tests.support.tools import require_tool

# pgBackRest's default lock path is shared with test_pitr.py's clusters (stanza bankflow): one worker.
pytestmark = pytest.mark.xdist_group("pgbackrest-default-lock-path")

PROMOTE = ("--promote-timeout", "120")  # an upper bound for a restore that must succeed


@dataclass
class JoinedHost:
    env: HostEnv
    runtime: PitrStandinRuntime
    pg: PgCluster
    front: TlsFront
    uploads: Path  # the live uploads tree (backup/uploads.json uploads_dir)
    before_uploads: str  # a target after the first pgBackRest backup, before any uploads snapshot

    def agent(self, *args: str) -> tuple[int, str, str]:
        """The backup commands as the agent dispatches them (restore, pitr-*)."""
        return run_agent(self.env, *args)

    def uploads_backup(self) -> None:
        code, out, err = self.env.agent("uploads-backup")  # the agent's own entry point
        assert code == 0, out + err

    def pitr_backup(self) -> None:
        code, out, err = self.agent("pitr-backup", "--type", "incr")
        assert code == 0, out + err

    def journal_calls(self, since: int = 0) -> list[str]:
        """What the runtime was asked to do, e.g. ``run_tool pgbackrest info``."""
        calls = []
        for entry in self.runtime.journal()[since:]:
            argv = entry.get("argv")
            words = [str(a) for a in argv if not str(a).startswith("-")] if isinstance(argv, list) else []
            calls.append(" ".join([str(entry["call"]), *words]))
        return calls


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory, s3: S3) -> Iterator[JoinedHost]:
    """A host whose current release has backup.json with pitr AND backup/uploads.json (+ the
    restic secret), a full pgBackRest backup, an uploads tree and no uploads snapshot yet."""
    require_tool("pgbackrest")
    require_tool("restic")
    nginx = require_tool("nginx")
    root = tmp_path_factory.mktemp("joined")
    front = tls_front(s3.endpoint, root / "s3-tls")
    shared = Path(tempfile.mkdtemp(prefix="bankflow-pgbr-"))
    os.chmod(shared, 0o755)  # noqa: S103 - the cluster's owner reads the test config here
    conf, ca_file = shared / "pgbackrest-test.conf", shared / "s3-ca.pem"
    shutil.copyfile(front.ca_file, ca_file)
    os.chmod(ca_file, 0o644)
    archive = (
        f"-c archive_mode=on -c archive_timeout={ARCHIVE_TIMEOUT_SECONDS} -c wal_level=replica "
        f'-c "archive_command=pgbackrest --config={conf} --stanza=bankflow archive-push %p"'
    )
    pg = start_cluster([archive])
    home, run, bundles, uploads = root / "home", root / "run", root / "bundles", root / "volume" / "uploads"
    for path in (home, run / "nginx-tmp", bundles, uploads):
        path.mkdir(parents=True)
    runtime = PitrStandinRuntime(
        run, nginx, home / "nginx" / "nginx.conf", pg, HostPaths(home).secrets, str(ca_file), conf
    )
    env = HostEnv(home, run, bundles, free_port(), runtime, verify_port=free_port())
    bucket = f"bankflow-joined-{uuid.uuid4().hex[:12]}"
    s3.client.create_bucket(Bucket=bucket)
    try:
        bundle = env.bundle("v1")
        add_pitr_files(bundle, front.endpoint, bucket, pg, CIPHER_PASS)
        add_uploads_files(bundle, s3.endpoint, bucket, uploads)  # restic straight to moto
        code, out, err = env.deploy(bundle)
        assert code == 0, out + err
        runtime.write_conf()
        code, out, err = run_agent(env, "pitr-backup", "--type", "full")
        assert code == 0, out + err
        before_uploads = whole_second_from_now()
        time.sleep(1.1)  # every uploads snapshot is taken after it
        yield JoinedHost(env, runtime, pg, front, uploads, before_uploads)
    finally:
        runtime.shutdown()
        pg.stop()
        front.stop()
        shutil.rmtree(shared, ignore_errors=True)


def whole_second_from_now() -> str:
    """The next whole second (the restore's granularity), once it has passed: a target after
    everything done so far and before everything done from now on."""
    target = math.ceil(time.time() + 0.01)
    time.sleep(max(0.0, target - time.time()) + 0.2)
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(target))


def rows(pg: PgCluster, table: str) -> list[str]:
    return pg.psql(f"SELECT id || '|' || body FROM {table} ORDER BY id").split()  # noqa: S608 - ours


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def kept(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.previous-"))


def test_restore_to_a_time_brings_rows_and_uploads_back_to_that_time(joined: JoinedHost) -> None:
    pg, uploads = joined.pg, joined.uploads
    pg.psql("CREATE TABLE statements (id int PRIMARY KEY, body text NOT NULL)")
    pg.psql("INSERT INTO statements SELECT g, 'v1-' || g FROM generate_series(1, 100) g")
    shutil.rmtree(uploads)
    uploads.mkdir()
    write_files(uploads, {"a.txt": b"statement A v1\n", "keep/b.bin": os.urandom(40_000), "gone.txt": b"x\n"})
    joined.pitr_backup()
    joined.uploads_backup()
    rows_at_t, tree_at_t = rows(pg, "statements"), tree_digest(uploads)
    target = whole_second_from_now()
    time.sleep(1.0)  # every change below commits more than a second after T

    pg.psql("UPDATE statements SET body = 'v2-' || id WHERE id <= 10")
    pg.psql("DELETE FROM statements WHERE id > 90")
    pg.psql("INSERT INTO statements SELECT g, 'new-' || g FROM generate_series(101, 120) g")
    (uploads / "a.txt").write_bytes(b"statement A v2, edited after T\n")
    (uploads / "gone.txt").unlink()
    write_files(uploads, {"new/c.txt": b"added after T\n"})
    joined.uploads_backup()
    joined.pitr_backup()  # archives the WAL of the changes: recovery finds the first commit after T
    rows_changed, tree_changed = rows(pg, "statements"), tree_digest(uploads)
    assert rows_changed != rows_at_t
    assert tree_changed != tree_at_t
    clusters_before, trees_before = kept(pg.data), kept(uploads)

    code, out, err = joined.agent("restore", "--to-time", target, "--yes", *PROMOTE)
    assert code == 0, out + err
    assert "restore: uploads: swapped in" in out
    assert rows(pg, "statements") == rows_at_t
    assert tree_digest(uploads) == tree_at_t  # byte for byte, the tree at T
    assert pg.psql("SELECT pg_is_in_recovery()").strip() == "f"
    new_clusters = [p for p in kept(pg.data) if p not in clusters_before]
    new_trees = [p for p in kept(uploads) if p not in trees_before]
    assert len(new_clusters) == 1, new_clusters
    assert (new_clusters[0] / "PG_VERSION").is_file()
    assert len(new_trees) == 1, new_trees
    assert tree_digest(new_trees[0]) == tree_changed  # the tree from before the restore, kept

    # --discard-previous removes the kept cluster(s) and tree(s), and nothing else
    decoys = [pg.data.with_name("data.keep-me"), uploads.with_name("uploads.keep-me")]
    for decoy in decoys:
        decoy.mkdir()
        (decoy / "file").write_text("not a restore's leftover\n")
    code, out, err = joined.agent("restore", "--discard-previous")
    assert code == 0, out + err
    assert not kept(pg.data)
    assert not kept(uploads)
    assert all((d / "file").is_file() for d in decoys)
    assert rows(pg, "statements") == rows_at_t
    assert tree_digest(uploads) == tree_at_t
    for decoy in decoys:
        shutil.rmtree(decoy)


def test_a_restore_failing_after_the_swap_leaves_rows_and_uploads_as_they_were(joined: JoinedHost) -> None:
    pg, uploads = joined.pg, joined.uploads
    pg.psql("CREATE TABLE invoices (id int PRIMARY KEY, body text NOT NULL)")
    pg.psql("INSERT INTO invoices SELECT g, 'inv-' || g FROM generate_series(1, 50) g")
    write_files(uploads, {"invoices/1.pdf": os.urandom(20_000), "invoices/2.pdf": b"second\n"})
    joined.uploads_backup()
    # the live tree differs from the snapshot the restore will swap in
    (uploads / "invoices" / "2.pdf").write_bytes(b"second, edited\n")
    write_files(uploads, {"invoices/3.pdf": b"third\n"})
    rows_before, tree_before = rows(pg, "invoices"), tree_digest(uploads)
    data_siblings, uploads_siblings = siblings(pg.data), siblings(uploads)
    assert tree_before != {}

    # a target no commit in the archive passes: the uploads snapshot fits, the cluster is swapped in,
    # then PostgreSQL refuses to promote ("recovery ended before configured recovery target")
    time.sleep(1.1)
    target = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    code, out, err = joined.agent("restore", "--to-time", target, "--yes", "--promote-timeout", "15")
    assert code == 1, out + err
    assert "restore: uploads: swapped in" in out  # the failure came after both swaps
    assert "restore: swapped:" in out
    assert "rolled back" in err
    assert rows(pg, "invoices") == rows_before
    assert pg.psql("SELECT pg_is_in_recovery()").strip() == "f"
    assert tree_digest(uploads) == tree_before
    assert siblings(pg.data) == data_siblings  # no restoring/failed/previous cluster left
    assert siblings(uploads) == uploads_siblings  # no scratch, prepared or previous tree left


def test_a_target_before_the_first_uploads_snapshot_is_refused_before_anything_stops(
    joined: JoinedHost,
) -> None:
    pg, uploads = joined.pg, joined.uploads
    write_files(uploads, {"early/statement.txt": b"after the target\n"})
    joined.uploads_backup()  # there are snapshots, all after the target
    pid, tree = pg.postmaster_pid(), tree_digest(uploads)
    data_siblings, uploads_siblings = siblings(pg.data), siblings(uploads)
    include = (joined.env.live / "upstreams.conf").read_bytes()
    since = len(joined.runtime.journal())

    code, out, err = joined.agent("restore", "--to-time", joined.before_uploads, "--yes")
    assert code == 2, out + err
    assert "before the first uploads snapshot" in err
    assert joined.before_uploads.replace(" ", "T").removesuffix("Z") in err  # names the target
    assert pg.postmaster_pid() == pid
    assert joined.journal_calls(since) == ["run_tool pgbackrest info"]  # read the repository, only
    assert (joined.env.live / "upstreams.conf").read_bytes() == include  # no maintenance page
    assert tree_digest(uploads) == tree
    assert siblings(pg.data) == data_siblings
    assert siblings(uploads) == uploads_siblings


def test_a_restore_failing_before_the_swap_leaves_no_prepared_uploads_tree(
    joined: JoinedHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg, uploads = joined.pg, joined.uploads
    write_files(uploads, {"before-swap/1.txt": b"one\n"})
    joined.uploads_backup()
    (uploads / "before-swap" / "1.txt").write_bytes(b"one, edited\n")
    pid, tree = pg.postmaster_pid(), tree_digest(uploads)
    data_siblings, uploads_siblings = siblings(pg.data), siblings(uploads)

    def cannot_stop(project: object) -> None:
        raise RuntimeFailure("docker compose stop exited 1: the daemon is gone (test)")

    # the uploads are prepared (a full copy beside the live tree), then the apps cannot be stopped
    monkeypatch.setattr(joined.runtime, "stop", cannot_stop)
    code, out, err = joined.agent("restore", "--latest", "--yes")
    assert code == 1, out + err
    assert "prepared in" in out
    assert "the daemon is gone (test)" in err
    assert pg.postmaster_pid() == pid
    assert tree_digest(uploads) == tree
    assert siblings(pg.data) == data_siblings
    assert siblings(uploads) == uploads_siblings  # the prepared copy is not left on the volume
