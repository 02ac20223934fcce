"""The host agent's behaviour, with the stand-in runtime (local processes) and the real nginx."""

from __future__ import annotations

import fcntl
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.release import digest_files
from bankflow_infra.host import agent
from bankflow_infra.host.manifest import bundle_release_id
from bankflow_infra.host.runtime import RuntimeFailure
from tests.host.fixtures import HostEnv


def rel(bundle: Path) -> str:
    return bundle_release_id(bundle)


def str_list(value: object) -> list[str]:
    assert isinstance(value, list)
    return [str(v) for v in value]


def audit_lines(host: HostEnv) -> list[dict[str, object]]:
    return [json.loads(line) for line in (host.home / "state" / "audit.log").read_text().splitlines()]


def app_starts(host: HostEnv) -> list[dict[str, object]]:
    return [c for c in host.runtime.journal() if c["call"] == "start" and c["project"] != "bankflow"]


def test_first_deploy_serves_the_release_through_nginx(host: HostEnv) -> None:
    bundle = host.bundle("v1")
    code, out, err = host.deploy(bundle)
    assert (code, err) == (0, "")
    assert host.get("site") == (200, f"{rel(bundle)} site\n")
    assert host.get("api") == (200, f"{rel(bundle)} api\n")
    assert host.current() == rel(bundle)
    assert f"done; release {rel(bundle)} serving" in out
    calls = [c["call"] for c in host.runtime.journal()]
    # migration ran once, before the new release started
    assert calls.index("run_once") < calls.index("start", calls.index("run_once"))
    assert calls.count("run_once") == 1


def test_redeploying_the_current_release_is_a_no_op(host: HostEnv) -> None:
    bundle = host.bundle("v1")
    assert host.deploy(bundle)[0] == 0
    journal_before = len(host.runtime.journal())
    code, out, _ = host.deploy(bundle)
    assert code == 0
    assert f"release {rel(bundle)} is already current; nothing to do" in out
    # only the start-of-command check of the live nginx config (reconcile): nothing changed
    assert {c["call"] for c in host.runtime.journal()[journal_before:]} == {"nginx_test"}


def test_unhealthy_release_fails_and_the_old_one_keeps_serving(host: HostEnv) -> None:
    good, bad = host.bundle("v1"), host.bundle("v2", unhealthy=["api"])
    assert host.deploy(good)[0] == 0
    code, _, err = host.deploy(bad)
    assert code == exit_codes.FAILED
    assert err.strip().splitlines() == [
        f"deploy {rel(bad)}: step 'wait-healthy' failed: service api unhealthy after "
        f"{host.health_timeout:.0f}s; "
        f"release {rel(good)} still serving"
    ]
    assert host.current() == rel(good)
    assert host.get("api") == (200, f"{rel(good)} api\n")
    assert host.runtime.proxied_requests(rel(bad)) == 0
    assert {"call": "stop", "project": f"bankflow-app-{rel(bad)}"} in host.runtime.journal()
    assert f"bankflow-app-{rel(bad)}" not in json.loads(host.runtime.state_file.read_text())


def test_failed_first_deploy_says_nothing_was_serving(host: HostEnv) -> None:
    bundle = host.bundle("v1", markers=["standin-fail-pull"])
    code, _, err = host.deploy(bundle)
    assert code == exit_codes.FAILED
    assert "step 'pull' failed: pull of bankflow-app-" in err
    assert err.strip().endswith("no release was serving (first deploy)")
    assert host.current() is None


def test_failed_migration_names_the_step_and_starts_nothing(host: HostEnv) -> None:
    assert host.deploy(host.bundle("v1"))[0] == 0
    starts = len(app_starts(host))
    code, _, err = host.deploy(host.bundle("v2", markers=["standin-fail-migrate"]))
    assert code == exit_codes.FAILED
    assert "step 'migrate' failed: api /app/migrate exited 1" in err
    assert len(app_starts(host)) == starts


