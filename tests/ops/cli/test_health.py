"""`bankflow-infra health` end to end, through `cli.main`, against real local HTTPS servers.

Saved outputs (`--outputs FILE`) keep the real staging hostnames; the test/ops-only
BANKFLOW_HEALTH_RESOLVE variable sends them to 127.0.0.1. Where the pulumi CLI itself is the
subject, a stand-in `pulumi` script on PATH prints what pulumi prints and exits as it does.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.ops.cli import main
from bankflow_infra.ops.cli.health import HEALTH_RESOLVE_ENV
from bankflow_infra.settings import APP_SERVICES
from tests.support.https import Behaviour, Certs, LocalHttps, hostnames
from tests.support.outputs import outputs_document

FAST = ["--timeout", "2", "--deadline", "6"]


@pytest.fixture
def server(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHttps]:
    """A healthy origin for every hostname, which the resolve variable points at."""
    with LocalHttps(certs.origin, {h: Behaviour() for h in hostnames()}) as running:
        monkeypatch.setenv(HEALTH_RESOLVE_ENV, ",".join(f"{h}=127.0.0.1:{running.port}" for h in hostnames()))
        yield running


def _saved(tmp_path: Path, document: Any) -> str:
    path = tmp_path / "outputs.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def _stand_in_pulumi(tmp_path: Path, body: str) -> Path:
    """A `pulumi` on an otherwise empty PATH; it records its arguments, then runs ``body``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{tmp_path}/argv'\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


# --------------------------------------------------------------------------- healthy and unhealthy


def test_origin_healthy_table(certs: Certs, server: LocalHttps, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    saved = _saved(tmp_path, outputs_document(origin_certificate=certs.origin.pem))
    code = main(["health", "staging", "--origin", "--outputs", saved, *FAST])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    for service, host in zip(APP_SERVICES, hostnames(), strict=True):
        assert any(line.startswith(service) and host in line and " 200 " in line for line in out.splitlines())
    assert f"{HEALTH_RESOLVE_ENV} overrides addresses" in err  # never silent
    assert sorted(s for s in server.sni if s) == sorted(hostnames())


def test_origin_json(certs: Certs, server: LocalHttps, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["health", "staging", "--origin", "--json", "--outputs",
                 _saved(tmp_path, outputs_document(origin_certificate=certs.origin.pem)), *FAST])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert document["healthy"] is True
    assert document["mode"] == "origin"
    assert [p["service"] for p in document["probes"]] == list(APP_SERVICES)
    assert all(p["connect"] == f"127.0.0.1:{server.port}" for p in document["probes"])


def test_edge_mode_uses_the_public_roots_from_ssl_cert_file(
    certs: Certs, server: LocalHttps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SSL_CERT_FILE replaces the public roots, as for any httpx client; the test CA plays them.
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca.cert))
    saved = _saved(tmp_path, outputs_document(origin_certificate=certs.origin.pem))
    assert main(["health", "staging", "--outputs", saved, *FAST]) == 0
    assert server.total_requests == len(hostnames())


