"""``bankflow-infra doctor`` against the fake APIs on loopback: each failure a user can meet,
its exit code, and that no token ever reaches the output and nothing but GETs reach the APIs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bankflow_infra.ops.cli import main
from bankflow_infra.ops.doctor import import_command
from bankflow_infra.ops.doctor_report import JSON_SCHEMA
from tests.ops.doctor.conftest import SSH_BANNER, ssh_standin, write_outputs
from tests.support.fake_apis import CF_TOKEN, DO_TOKEN, ZONE_ID, FakeApis, dns_record
from tests.support.ports import free_port
from tests.support.tools import REPO


def doctor(
    capsys: pytest.CaptureFixture[str], apis: FakeApis, *extra: str
) -> tuple[int, dict[str, Any], str]:
    code = main(["doctor", "staging", "--project-dir", str(REPO), "--json", *extra])
    out, err = capsys.readouterr()
    assert DO_TOKEN not in out + err
    assert CF_TOKEN not in out + err
    assert DO_TOKEN[7:19] not in out + err  # not even partly
    assert {method for method, _ in apis.state.requests} <= {"GET"}
    document = json.loads(out) if out else {}
    if document:
        jsonschema.validate(document, JSON_SCHEMA)
    return code, document, err


def statuses(document: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in document["checks"]}


def check(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in document["checks"] if c["name"] == name)


def test_all_ok_on_a_deployed_stack(
    doctor_env: FakeApis, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with ssh_standin(SSH_BANNER) as port:
        outputs = write_outputs(tmp_path / "outputs.json", port)
        code, document, err = doctor(capsys, doctor_env, "--outputs", str(outputs))
    assert code == 0, document
    assert document["ok"] is True
    assert document["counts"]["fail"] == 0
    assert statuses(document)["ssh.reachable"] == "ok"
    assert statuses(document)["cloudflare.dns-records"] == "ok"
    assert statuses(document)["digitalocean.alert-email ops@conciliaextrato.com"] == "ok"
    assert document["manual"], "what no API tells is listed"
    # The override is never silent: on stderr and in the document.
    assert "BANKFLOW_DOCTOR_DIGITALOCEAN_URL overrides" in err
    assert any("BANKFLOW_DOCTOR_CLOUDFLARE_URL" in note for note in document["notes"])


def test_a_rejected_digitalocean_token_fails(
    doctor_env: FakeApis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "dop_v1_" + "0" * 64)
    code, document, _ = doctor(capsys, doctor_env)
    assert code == 1
    account = check(document, "digitalocean.account")
    assert account["status"] == "fail"
    assert "401" in account["detail"]
    assert "DIGITALOCEAN_TOKEN" in account["fix"]
    assert not any(n.startswith("digitalocean.vpc") for n in statuses(document))


def test_missing_scopes_are_named(doctor_env: FakeApis, capsys: pytest.CaptureFixture[str]) -> None:
    doctor_env.state.do_missing_scopes = {"vpc:read", "sizes:read"}
    code, document, _ = doctor(capsys, doctor_env)
    assert code == 1
    scopes = check(document, "digitalocean.scopes")
    assert scopes["status"] == "fail"
    assert "sizes:read, vpc:read" in scopes["detail"]


def test_an_inactive_cloudflare_token_fails(doctor_env: FakeApis, capsys: pytest.CaptureFixture[str]) -> None:
    doctor_env.state.cf_verify_status = "disabled"
    code, document, _ = doctor(capsys, doctor_env)
    assert code == 1
    assert check(document, "cloudflare.token")["status"] == "fail"
    assert "cloudflare.zone" not in statuses(document)


def test_a_missing_zone_fails(doctor_env: FakeApis, capsys: pytest.CaptureFixture[str]) -> None:
    doctor_env.state.zones = []
    code, document, _ = doctor(capsys, doctor_env)
    assert code == 1
    zone = check(document, "cloudflare.zone")
    assert zone["status"] == "fail"
    assert "conciliaextrato.com not found" in zone["detail"]


def test_missing_dns_edit_permission_fails(doctor_env: FakeApis, capsys: pytest.CaptureFixture[str]) -> None:
    doctor_env.state.zones[0]["permissions"] = ["#zone:read", "#dns_records:read"]
    code, document, _ = doctor(capsys, doctor_env)
    assert code == 1
    assert "#dns_records:edit" in check(document, "cloudflare.permissions")["detail"]


def test_a_colliding_record_prints_its_exact_import_command(
    doctor_env: FakeApis, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doctor_env.state.dns_records = [
        dns_record("app.qa.conciliaextrato.com", "A", "198.51.100.7", "372e67954025e0ba6aaa6d586b9e0b59")
    ]
    import_path = tmp_path / "import.json"
    code, document, err = doctor(capsys, doctor_env, "--import-file", str(import_path))
    assert code == 1
    collision = check(document, "cloudflare.dns-record app.qa.conciliaextrato.com A")
    expected = import_command(
        "bankflow", "staging", "app.qa.conciliaextrato.com", "A", ZONE_ID, "372e67954025e0ba6aaa6d586b9e0b59"
    )
    assert collision["commands"] == [expected]
    written = json.loads(import_path.read_text())
    assert written["resources"][0] == {"type": "bankflow:index:Edge", "name": "edge", "component": True}
    assert f"--file {import_path}" in err


def test_the_table_shows_the_fix_and_the_command(
    doctor_env: FakeApis, capsys: pytest.CaptureFixture[str]
) -> None:
    doctor_env.state.dns_records = [dns_record("qa.conciliaextrato.com", "AAAA", "2001:db8::7", "rec9")]
    code = main(["doctor", "staging", "--project-dir", str(REPO)])
    out = capsys.readouterr().out
    assert code == 1
    assert "fail    cloudflare.dns-record qa.conciliaextrato.com AAAA" in out
    assert (
        "run: " + import_command("bankflow", "staging", "qa.conciliaextrato.com", "AAAA", ZONE_ID, "rec9")
        in out
    )
    assert "manual checks" in out


def test_a_vpc_overlap_fails(doctor_env: FakeApis, capsys: pytest.CaptureFixture[str]) -> None:
    doctor_env.state.vpcs.append(
        {"id": "v2", "name": "legacy", "region": "sfo3", "ip_range": "10.110.0.0/16", "default": False}
    )
    code, document, _ = doctor(capsys, doctor_env)
    assert code == 1
    assert check(document, "digitalocean.vpc-range")["status"] == "fail"


def test_vpcs_are_read_across_pages(doctor_env: FakeApis, capsys: pytest.CaptureFixture[str]) -> None:
    filler = [
        {
            "id": f"v{i}",
            "name": f"other-{i}",
            "region": "ams3",
            "ip_range": f"172.16.{i}.0/24",
            "default": False,
        }
        for i in range(250)
    ]
    doctor_env.state.vpcs += [
        *filler,
        {"id": "last", "name": "late", "region": "ams3", "ip_range": "10.110.20.0/24", "default": False},
    ]
    code, document, _ = doctor(capsys, doctor_env)
    assert code == 1
    assert "late (10.110.20.0/24" in check(document, "digitalocean.vpc-range")["detail"]


def test_an_unverified_account_email_fails(doctor_env: FakeApis, capsys: pytest.CaptureFixture[str]) -> None:
    doctor_env.state.account["email_verified"] = False
    code, document, _ = doctor(capsys, doctor_env)
    assert code == 1
    assert check(document, "digitalocean.alert-email ops@conciliaextrato.com")["status"] == "fail"


def test_ssh_port_closed_fails(
    doctor_env: FakeApis, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    outputs = write_outputs(tmp_path / "outputs.json", free_port())
    code, document, _ = doctor(capsys, doctor_env, "--outputs", str(outputs))
    assert code == 1
    ssh = check(document, "ssh.reachable")
    assert ssh["status"] == "fail"
    assert "connection refused" in ssh["detail"]


def test_ssh_port_silent_fails_within_its_timeout(
    doctor_env: FakeApis, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with ssh_standin(None) as port:
        outputs = write_outputs(tmp_path / "outputs.json", port)
        code, document, _ = doctor(capsys, doctor_env, "--outputs", str(outputs), "--ssh-timeout", "0.5")
    assert code == 1
    ssh = check(document, "ssh.reachable")
    assert ssh["status"] == "fail"
    assert "no SSH answer within 0.5 s" in ssh["detail"]
    assert "sshAllowedCidrs" in ssh["fix"]


def test_a_first_up_says_ssh_is_untested(doctor_env: FakeApis, capsys: pytest.CaptureFixture[str]) -> None:
    code, document, _ = doctor(capsys, doctor_env)
    assert code == 0
    ssh = check(document, "ssh.reachable")
    assert ssh["status"] == "warn"
    assert "a first `up` has none" in ssh["detail"]


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["doctor", "nosuch"], {}, "Pulumi.nosuch.yaml: no such stack file"),
        (["doctor", "bad name!"], {}, "is not a stack name"),
        (["doctor", "staging"], {"DIGITALOCEAN_TOKEN": ""}, "DIGITALOCEAN_TOKEN is not set"),
        (["doctor", "staging"], {"CLOUDFLARE_API_TOKEN": ""}, "CLOUDFLARE_API_TOKEN is not set"),
        (["doctor", "staging"], {"BANKFLOW_DOCTOR_CLOUDFLARE_URL": "http://example.com"}, "loopback"),
        (["doctor", "staging", "--outputs", "/nonexistent.json"], {}, "cannot read the saved outputs"),
    ],
)
def test_bad_input_is_one_error_and_exit_2(
    doctor_env: FakeApis,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main([*argv, "--project-dir", str(REPO)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert doctor_env.state.requests == [], "bad input is refused before any request"


def test_a_rejected_cloudflare_token_fails(
    doctor_env: FakeApis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "not-the-token")
    code, document, _ = doctor(capsys, doctor_env)
    assert code == 1
    token = check(document, "cloudflare.token")
    assert token["status"] == "fail"
    assert "HTTP 401: 1000 Invalid API Token" in token["detail"]
    assert "CLOUDFLARE_API_TOKEN" in token["fix"]