def test_nginx_test_failure_restores_the_previous_include(host: HostEnv) -> None:
    good = host.bundle("v1")
    assert host.deploy(good)[0] == 0
    include = (host.live / "upstreams.conf").read_text()
    bad = host.bundle("v2", nginx_version="2")
    with (bad / "nginx" / "nginx.conf").open("a") as conf:
        conf.write("this is not nginx config;\n")
    code, _, err = host.deploy(bad)
    assert code == exit_codes.FAILED
    assert "step 'nginx-test' failed" in err
    assert (host.live / "upstreams.conf").read_text() == include
    assert "this is not" not in (host.live / "nginx.conf").read_text()
    assert host.get("saas") == (200, f"{rel(good)} saas\n")


def test_rollback_switches_to_the_previous_release(host: HostEnv) -> None:
    one, two = host.bundle("v1"), host.bundle("v2")
    host.deploy(one)
    host.deploy(two)
    before = len(host.runtime.journal())
    code, out, _ = host.agent("rollback")
    assert code == 0, out
    assert host.current() == rel(one)
    assert host.get("site") == (200, f"{rel(one)} site\n")
    # a rollback does not migrate (migrations do not run backwards) and pulls nothing
    rollback_calls = host.runtime.journal()[before:]
    assert not any(c["call"] in ("run_once", "pull") for c in rollback_calls)
    code, _, _ = host.agent("rollback", rel(two))
    assert code == 0
    assert host.current() == rel(two)


def test_rollback_to_an_unknown_release_is_a_usage_error(host: HostEnv) -> None:
    host.deploy(host.bundle("v1"))
    code, _, err = host.agent("rollback", "0123456789ab")
    assert code == exit_codes.USAGE
    assert "no kept release 0123456789ab" in err


def test_releases_lists_kept_releases_marking_current(host: HostEnv) -> None:
    one, two = host.bundle("v1"), host.bundle("v2")
    host.deploy(one)
    host.deploy(two)
    code, out, _ = host.agent("releases")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"* {rel(two)}")
    assert lines[0].endswith("(current)")
    assert lines[1].startswith(f"  {rel(one)}")
    assert lines[1].endswith("(previous)")
    rows = json.loads(host.agent("releases", "--json")[1])
    assert [(r["release"], r["current"]) for r in rows] == [(rel(two), True), (rel(one), False)]


def test_status_shows_current_release_and_services(host: HostEnv) -> None:
    bundle = host.bundle("v1")
    host.deploy(bundle)
    view = json.loads(host.agent("status", "--json")[1])
    assert view["current"] == rel(bundle)
    assert [(s["name"], s["healthy"]) for s in view["services"]] == [
        ("site", True),
        ("saas", True),
        ("api", True),
    ]


def test_pruning_keeps_five_releases_and_removes_their_images(host: HostEnv) -> None:
    bundles = [host.bundle(f"v{i}") for i in range(1, 8)]
    for bundle in bundles:
        assert host.deploy(bundle)[0] == 0
    kept = sorted(p.name for p in (host.home / "releases").iterdir())
    assert kept == sorted(rel(b) for b in bundles[2:])
    removed = [
        img for c in host.runtime.journal() if c["call"] == "remove_images" for img in str_list(c["images"])
    ]
    assert sorted(removed) == sorted(
        f"ghcr.io/bankflow/bankflow-{s}:v{i}" for i in (1, 2) for s in ("site", "saas", "api")
    )


