"""The agent as shipped to the droplet: stdlib only, runnable from a copied directory."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bankflow_infra.host.manifest import digest_files
from tests.conftest import REPO, require_tool

HOST_DIR = REPO / "bankflow_infra" / "host"
LAUNCHER = HOST_DIR / "bankflow-agent"


def test_host_modules_import_only_the_stdlib_and_each_other() -> None:
    offenders = []
    for source in sorted(HOST_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level > 0 else [node.module or ""]
            else:
                continue
            offenders += [
                f"{source.name}: {n}"
                for n in names
                if n.split(".")[0] not in sys.stdlib_module_names and n != "__future__"
            ]
    assert offenders == []


def _ship(bin_dir: Path) -> None:
    """What the bootstrap installs: bankflow_infra/{__init__.py,host/*.py} and the launcher."""
    package = bin_dir / "bankflow_infra" / "host"
    package.mkdir(parents=True)
    (bin_dir / "bankflow_infra" / "__init__.py").write_text("")
    for source in HOST_DIR.glob("*.py"):
        shutil.copy(source, package / source.name)
    shutil.copy(LAUNCHER, bin_dir / "bankflow-agent")


def test_launcher_runs_the_shipped_agent_with_the_system_python(tmp_path: Path) -> None:
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3")
    bin_dir = tmp_path / "bin"
    _ship(bin_dir)
    done = subprocess.run(
        [str(bin_dir / "bankflow-agent"), "--home", str(tmp_path / "home"), "releases"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "no releases yet\n", "")
    assert (tmp_path / "home" / "state").is_dir()


def test_a_lone_copied_directory_runs_too(tmp_path: Path) -> None:
    copy = tmp_path / "agent"
    shutil.copytree(HOST_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-I", str(copy), "--home", str(tmp_path / "home"), "status"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, "no release deployed yet\n"), done.stderr


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
    assert "{deploy,rollback,receive,releases,status,logs,migrate,backup,backups,restore}" in done.stdout


def test_launcher_is_shellcheck_clean() -> None:
    shellcheck = require_tool("shellcheck")
    done = subprocess.run([shellcheck, str(LAUNCHER)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def test_bundle_digest_matches_the_renderers_definition() -> None:
    model = pytest.importorskip("bankflow_infra.render.model")
    files = (
        model.BundleFile("release.json", "{}\n", 0o644),
        model.BundleFile("secrets/app.env", "A=1\n", 0o600),
    )
    expected = model.bundle_digest(files)
    assert digest_files((f.path, f.mode, f.text.encode()) for f in files) == expected
