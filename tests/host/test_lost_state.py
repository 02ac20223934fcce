"""Lost or garbled state files and a drifted live nginx config (issue 15, 3 and 5), and the record
of every attempt (6): the next command names the file, repairs what can be rebuilt from the live
host, falls back to the previous generation of what cannot, and the host converges.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from bankflow_infra.contract import exit_codes
from bankflow_infra.host.manifest import bundle_release_id
from tests.host.fixtures import HostEnv
from tests.host.invariants import assert_converged


def two_releases(host: HostEnv) -> tuple[str, str]:
    one, two = host.bundle("v1"), host.bundle("v2")
    assert host.deploy(one)[0] == 0
    assert host.deploy(two)[0] == 0
    return bundle_release_id(one), bundle_release_id(two)


@pytest.mark.parametrize("content", [None, "{}", "{not json", '{"release": 5}', "[]"])
def test_a_lost_or_garbled_current_json_is_rebuilt_from_what_nginx_serves(
    host: HostEnv, content: str | None
) -> None:
    _, serving = two_releases(host)
    current = host.home / "state" / "current.json"
    if content is None:
        current.unlink()
    else:
        current.write_text(content)
    code, _, err = host.deploy(host.bundle("v3", markers=["standin-fail-pull"]))
    assert code == exit_codes.FAILED  # a failed deploy, not a "first deploy" that breaks everything
    assert f"state file {current}" in err
    assert f"nginx serves release {serving}" in err
    assert "KeyError" not in err
    assert f"release {serving} still serving" in err
    assert_converged(host)
    assert host.get("site") == (200, f"{serving} site\n")


def test_a_truncated_history_json_is_read_from_its_previous_generation(host: HostEnv) -> None:
    first, _ = two_releases(host)
    history = host.home / "state" / "history.json"
    history.write_bytes(history.read_bytes()[:40])  # cut mid-write by a full disk
    code, out, err = host.agent("rollback")
    assert code == exit_codes.OK, out + err
    assert f"state file {history} is not valid JSON" in err
    assert "using the previous generation" in err
    assert assert_converged(host) == first
    json.loads(history.read_text())


def test_both_generations_garbled_start_a_new_history_naming_the_file(host: HostEnv) -> None:
    two_releases(host)
    history = host.home / "state" / "history.json"
    history.write_text("[{")
    history.with_name("history.json.1").write_text("garbage")
    code, _, err = host.deploy(host.bundle("v3"))
    assert code == exit_codes.OK, err
    assert f"state file {history} and its previous generation are unusable" in err
    assert "started a new history" in err
    assert_converged(host)


def test_a_garbled_base_json_is_rebuilt_not_a_traceback(host: HostEnv) -> None:
    two_releases(host)
    base = host.home / "state" / "base.json"
    base.write_text("{}}")
    base.with_name("base.json.1").write_text("[1, 2]")
    code, _, err = host.deploy(host.bundle("v3"))
    assert code == exit_codes.OK, err
    assert f"state file {base}" in err
    assert "rebuilt from the serving release's manifest" in err
    assert set(json.loads(base.read_text())) >= {"postgres", "redis", "nginx"}


def test_a_failed_deploy_never_empties_the_live_secrets_when_the_current_dir_is_gone(host: HostEnv) -> None:
    two_releases(host)
    secrets = sorted(p.name for p in (host.home / "secrets").iterdir())
    tls = (host.home / "tls" / "origin.pem").read_bytes()
    current = json.loads((host.home / "state" / "current.json").read_text())
    subprocess.run(["rm", "-rf", str(host.home / "releases" / current["release"])], check=True)
    code, _, _ = host.deploy(host.bundle("v3", markers=["standin-fail-pull"]))
    assert code == exit_codes.FAILED
    assert sorted(p.name for p in (host.home / "secrets").iterdir()) == secrets
    assert (host.home / "tls" / "origin.pem").read_bytes() == tls


def test_an_invalid_live_nginx_config_is_restored_before_anything_else(host: HostEnv) -> None:
    two_releases(host)
    # a crash once new nginx files were written: the live config no longer passes nginx -t
    with (host.live / "nginx.conf").open("a") as conf:
        conf.write("half a directive\n")
    journal_before = len(host.runtime.journal())
    code, out, err = host.deploy(host.bundle("v3"))
    assert code == exit_codes.OK, out + err
    assert "the live nginx config failed nginx -t" in err
    assert "restored the known-good copy" in err
    calls = [c["call"] for c in host.runtime.journal()[journal_before:]]
    assert calls[:3] == ["nginx_test", "nginx_test", "nginx_reload"]  # before any other step
    assert_converged(host)


def test_an_interrupted_attempt_is_visible_in_status_until_it_is_closed(host: HostEnv) -> None:
    two_releases(host)
    child = host.spawn("deploy", str(host.bundle("v3")), env={"FAULT_KILL_AT": "public-switch"})
    child.communicate(timeout=60)
    # another command holds the lock (say a restore): status only reads, and shows the attempt
    lock = (host.home / "state" / "lock").open("w")
    import fcntl

    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        code, out, _ = host.agent("status")
    finally:
        lock.close()
    assert code == 0
    assert f"(pid {child.pid}): no end (interrupted)" in out
    code, out, err = host.agent("status")  # the lock is free: reconciled and closed
    assert "was interrupted at step 'public-switch'" in err
    assert "no end" not in out
    assert_converged(host)


def test_a_deploy_whose_ssh_session_dropped_still_succeeds_and_exits_0(host: HostEnv) -> None:
    one = host.bundle("v1")
    assert host.deploy(one)[0] == 0
    two = host.bundle("v2")
    child = host.spawn("deploy", str(two), env={"FAULT_HANGUP_AFTER": "nginx_reload"})
    assert child.stdout is not None
    assert child.stderr is not None
    child.stdout.close()  # the session is gone: nobody reads the output any more
    child.stderr.close()
    assert child.wait(timeout=60) == 0
    assert assert_converged(host) == bundle_release_id(two)
    ends = [line for line in host.audit() if line.get("pid") == child.pid and line["result"] != "started"]
    assert [line["result"] for line in ends] == ["ok"]


def test_sighup_mid_deploy_without_a_reader_never_kills_the_switch(host: HostEnv) -> None:
    one = host.bundle("v1")
    assert host.deploy(one)[0] == 0
    child = host.spawn("deploy", str(host.bundle("v2")))
    time.sleep(0.8)
    child.send_signal(signal.SIGHUP)
    child.communicate(timeout=60)
    assert child.returncode == 0
    assert_converged(host)


def test_temp_dirs_of_interrupted_writes_are_removed_by_the_next_command(host: HostEnv) -> None:
    two_releases(host)
    leftovers = [
        host.home / "releases" / ".0123456789ab.incoming-4242",
        host.home / "releases" / ".0123456789ab.tmp-4242",
    ]
    for directory in leftovers:
        (directory / "secrets").mkdir(parents=True)
        (directory / "secrets" / "app.env").write_text("JWT_SECRET=half-written\n")
    (host.live / ".upstreams.conf.tmp-4242").write_text("upstream half {")
    # a release dir's release.env rewritten in place when killed (found by test_faults' random kills)
    release_dir = next(p for p in (host.home / "releases").iterdir() if not p.name.startswith("."))
    (release_dir / ".release.env.tmp-4242").write_text("BANKFLOW_RELEASE=half")
    code, _, err = host.agent("releases")
    assert code == 0
    assert "removed temp files of interrupted writes" in err
    assert_converged(host)
