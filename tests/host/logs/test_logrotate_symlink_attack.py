"""Issue 12, item 3: no container can make root's logrotate destroy a file outside its own logs.

The attack, with the real logrotate: a container plants symlinks where it can write; root's
rotation of "the logs" follows one and truncates a root-owned file (the issue showed it with the
agent's audit trail; here the host's own auth log, which no rule of ours rotates, so any change
to it is the attack's).
Today's rules glob over the shared parent (`logs/*/*.log`) and follow a planted directory symlink;
the fixed rules name each service's own directory and work there as its owner (`su`).
"""

from __future__ import annotations

import os
from pathlib import Path

from bankflow_infra.render.host_files import LOGROTATE, render_host_files
from tests.host.logs.rig import HostTree, host_tree, require_root, run_logrotate
from tests.render.helpers import load_settings


def _plant(tree: HostTree, link: Path, target: Path, uid: int) -> None:
    link.symlink_to(target)
    os.lchown(link, uid, uid)  # made by the container's user


def _attack(tree: HostTree, victim: Path) -> None:
    site = tree.service_dir("site")
    uid = site.stat().st_uid
    # The attack: a directory symlink in the (then container-writable) parent...
    _plant(tree, tree.logs / "evil", victim.parent, uid)
    # ...and everything the site container can still do in its own directory.
    _plant(tree, site / "evil", victim.parent, uid)
    _plant(tree, site / "evil.log", victim, uid)
    (site / "app.log").write_text("request served\n" * 20)
    os.chown(site / "app.log", uid, uid)


def test_a_planted_symlink_never_makes_logrotate_touch_a_root_file(tmp_path: Path, host_root: Path) -> None:
    require_root()
    tree = host_tree(host_root)
    victim = tree.path("/var/log/auth.log")  # root's, 0640 in a root 0755 directory
    victim.parent.mkdir(parents=True)
    victim.write_text("sshd[1]: Accepted publickey for root\n" * 30)
    victim.chmod(0o640)
    before = victim.read_bytes()
    _attack(tree, victim)
    config = tmp_path / "logrotate-bankflow"
    config.write_text(tree.relocate(render_host_files(load_settings("production"))[LOGROTATE]))

    done = run_logrotate(config, tmp_path / "status")

    assert victim.read_bytes() == before, f"{victim} was changed through a planted symlink:\n{done.stderr}"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["auth.log"]  # no copy made there either
    # The rules did run: the site's real log was rotated (a config logrotate skipped would pass
    # the check above for nothing).
    assert (tree.service_dir("site") / "app.log.1").read_text() == "request served\n" * 20
    assert "unknown user" not in done.stderr, done.stderr
