"""The project's own wiring: pins, the Pulumi project file, the layer boundaries, CI entry."""

from __future__ import annotations

import ast
import re
import tomllib

import yaml

from tests.support.tools import REPO


def _requirement_pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"unpinned requirement: {line}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_runtime_dependencies_are_pinned_identically_for_pip_and_pulumi():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    from_pyproject = _requirement_pins(project["dependencies"])
    from_requirements = _requirement_pins((REPO / "requirements.txt").read_text().splitlines())
    assert from_pyproject == from_requirements
    _requirement_pins(project["optional-dependencies"]["dev"])  # the dev tools are pinned too


def test_pulumi_project_reuses_the_setup_virtualenv():
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    assert '[ -x venv/bin/python ] || "$python" -m venv venv' in (REPO / "scripts/setup").read_text()


def test_main_is_three_lines_of_code():
    tree = ast.parse((REPO / "__main__.py").read_text())
    statements = [
        node
        for node in tree.body
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
    ]
    assert len(statements) <= 3


def test_render_and_host_never_import_pulumi():
    pattern = re.compile(r"^\s*(import|from)\s+pulumi", re.MULTILINE)
    for package in ("render", "host"):
        for source in (REPO / "bankflow_infra" / package).rglob("*.py"):
            assert not pattern.search(source.read_text()), f"{source} imports pulumi"


def test_host_agent_uses_only_the_standard_library():
    allowed_local = "bankflow_infra.host"
    for source in (REPO / "bankflow_infra" / "host").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in __import__("sys").stdlib_module_names or name.startswith(allowed_local), (
                    f"{source.name} imports {name}"
                )


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "./scripts/test" in readme.split("\n## ", 1)[0]
    assert "exec ./scripts/test" in (REPO / ".ci/run").read_text()