def test_unhealthy_exits_1(certs: Certs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    site = hostnames()[0]
    behaviours = {h: Behaviour() for h in hostnames()} | {site: Behaviour(statuses=[500])}
    with LocalHttps(certs.origin, behaviours) as failing:
        monkeypatch.setenv(HEALTH_RESOLVE_ENV, ",".join(f"{h}=127.0.0.1:{failing.port}" for h in hostnames()))
        code = main(["health", "staging", "--origin", "--outputs",
                     _saved(tmp_path, outputs_document(origin_certificate=certs.origin.pem)), *FAST])
    out = capsys.readouterr().out
    assert code == 1
    assert "UNHEALTHY: site" in out
    assert "HTTP 500" in out


# --------------------------------------------------------------------------- --wait


@pytest.mark.parametrize(("statuses", "expected"), [([503] * 4 + [200], 0), ([503], 1)])
def test_wait(certs: Certs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, statuses: list[int],
              expected: int) -> None:
    """Healthy after K requests: exit 0 once it is; never healthy: exit 1 at the deadline.

    With the default retries (3 attempts, 0.5 s and 1 s apart) and a 1 s poll, a 4 s deadline
    leaves room for a second round.
    """
    site = hostnames()[0]
    behaviours = {h: Behaviour() for h in hostnames()} | {site: Behaviour(statuses=statuses)}
    with LocalHttps(certs.origin, behaviours) as origin:
        monkeypatch.setenv(HEALTH_RESOLVE_ENV, ",".join(f"{h}=127.0.0.1:{origin.port}" for h in hostnames()))
        code = main(["health", "staging", "--origin", "--wait", "--timeout", "1", "--deadline", "4",
                     "--outputs", _saved(tmp_path, outputs_document(origin_certificate=certs.origin.pem))])
    assert code == expected
    # More requests than one round's retries: it polled again.
    assert origin.requests[site] > 3


# --------------------------------------------------------------------------- bad input: exit 2, no probe


def _bad_input(argv: list[str], server: LocalHttps, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["health", *argv, *FAST])
    err = capsys.readouterr().err
    assert code == 2, err
    assert server.connections == 0  # nothing was probed
    return err


def test_unknown_stack_through_the_pulumi_cli(
    server: LocalHttps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = _stand_in_pulumi(tmp_path, "echo \"error: no stack named 'nosuch' found\" >&2\nexit 255")
    monkeypatch.setenv("PATH", str(bin_dir))
    err = _bad_input(["nosuch"], server, capsys)
    assert "stack 'nosuch'" in err
    assert "no stack named 'nosuch' found" in err
    # health needs no secret: pulumi was not asked to show them.
    assert (tmp_path / "argv").read_text().split() == ["stack", "output", "--json", "--non-interactive", "-s",
                                                       "nosuch"]


def test_outputs_through_the_pulumi_cli(certs: Certs, server: LocalHttps, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    saved = _saved(tmp_path, outputs_document(origin_certificate=certs.origin.pem))
    monkeypatch.setenv("PATH", str(_stand_in_pulumi(tmp_path, f"/bin/cat '{saved}'")))
    assert main(["health", "staging", "--origin", *FAST]) == 0


def test_missing_pulumi_cli(server: LocalHttps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi here
    err = _bad_input(["staging"], server, capsys)
    assert "pulumi CLI is not installed" in err
    assert "--outputs FILE" in err


def test_malformed_outputs_json(server: LocalHttps, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    err = _bad_input(["staging", "--outputs", _saved(tmp_path, "{\"health\": [")], server, capsys)
    assert "outputs of stack 'staging'" in err
    assert "not JSON" in err


def test_missing_output(certs: Certs, server: LocalHttps, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    document = outputs_document(origin_certificate=certs.origin.pem)
    del document["health"]
    err = _bad_input(["staging", "--outputs", _saved(tmp_path, document)], server, capsys)
    assert "stack output 'health' of stack 'staging' is missing" in err


def test_service_not_in_catalog(certs: Certs, server: LocalHttps, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    document = outputs_document(origin_certificate=certs.origin.pem)
    document["health"][0]["service"] = "billing"
    err = _bad_input(["staging", "--outputs", _saved(tmp_path, document)], server, capsys)
    assert "unknown service 'billing'" in err


def test_origin_without_a_server(server: LocalHttps, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    document = outputs_document(origin_ip=None)
    err = _bad_input(["staging", "--origin", "--outputs", _saved(tmp_path, document)], server, capsys)
    assert "stack output 'origin_ip' of stack 'staging' is null" in err


def test_bad_resolve_override(
    certs: Certs, server: LocalHttps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(HEALTH_RESOLVE_ENV, f"{hostnames()[0]}=localhost")
    saved = _saved(tmp_path, outputs_document(origin_certificate=certs.origin.pem))
    err = _bad_input(["staging", "--outputs", saved], server, capsys)
    assert HEALTH_RESOLVE_ENV in err


@pytest.mark.parametrize("argv", [["--timeout", "0"], ["--deadline", "soon"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["health", "staging", *argv])
    assert caught.value.code == 2
    assert "seconds" in capsys.readouterr().err


def test_plan_is_still_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["plan", "--help"])
    assert caught.value.code == 0
    assert "--project-dir" in capsys.readouterr().out
