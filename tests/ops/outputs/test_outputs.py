"""Reading stack outputs: the pulumi CLI is the one thing that cannot run here, so a recording
stand-in answers exactly what pulumi prints (its real error texts and exit code 255)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.contract.outputs import OutputsError, StackOutputs, parse_outputs
from bankflow_infra.ops.outputs import load_outputs
from bankflow_infra.settings import APP_SERVICES
from tests.support.outputs import outputs_document

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@dataclass
class RecordingPulumi:
    """Stands in for `subprocess.run` of the pulumi CLI; records every command line."""

    returncode: int = 0
    stdout: str = ""
    stderr: str = ""
    raises: BaseException | None = None
    calls: list[list[str]] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(args))
        self.kwargs.append(kwargs)
        if self.raises is not None:
            raise self.raises
        return subprocess.CompletedProcess(args, self.returncode, self.stdout, self.stderr)


def _error(stack: str = "staging", **kwargs: Any) -> str:
    with pytest.raises(OutputsError) as caught:
        load_outputs(stack, **kwargs)
    return str(caught.value)


# --------------------------------------------------------------------------- the pulumi CLI


def test_reads_pulumi_stack_output_json_without_secrets():
    pulumi = RecordingPulumi(stdout=json.dumps(outputs_document(origin_certificate=PEM)))
    outputs = load_outputs("staging", runner=pulumi)
    assert pulumi.calls == [["pulumi", "stack", "output", "--json", "--non-interactive", "-s", "staging"]]
    # Never prompts (stdin closed) and never hangs (bounded).
    assert pulumi.kwargs[0]["stdin"] == subprocess.DEVNULL
    assert pulumi.kwargs[0]["timeout"] > 0
    assert isinstance(outputs, StackOutputs)
    assert [t.service for t in outputs.health] == list(APP_SERVICES)
    assert outputs.deploy_private_key is None  # pulumi printed "[secret]"


def test_show_secrets_only_when_asked():
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"
    document = outputs_document(origin_certificate=PEM) | {"deploy_private_key": key}
    pulumi = RecordingPulumi(stdout=json.dumps(document))
    outputs = load_outputs("staging", show_secrets=True, runner=pulumi)
    assert pulumi.calls[0][-1] == "--show-secrets"
    assert outputs.deploy_private_key is not None
    assert "PRIVATE KEY" not in repr(outputs)  # a repr in a log never carries the key


def test_unknown_stack_names_the_stack():
    # pulumi's own text for a stack that does not exist, with its exit code.
    pulumi = RecordingPulumi(returncode=255, stderr="error: no stack named 'stagin' found\n")
    message = _error("stagin", runner=pulumi)
    assert "stack 'stagin'" in message
    assert "no stack named 'stagin' found" in message
    assert "exited 255" in message
    assert "pulumi stack ls" in message


def test_not_logged_in_says_log_in():
    pulumi = RecordingPulumi(
        returncode=255,
        stderr="error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions\n",
    )
    message = _error(runner=pulumi)
    assert "PULUMI_ACCESS_TOKEN must be set" in message
    assert "pulumi login" in message


def test_missing_pulumi_binary_says_install_or_use_outputs():
    message = _error(runner=RecordingPulumi(raises=FileNotFoundError(2, "No such file", "pulumi")))
    assert "pulumi CLI is not installed" in message
    assert "--outputs FILE" in message


def test_hung_pulumi_is_bounded():
    message = _error(runner=RecordingPulumi(raises=subprocess.TimeoutExpired(["pulumi"], 120)))
    assert "did not finish" in message


def test_malformed_json():
    message = _error(runner=RecordingPulumi(stdout="{\"environment\": "))
    assert "stack 'staging'" in message
    assert "not JSON" in message


def test_rejects_a_stack_name_that_could_be_a_flag():
    pulumi = RecordingPulumi()
    message = _error("--show-secrets", runner=pulumi)
    assert "not a stack name" in message
    assert pulumi.calls == []


# --------------------------------------------------------------------------- saved outputs file


def test_outputs_file_never_runs_pulumi(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs_document(origin_certificate=PEM)))
    pulumi = RecordingPulumi(raises=AssertionError("pulumi must not run"))
    outputs = load_outputs("staging", outputs_file=path, runner=pulumi)
    assert outputs.origin_certificate == PEM
    assert pulumi.calls == []


def test_unreadable_outputs_file(tmp_path: Path) -> None:
    message = _error(outputs_file=tmp_path / "missing.json")
    assert "missing.json" in message


# --------------------------------------------------------------------------- validation


def _parse_error(edit: dict[str, Any] | None = None, drop: str | None = None) -> str:
    document = outputs_document(origin_certificate=PEM) | (edit or {})
    if drop is not None:
        del document[drop]
    with pytest.raises(OutputsError) as caught:
        parse_outputs("staging", document)
    return str(caught.value)


def test_mistyped_output_names_it_and_its_expected_shape():
    assert _parse_error({"health": "https://qa.conciliaextrato.com/health"}) == (
        "stack output 'health' of stack 'staging': expected a list of {service, url, host, path}, got string"
    )


def test_missing_output_names_it():
    assert "stack output 'health' of stack 'staging' is missing" in _parse_error(drop="health")


def test_service_not_in_catalog():
    health = outputs_document(origin_certificate=PEM)["health"] + [
        {"service": "admin", "url": "https://admin.x.com/health", "host": "admin.x.com", "path": "/health"}
    ]
    message = _parse_error({"health": health})
    assert "unknown service 'admin'" in message
    assert ", ".join(APP_SERVICES) in message


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"environment": "prod"}, "stack output 'environment' of stack 'staging': expected 'staging' or "
                                  "'production', got 'prod'"),
        ({"origin_ip": "not-an-ip"}, "stack output 'origin_ip' of stack 'staging': expected an IPv4 address"),
        ({"origin_ip": 42}, "expected an IPv4 address or null, got number"),
        ({"ssh": {"host": "203.0.113.10", "port": "22", "user": "root", "host_public_key": "k"}},
         "stack output 'ssh.port' of stack 'staging': expected a port number, got string"),
        ({"ssh": {"host": "203.0.113.10"}}, "expected an object {host, port, user, host_public_key}, got one "
                                            "without port, user, host_public_key"),
        ({"urls": {"site": "http://qa.conciliaextrato.com"}}, "stack output 'urls.site'"),
        ({"health": []}, "with at least one service, got an empty list"),
        ({"origin_certificate": "not pem"},
         "stack output 'origin_certificate' of stack 'staging': expected a PEM certificate or null"),
        ({"backup_bucket": "bankflow-staging-backups"},
         "stack output 'backup_bucket' of stack 'staging': expected an object {name, region, endpoint} "
         "or null"),
    ],
)
def test_each_mistyped_output_is_named(edit: dict[str, Any], expected: str) -> None:
    assert expected in _parse_error(edit)


def test_health_host_must_be_the_urls_host():
    health = outputs_document(origin_certificate=PEM)["health"]
    health[0] = health[0] | {"host": "evil.example.com"}
    assert "stack output 'health[0].host'" in _parse_error({"health": health})


def test_every_problem_is_reported_at_once():
    message = _parse_error({"environment": 3, "health": None}, drop="urls")
    assert message.count("\n") == 2  # three problems, one line each


def test_not_an_object():
    with pytest.raises(OutputsError, match="expected a JSON object of outputs, got list"):
        parse_outputs("staging", [])


def test_nullable_outputs_of_a_stack_without_server():
    outputs = parse_outputs("staging", outputs_document(origin_ip=None))
    assert outputs.origin_ip is None
    assert outputs.ssh is None
    assert outputs.origin_certificate is None
    assert outputs.release is None


def test_unknown_outputs_are_ignored():
    # The program may export new outputs before the CLI reads them.
    outputs = parse_outputs("staging", outputs_document(origin_certificate=PEM) | {"new_output": 1})
    assert outputs.environment == "staging"


# --------------------------------------------------------------------------- the contract with program.py


def test_what_the_program_exports_parses():
    """The outputs the real program builds (mock engine) are what this module accepts, both as
    `pulumi stack output --json` shows them and with --show-secrets."""
    from tests.program.stacks import run_stack

    result = run_stack("staging")
    shown = parse_outputs("staging", json.loads(json.dumps(result.shown_outputs())))
    assert shown.deploy_private_key is None
    assert [t.service for t in shown.health] == list(APP_SERVICES)
    assert shown.origin_ip is not None
    assert shown.origin_certificate is not None
    revealed = parse_outputs("staging", json.loads(json.dumps(result.outputs)), show_secrets=True)
    assert revealed.deploy_private_key is not None
