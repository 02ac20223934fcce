"""The agent as shipped to the droplet: exactly ``render.payloads.agent_files()``, stdlib only,
run by the launcher with the system python3 in isolated mode."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from bankflow_infra.host import agent
from bankflow_infra.render.payloads import SHIPPED_PACKAGES, agent_files
from tests.support.tools import REPO, require_tool

SHIPPED_DIRS = tuple(REPO / "bankflow_infra" / package for package in SHIPPED_PACKAGES)
LAUNCHER = REPO / "bankflow_infra" / "host" / "bankflow-agent"


def _imports(source: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return names


def test_shipped_modules_import_only_the_stdlib_and_each_other() -> None:
    """host/ and contract/, subpackages included: relative imports only, else the stdlib."""
    sources = [p for directory in SHIPPED_DIRS for p in sorted(directory.rglob("*.py"))]
    assert any(p.parent.name == "backups" for p in sources)  # the walk reaches subpackages
    offenders = [
        f"{source.relative_to(REPO)}: {name}"
        for source in sources
        for name in _imports(source)
        if name.split(".")[0] not in sys.stdlib_module_names and name != "__future__"
    ]
    assert offenders == []


def test_every_shipped_package_module_is_in_the_payload() -> None:
    shipped = {path for path, _, _ in agent_files()}
    wanted = {
        f"bankflow_infra/{directory.name}/{p.relative_to(directory).as_posix()}"
        for directory in SHIPPED_DIRS
        for p in directory.rglob("*.py")
    }
    assert wanted <= shipped
    assert shipped - wanted == {"bankflow_infra/__init__.py", "bankflow-agent"}


def _ship(bin_dir: Path) -> None:
    """What the bootstrap installs under /opt/bankflow/bin: exactly agent_files()."""
    for path, content, mode in agent_files():
        target = bin_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)


def _run_launcher(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "bankflow-agent"), *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_launcher_runs_the_shipped_agent_with_the_system_python(tmp_path: Path) -> None:
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3")
    bin_dir = tmp_path / "bin"
    _ship(bin_dir)
    done = _run_launcher(bin_dir, "--home", str(tmp_path / "home"), "releases")
    assert (done.returncode, done.stdout, done.stderr) == (0, "no releases yet\n", "")
    assert (tmp_path / "home" / "state").is_dir()
    done = _run_launcher(bin_dir, "--home", str(tmp_path / "home"), "status")
    assert (done.returncode, done.stdout) == (0, "no release deployed yet\n"), done.stderr


def test_the_shipped_agent_reaches_its_backup_commands(tmp_path: Path) -> None:
    """host/backups/ ships too: its commands parse and refuse bad input as on the droplet."""
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3")
    bin_dir = tmp_path / "bin"
    _ship(bin_dir)
    done = _run_launcher(bin_dir, "--home", str(tmp_path / "home"), "restore", "--from", "latest")
    assert done.returncode == 2
    assert done.stderr == "restore: restore replaces the database with the dump: confirm with --yes\n"


def test_module_entry_point_prints_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bankflow_infra.host.agent", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0
    # Every registered command, in registration order: the shipped entry point is the real one.
    usage = done.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    assert sorted(usage) == sorted(agent.COMMANDS)
    assert {"deploy", "rollback", "backup", "restore", "uploads-backup", "database-roles"} <= set(usage)


def test_launcher_is_shellcheck_clean() -> None:
    shellcheck = require_tool("shellcheck")
    done = subprocess.run([shellcheck, str(LAUNCHER)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
