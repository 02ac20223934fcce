"""``bankflow-infra doctor`` as a process, as the deploy workflow runs it: help, exit codes and
the ``--json`` document on stdout (notes on stderr), with a hang guard on the silent-SSH case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema

from bankflow_infra.ops.doctor_report import JSON_SCHEMA
from tests.ops.doctor.conftest import SSH_BANNER, ssh_standin, write_outputs
from tests.support.fake_apis import CF_TOKEN, DO_TOKEN, FakeApis
from tests.support.tools import REPO

GUARD_SECONDS = 60  # a hang guard, not a speed target


def run(apis: FakeApis, tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    environment = {
        "PATH": str(empty),
        "HOME": str(tmp_path),
        "DIGITALOCEAN_TOKEN": DO_TOKEN,
        "CLOUDFLARE_API_TOKEN": CF_TOKEN,
        "BANKFLOW_DOCTOR_DIGITALOCEAN_URL": apis.digitalocean_url,
        "BANKFLOW_DOCTOR_CLOUDFLARE_URL": apis.cloudflare_url,
        **({"SYSTEMROOT": os.environ["SYSTEMROOT"]} if "SYSTEMROOT" in os.environ else {}),
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-m", "bankflow_infra.ops.cli", "doctor", *argv],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=GUARD_SECONDS,
        check=False,
    )
    assert DO_TOKEN not in result.stdout + result.stderr
    assert CF_TOKEN not in result.stdout + result.stderr
    return result


def test_help_names_the_tokens_and_exit_codes(apis: FakeApis, tmp_path: Path) -> None:
    result = run(apis, tmp_path, "--help")
    assert result.returncode == 0
    for text in (
        "DIGITALOCEAN_TOKEN",
        "CLOUDFLARE_API_TOKEN",
        "--json",
        "--ssh-timeout",
        "--import-file",
        "Exit 0",
    ):
        assert text in result.stdout


def test_json_on_stdout_and_exit_0_when_all_pass(apis: FakeApis, tmp_path: Path) -> None:
    with ssh_standin(SSH_BANNER) as port:
        outputs = write_outputs(tmp_path / "outputs.json", port)
        result = run(apis, tmp_path, "staging", "--json", "--outputs", str(outputs))
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    jsonschema.validate(document, JSON_SCHEMA)
    assert document["ok"] is True
    assert document["stack"] == "staging"
    assert "overrides the API address" in result.stderr


def test_exit_1_on_a_failed_check_and_the_silent_port_ends(apis: FakeApis, tmp_path: Path) -> None:
    with ssh_standin(None) as port:
        outputs = write_outputs(tmp_path / "outputs.json", port)
        result = run(apis, tmp_path, "staging", "--outputs", str(outputs), "--ssh-timeout", "1")
    assert result.returncode == 1
    assert "fail    ssh.reachable" in result.stdout
    assert "no SSH answer within 1 s" in result.stdout


def test_exit_2_on_bad_arguments(apis: FakeApis, tmp_path: Path) -> None:
    result = run(apis, tmp_path, "staging", "--ssh-timeout", "0")
    assert result.returncode == 2
    assert "--ssh-timeout" in result.stderr
    missing = run(apis, tmp_path, "staging", DIGITALOCEAN_TOKEN="")
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "bankflow-infra doctor: DIGITALOCEAN_TOKEN is not set: export it with the API token "
        '(see README "Credentials")'
    )
    assert apis.state.requests == []