def test_a_second_deploy_is_refused_while_the_lock_is_held(host: HostEnv) -> None:
    (host.home / "state").mkdir(parents=True)
    with (host.home / "state" / "lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write('{"action": "restore", "actor": "alice", "pid": 4242, "since": "2026-01-02T03:04:05Z"}\n')
        held.flush()
        code, _, err = host.deploy(host.bundle("v1"))
    assert code == exit_codes.LOCKED
    # the holder is named: what, who, which process, since when
    assert err.strip() == (
        "deploy: refused: restore by alice (pid 4242) since 2026-01-02T03:04:05Z holds the lock "
        f"({host.home / 'state' / 'lock'})"
    )
    assert audit_lines(host)[-1]["result"] == "refused"


def test_every_action_writes_one_audit_line(host: HostEnv) -> None:
    good = host.bundle("v1")
    host.deploy(good)
    host.deploy(good)
    host.deploy(host.bundle("v2", unhealthy=["site"]))
    lines = audit_lines(host)
    # every attempt: a line when it starts and one when it ends, tied by the attempt id
    assert [(line["action"], line["result"]) for line in lines] == [
        ("deploy", "started"),
        ("deploy", "ok"),
        ("deploy", "started"),
        ("deploy", "noop"),
        ("deploy", "started"),
        ("deploy", "failed"),
    ]
    # the format's keys stay; only attempt, phase (start/end, what `history` merges) and pid are added
    keys = {"time", "actor", "action", "release", "result", "message", "attempt", "phase", "pid"}
    assert all(set(line) == keys for line in lines)
    assert [line["phase"] for line in lines] == ["start", "end"] * 3
    assert [lines[i]["attempt"] == lines[i + 1]["attempt"] for i in (0, 2, 4)] == [True] * 3
    assert len({line["attempt"] for line in lines}) == 3
    assert lines[1]["actor"] == "test"
    assert lines[1]["release"] == rel(good)
    assert str(lines[1]["time"]).endswith("Z")
    assert "wait-healthy" in str(lines[5]["message"])


def test_nginx_only_change_reloads_without_restarting_apps(host: HostEnv) -> None:
    one = host.bundle("v1")
    host.deploy(one)
    starts, stops = len(app_starts(host)), sum(c["call"] == "stop" for c in host.runtime.journal())
    two = host.bundle("v1", nginx_version="2")
    code, out, _ = host.deploy(two)
    assert code == 0
    assert f"keeping the containers of release {rel(one)} (no restart)" in out
    assert len(app_starts(host)) == starts
    assert sum(c["call"] == "stop" for c in host.runtime.journal()) == stops
    assert host.runtime.journal()[-1]["call"] == "nginx_reload" or any(
        c["call"] == "nginx_reload" for c in host.runtime.journal()[-4:]
    )
    assert "version 2" in (host.live / "nginx.conf").read_text()
    assert host.current() == rel(two)
    assert host.get("site") == (200, f"{rel(one)} site\n")  # still the same processes


def test_base_service_change_is_a_reported_apply_base_step(host: HostEnv) -> None:
    one = host.bundle("v1")
    host.deploy(one)
    two = host.bundle("v1", postgres="pg-2")
    code, out, _ = host.deploy(two)
    assert code == 0
    assert "apply-base: postgres" in out
    assert "base service postgres changed: recreating" in out
    assert "redis changed" not in out
    # forced: compose alone keeps a container whose definition text is unchanged (a moved tag)
    assert {"call": "recreate", "project": "bankflow", "services": ["postgres"]} in host.runtime.journal()
    code, out, _ = host.agent("rollback")
    assert code == 0
    assert f"base service postgres differs in release {rel(one)}: left as it is by rollback" in out


def test_secrets_are_installed_0600_in_a_0700_dir_and_never_printed(host: HostEnv) -> None:
    code, out, err = host.deploy(host.bundle("v1"))
    assert code == 0
    secrets = host.home / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in secrets.iterdir()} == {
        "app.env": 0o600,
        "postgres.env": 0o600,
    }
    assert "test-secret-value" not in out + err
    assert "test-secret-value" not in (host.home / "state" / "audit.log").read_text()


def _payload(bundle: Path) -> tuple[str, bytes]:
    files = [
        (p.relative_to(bundle).as_posix(), stat.S_IMODE(p.stat().st_mode), p.read_bytes())
        for p in sorted(bundle.rglob("*"))
        if p.is_file()
    ]
    digest = digest_files(files)
    body = {"digest": digest, "files": [{"path": f, "mode": m, "text": c.decode()} for f, m, c in files]}
    return digest, json.dumps(body).encode()


def test_receive_on_stdin_writes_the_release_and_deploys_it(host: HostEnv) -> None:
    digest, payload = _payload(host.bundle("v1"))
    out, err = io.StringIO(), io.StringIO()
    argv = ["--home", str(host.home), "receive", "--stdin", "--deploy", *host.switch_options()]
    code = agent.main(argv, runtime=host.runtime, out=out, err=err, stdin=io.BytesIO(payload))
    assert code == 0, err.getvalue()
    assert host.current() == digest[:12]
    release_secrets = host.home / "releases" / digest[:12] / "secrets"
    assert stat.S_IMODE(release_secrets.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in release_secrets.iterdir())
    assert "test-secret-value" not in out.getvalue() + err.getvalue()


