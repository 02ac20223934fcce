"""Issue 12 item 9: scripts/audit, run for real.

pip-audit (the real one) audits the locked requirements against an OSV stand-in on loopback
(PIP_AUDIT_OSV_URL): a known vulnerability fails the run naming it, a clean answer passes, an
unreachable service is a notice. detect-secrets (the real one) scans a throwaway git checkout:
a planted fake key fails the run, the reviewed baseline's findings do not, even after they move.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker

from tests.conftest import REPO
from tests.support.ports import free_port
from tests.support.tools import require_tool

AUDIT = REPO / "scripts" / "audit"
VENV = REPO / "venv"
Answer = Callable[[str, str], dict[str, Any]]


def _locked_pins(path: Path) -> dict[str, str]:
    """name -> version of the pins that apply on this machine (a win32-only pin does not)."""
    pins = re.findall(
        r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)(?: ; (.+?))? \\$", path.read_text(), re.MULTILINE
    )
    return {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version, marker in pins
        if not marker or Marker(marker).evaluate()
    }


@pytest.fixture
def osv() -> Iterator[tuple[str, list[str], list[Answer]]]:
    """A loopback OSV API (POST /v1/query): its URL, the packages asked for, and its answer rule."""
    asked: list[str] = []
    rule: list[Answer] = [lambda name, version: {}]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            name, version = query["package"]["name"], query["version"]
            asked.append(name)
            body = json.dumps(rule[0](name, version)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/query", asked, rule
    finally:
        server.shutdown()
        server.server_close()


def _audit(*args: str, cwd: Path = REPO, osv_url: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),  # pip-audit's cache goes there, not into the user's
        "PIP_AUDIT_OSV_URL": osv_url,
        "NO_PROXY": "127.0.0.1",
    }
    return subprocess.run(
        [str(cwd / "scripts" / "audit"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_clean_answer_audits_every_locked_package(
    osv: tuple[str, list[str], list[Answer]], tmp_path: Path
) -> None:
    url, asked, _ = osv
    result = _audit("deps", osv_url=url, home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no known vulnerability" in result.stdout
    # Both files, every pin: the deploy's requirements.txt and the dev tools.
    locked = _locked_pins(REPO / "requirements.txt") | _locked_pins(REPO / "requirements-dev.txt")
    assert set(locked) <= set(asked)


def test_a_known_vulnerability_fails_the_audit_naming_it(
    osv: tuple[str, list[str], list[Answer]], tmp_path: Path
) -> None:
    url, _, rule = osv
    name, version = "pyyaml", _locked_pins(REPO / "requirements.txt")["pyyaml"]
    vulnerability = {
        "id": "GHSA-test-0001",
        "summary": "a planted finding",
        "affected": [
            {
                "package": {"name": name, "ecosystem": "PyPI"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99.0"}]}],
            }
        ],
    }
    rule[0] = lambda asked_name, asked_version: (
        {"vulns": [vulnerability]} if (asked_name, asked_version) == (name, version) else {}
    )
    result = _audit("deps", osv_url=url, home=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"audit: {name} {version}: GHSA-test-0001 (fixed in: 99.0)" in result.stderr
    assert "notice" not in result.stdout + result.stderr


def test_an_unreachable_service_is_a_notice_not_a_failure(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1/query"  # nothing listens there
    result = _audit("deps", osv_url=closed, home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vulnerability audit skipped" in result.stdout
    assert "NOT audited" in result.stdout
    assert "Connection refused" in result.stdout or "Failed to establish" in result.stdout


# --- detect-secrets ----------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        },
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout with scripts/audit, this venv, a test value that looks like a secret, and the
    baseline reviewed from it."""
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(AUDIT, root / "scripts" / "audit")
    (root / "venv").symlink_to(VENV)
    (root / ".github").mkdir()
    (root / ".gitignore").write_text("venv\n")
    # Built at run time, so this file itself holds no key-shaped string.
    (root / "fixture.py").write_text(f'PASSWORD = "{"hunter" + "2-test-only"}"\n')
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    result = _audit("secrets", "--update-baseline", cwd=root, osv_url="", home=tmp_path)
    assert result.returncode == 0, result.stderr
    baseline = json.loads((root / ".github" / "secrets-baseline.json").read_text())
    assert list(baseline["results"]) == ["fixture.py"]
    _git(root, "add", "-A")
    return root


def test_a_planted_fake_key_fails_the_secret_scan(checkout: Path, tmp_path: Path) -> None:
    key_id = "AKIA" + "Z7QX4MPLE2BANKFL"  # AWS's access-key-id shape; never a real key
    (checkout / "settings.py").write_text(f'AWS_ACCESS_KEY_ID = "{key_id}"\n')
    _git(checkout, "add", "settings.py")
    result = _audit("secrets", cwd=checkout, osv_url="", home=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "audit: settings.py:1: AWS Access Key not in the reviewed baseline" in result.stderr
    assert key_id not in result.stdout + result.stderr  # the finding is named, never printed


def test_reviewed_findings_pass_even_when_they_move(checkout: Path, tmp_path: Path) -> None:
    fixture = checkout / "fixture.py"
    fixture.write_text("# moved down by a comment\n" + fixture.read_text())
    result = _audit("secrets", cwd=checkout, osv_url="", home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no secret beyond the 1 reviewed in the baseline" in result.stdout


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    for args in (["everything"], ["secrets", "--force"]):
        result = _audit(*args, osv_url="", home=tmp_path)
        assert result.returncode == 2
        assert "valid:" in result.stderr


def test_scripts_test_runs_the_audit_before_the_tests() -> None:
    script = (REPO / "scripts" / "test").read_text()
    assert "\n./scripts/audit\n" in script
    assert script.index("./scripts/audit") < script.index("venv/bin/pytest")


def test_the_audit_script_is_shellcheck_clean() -> None:
    shellcheck = require_tool("shellcheck")
    result = subprocess.run(
        [shellcheck, "-x", "--severity=style", str(AUDIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "set -euo pipefail" in AUDIT.read_text().splitlines()


def test_secrets_outside_a_git_checkout_is_a_clear_refusal(tmp_path: Path) -> None:
    root = tmp_path / "not-a-checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(AUDIT, root / "scripts" / "audit")
    (root / "venv").symlink_to(VENV)
    result = _audit("secrets", cwd=root, osv_url="", home=tmp_path)
    assert result.returncode == 2
    assert "is not a git checkout" in result.stderr
