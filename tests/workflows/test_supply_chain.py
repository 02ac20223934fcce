"""Issue 12 item 9: what the jobs holding production credentials install, and how.

Read from every workflow: such a job installs Python packages only through `./scripts/setup` (the
hash-locked requirements.txt, no dev or test tool). Run for real: scripts/setup's pip refuses a
package whose hash is not the locked one, and a requirement without a hash (a local wheel
index stands in for PyPI, so nothing leaves the machine).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.workflows import checks

# Anything that would put the dev or test tools (or unlocked packages) next to the credentials.
DEV_INSTALLS = re.compile(
    r"setup --dev|requirements-dev|install-test-tools|scripts/(?:test|lock|audit)\b|\buv\b|\bpipx\b"
    r"|\bnpm (?:install|ci)\b|\bpip3? install\b|-m pip install\b"
)
# The one pip install allowed next to credentials: the CrossGuard pack's own virtualenv, from its
# hash-locked requirements (scripts/lock writes policy/requirements.txt with every hash).
POLICY_VENV = (
    "python -m venv policy/venv && "
    "policy/venv/bin/pip install --quiet --require-hashes -r policy/requirements.txt"
)


def holds_credentials(job: dict[str, Any]) -> bool:
    """Runs behind an environment (its secrets), or is handed a secret beyond GITHUB_TOKEN."""
    return bool(job.get("environment")) or bool(re.search(r"\bsecrets\.(?!GITHUB_TOKEN\b)", str(job)))


def install_problems(text: str) -> list[str]:
    problems = []
    for job_name, job in checks.jobs(checks.load(text)).items():
        if not holds_credentials(job):
            continue
        for index, step in enumerate(checks.steps(job)):
            script = checks.commands(step).replace(POLICY_VENV, "")
            found = DEV_INSTALLS.search(script)
            if found:
                problems.append(f"jobs.{job_name}.steps[{index}]: `{found[0]}` in a job holding credentials")
            for option in re.findall(r"scripts/setup[ \t]+(-\S*)", script):
                problems.append(f"jobs.{job_name}.steps[{index}]: `scripts/setup {option}`: runtime only")
    return problems


@pytest.mark.parametrize("path", checks.workflow_files(), ids=lambda path: path.name)
def test_jobs_holding_credentials_install_only_the_locked_runtime(path: Path) -> None:
    assert install_problems(path.read_text()) == []


def test_the_credentialed_jobs_are_the_ones_expected() -> None:
    # A guard on the rule above: it must see the deploy, preview, drift, backup and rebuild jobs.
    found = {
        (path.name, name)
        for path in checks.workflow_files()
        for name, job in checks.jobs(checks.load(path.read_text())).items()
        if holds_credentials(job)
    }
    assert found >= {
        ("deploy-stack.yml", "up"),
        ("preview.yml", "preview"),
        ("drift.yml", "check"),
        ("backup-replica.yml", "replicate"),
        ("restore-drill.yml", "drill"),
        ("emergency.yml", "rebuild"),
    }


@pytest.mark.parametrize(
    ("step", "caught"),
    [
        ("./scripts/setup --dev", "setup --dev"),
        ("venv/bin/pip install -r requirements-dev.txt", "pip install"),
        ("./scripts/install-test-tools", "install-test-tools"),
        ("pip install pulumi-policy", "pip install"),
        ("python -m pip install ruff", "-m pip install"),
        ("./scripts/setup && uv pip install pytest", "uv"),
    ],
)
def test_a_dev_install_in_a_credentialed_job_is_caught(step: str, caught: str) -> None:
    text = (checks.WORKFLOWS / "deploy-stack.yml").read_text()
    old = "        run: ./scripts/setup\n"
    assert old in text
    problems = install_problems(text.replace(old, f"        run: {step}\n", 1))
    assert [p for p in problems if f"`{caught}" in p], problems


def test_the_same_install_in_a_job_without_credentials_is_allowed() -> None:
    # ci.yml installs the dev tools on purpose: it holds no credential.
    assert install_problems((checks.WORKFLOWS / "ci.yml").read_text()) == []
    assert "./scripts/setup --dev" in (checks.WORKFLOWS / "ci.yml").read_text()


# --- scripts/setup's hash check, run for real --------------------------------------------------


def _wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel, so pip has something to install without PyPI."""
    path = directory / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "VALUE = 1\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for member, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{member},sha256={digest},{len(content.encode())}")
    record.append(f"{info}/RECORD,,")
    with zipfile.ZipFile(path, "w") as archive:
        for member, content in files.items():
            archive.writestr(member, content)
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout with the real scripts/setup, a local wheel index and a virtualenv made once."""
    root = tmp_path_factory.mktemp("setup")
    (root / "scripts").mkdir()
    shutil.copy2(REPO / "scripts" / "setup", root / "scripts" / "setup")
    (root / "pyproject.toml").write_text("[project]\nname = 'not-installed'\nversion = '0'\n")
    (root / "wheels").mkdir()
    _wheel(root / "wheels", "bankflowtestpkg", "1.0")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    return root


def _setup(root: Path, requirements: str) -> tuple[int, str]:
    (root / "requirements.txt").write_text(requirements)
    for stamp in (root / "venv").glob(".setup-*"):
        stamp.unlink()
    # Each test starts without the package, whatever ran before it in this virtualenv.
    subprocess.run(
        [str(root / "venv" / "bin" / "python"), "-m", "pip", "uninstall", "-y", "-q", "bankflowtestpkg"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "PYTHON": sys.executable,
        # A local index stands in for PyPI: pip resolves nothing from the network.
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(root / "wheels"),
    }
    result = subprocess.run(
        ["./scripts/setup"], cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    log = (root / "venv" / "setup.log").read_text()
    return result.returncode, result.stdout + result.stderr + log


def _installed(root: Path) -> bool:
    probe = subprocess.run(
        [str(root / "venv" / "bin" / "python"), "-c", "import bankflowtestpkg"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return probe.returncode == 0


def test_setup_refuses_a_package_whose_hash_is_not_the_locked_one(project: Path) -> None:
    wrong = "0" * 64
    status, output = _setup(project, f"bankflowtestpkg==1.0 --hash=sha256:{wrong}\n")
    assert status == 1
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in output
    assert not _installed(project)


def test_setup_refuses_a_requirement_without_a_hash(project: Path) -> None:
    status, output = _setup(project, "bankflowtestpkg==1.0\n")
    assert status == 1
    assert "Hashes are required in --require-hashes mode" in output
    assert not _installed(project)


def test_setup_installs_the_package_whose_hash_is_the_locked_one(project: Path) -> None:
    wheel = next((project / "wheels").glob("*.whl"))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    _setup(project, f"bankflowtestpkg==1.0 --hash=sha256:{digest}\n")
    # The CLI's editable install may fail here (no real project): the locked install came first.
    assert _installed(project)