def test_receive_refuses_a_payload_whose_digest_does_not_match(host: HostEnv) -> None:
    _, payload = _payload(host.bundle("v1"))
    tampered = payload.replace(b"JWT_SECRET=test-secret-value", b"JWT_SECRET=other")
    err = io.StringIO()
    code = agent.main(
        ["--home", str(host.home), "receive", "--stdin"],
        runtime=host.runtime,
        out=io.StringIO(),
        err=err,
        stdin=io.BytesIO(tampered),
    )
    assert code == exit_codes.USAGE
    assert "digest: does not match the files" in err.getvalue()
    assert "other" not in err.getvalue()
    assert not any(p.name[0] != "." for p in (host.home / "releases").iterdir())


def test_receive_refuses_paths_outside_the_release(host: HostEnv) -> None:
    body = {"digest": "0" * 64, "files": [{"path": "../../etc/passwd", "mode": 0o644, "text": "x"}]}
    err = io.StringIO()
    code = agent.main(
        ["--home", str(host.home), "receive", "--stdin"],
        runtime=host.runtime,
        out=io.StringIO(),
        err=err,
        stdin=io.BytesIO(json.dumps(body).encode()),
    )
    assert code == exit_codes.USAGE
    assert "refused '../../etc/passwd'" in err.getvalue()


def test_actor_comes_from_sudo_user_when_not_given() -> None:
    from bankflow_infra.host.state import actor

    assert actor(None, {"SUDO_USER": "maria", "USER": "root"}) == "maria"
    assert actor(None, {"BANKFLOW_ACTOR": "pulumi:production", "SUDO_USER": "maria"}) == "pulumi:production"
    assert actor("ops", {"BANKFLOW_ACTOR": "x"}) == "ops"
    assert actor(None, {}) == f"uid:{os.getuid()}"


def test_when_nginx_cannot_be_restored_the_new_release_is_left_running(host: HostEnv, monkeypatch) -> None:
    good = host.bundle("v1")
    assert host.deploy(good)[0] == 0
    bad = host.bundle("v2", nginx_version="2")
    with (bad / "nginx" / "nginx.conf").open("a") as conf:
        conf.write("this is not nginx config;\n")

    def broken_reload() -> None:  # the restore's reload fails too (e.g. docker exec refused)
        raise RuntimeError("nginx reload refused")

    monkeypatch.setattr(host.runtime, "nginx_reload", broken_reload)
    code, _, err = host.deploy(bad)
    assert code == exit_codes.RESTORE_FAILED
    assert "ATTENTION" in err
    assert "because nginx may still route to it" in err
    stopped = [c["project"] for c in host.runtime.journal() if c["call"] == "stop"]
    assert f"bankflow-app-{rel(bad)}" not in stopped  # stopping it could leave nothing serving


def test_a_failure_after_the_switch_still_records_the_new_release_as_serving(
    host: HostEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = host.bundle("v1")
    assert host.deploy(first)[0] == 0
    # The old release's manifest became unreadable (disk trouble, a hand edit): its project is
    # still stopped, by name. A stop that fails after the switch is a warning, not a failure.
    (host.home / "releases" / rel(first) / "release.json").write_text("{not json")
    real_stop = host.runtime.stop

    def failing_stop(project: Any) -> None:
        real_stop(project)
        raise RuntimeFailure(f"stop of {project.name} exited 1: daemon busy")

    monkeypatch.setattr(host.runtime, "stop", failing_stop)
    second = host.bundle("v2")
    code, out, err = host.deploy(second)
    assert code == 0, err
    assert f"stopping the old release {rel(first)} failed" in out + err
    assert {"call": "stop", "project": f"bankflow-app-{rel(first)}"} in host.runtime.journal()
    current = json.loads((host.home / "state" / "current.json").read_text())
    assert current["release"] == rel(second)
    assert host.get("saas") == (200, f"{rel(second)} saas\n")
