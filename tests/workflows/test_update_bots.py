"""Issue 12 item 6, the update path: Dependabot (.github/dependabot.yml) and Renovate (renovate.json).

Both files are validated with check-jsonschema against the bots' own published schemas (vendored
from SchemaStore); the rest reads what each bot would see: which files, which pins, and that no
pin is moved by both bots. Renovate's regex manager is run here with Python's `re` (the same
pattern with `(?P<name>` groups) over catalog.py's image constants.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bankflow_infra import catalog
from tests.conftest import REPO
from tests.support.tools import find_tool, require_tool

DEPENDABOT = REPO / ".github" / "dependabot.yml"
RENOVATE = REPO / "renovate.json"
CATALOG = "bankflow_infra/catalog.py"
DOCKERFILE = "files/postgres/Dockerfile"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def _check_jsonschema() -> str:
    beside = Path(sys.executable).parent / "check-jsonschema"  # the dev tools' virtualenv
    return (
        str(beside) if beside.exists() else find_tool("check-jsonschema") or require_tool("check-jsonschema")
    )


def _renovate() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(RENOVATE.read_text())
    return config


def _js_regex(pattern: str) -> re.Pattern[str]:
    """A Renovate pattern ("/.../" or a plain regex with JS `(?<name>` groups) as a Python regex."""
    if pattern.startswith("/") and pattern.rstrip("i").endswith("/"):
        pattern = pattern[1 : pattern.rstrip("i").rindex("/")]
    return re.compile(pattern.replace("(?<", "(?P<"))


def _image_manager() -> dict[str, Any]:
    [manager] = [m for m in _renovate()["customManagers"] if m["customType"] == "regex"]
    return manager


def _image_constants() -> dict[str, str]:
    """catalog's image references: every *_IMAGE constant that names a tag."""
    return {
        name: value
        for name, value in vars(catalog).items()
        if name.endswith("_IMAGE") and isinstance(value, str) and ":" in value
    }


@pytest.mark.parametrize(
    ("path", "schema"),
    [(DEPENDABOT, "vendor.dependabot"), (RENOVATE, "vendor.renovate")],
    ids=["dependabot", "renovate"],
)
def test_the_bot_configs_are_valid_for_their_bots(path: Path, schema: str) -> None:
    result = subprocess.run(
        [_check_jsonschema(), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependabot_updates_python_packages_and_actions_after_a_cooldown() -> None:
    updates = yaml.safe_load(DEPENDABOT.read_text())["updates"]
    covered = {(u["package-ecosystem"], u["directory"]) for u in updates}
    assert covered == {("uv", "/"), ("pip", "/policy"), ("github-actions", "/")}
    assert (REPO / "uv.lock").is_file()
    assert (REPO / "policy" / "requirements.txt").is_file()
    for update in updates:
        assert update["cooldown"]["default-days"] >= 3, update["package-ecosystem"]
    # Images are Renovate's: one bot per pin, so no two pull requests move the same line.
    assert "docker" not in {u["package-ecosystem"] for u in updates}


def test_renovate_updates_only_the_images_in_the_catalog_and_the_postgres_dockerfile() -> None:
    config = _renovate()
    assert sorted(config["enabledManagers"]) == ["custom.regex", "dockerfile"]
    [dockerfile] = config["dockerfile"]["managerFilePatterns"]
    assert _js_regex(dockerfile).search(DOCKERFILE)
    assert (REPO / DOCKERFILE).is_file()
    manager = _image_manager()
    assert manager["datasourceTemplate"] == "docker"
    [files] = manager["managerFilePatterns"]
    assert _js_regex(files).search(CATALOG)
    assert (REPO / CATALOG).is_file()
    assert config["minimumReleaseAge"]


def test_the_image_manager_reads_every_catalog_image_in_the_pinned_form() -> None:
    [pattern] = (_js_regex(p) for p in _image_manager()["matchStrings"])
    constants = _image_constants()
    assert {"REDIS_IMAGE", "NGINX_IMAGE", "POSTGRES_BASE_IMAGE"} <= set(constants)
    for name, value in constants.items():
        reference = value if "@sha256:" in value else f"{value}@{DIGEST}"
        found = pattern.fullmatch(f'"{reference}"')
        assert found, f"{name}: {reference} would not be updated"
        image, digest = reference.split("@")
        assert f"{found['depName']}:{found['currentValue']}" == image
        assert found["currentDigest"] == digest
    # Once pinned (name:tag@sha256:...), each constant in the file is one match: none is missed.
    text = (REPO / CATALOG).read_text()
    pinned = [value for value in constants.values() if "@sha256:" in value]
    assert len(pattern.findall(text)) == len(pinned)


@pytest.mark.parametrize(
    ("reference", "updated"),
    [
        ('"nginx:1.28-alpine@sha256:abc"', False),  # not a full digest: not a pin
        ('"nginx:1.28-alpine"', False),  # a floating tag is not ours to bump
        ('"ghcr.io/acme/app:1.2.3@' + DIGEST + '"', True),
    ],
)
def test_the_image_manager_matches_pins_only(reference: str, updated: bool) -> None:
    [pattern] = (_js_regex(p) for p in _image_manager()["matchStrings"])
    assert bool(pattern.fullmatch(reference)) is updated


@pytest.mark.parametrize(
    ("tag", "allowed"),
    [
        ("1.28.0-alpine", True),
        ("1.28-alpine", True),
        ("1.30.1-alpine", True),
        ("1.29.3-alpine", False),
        ("1.27.5-alpine", False),
        ("mainline-alpine", False),
    ],
)
def test_nginx_stays_on_a_stable_branch(tag: str, allowed: bool) -> None:
    [rule] = [r for r in _renovate()["packageRules"] if r.get("matchPackageNames") == ["nginx"]]
    assert bool(_js_regex(rule["allowedVersions"]).search(tag)) is allowed


def test_major_image_updates_are_left_to_a_person() -> None:
    rules = _renovate()["packageRules"]
    assert any(r.get("matchUpdateTypes") == ["major"] and r.get("enabled") is False for r in rules)


def test_the_postgres_image_build_pulls_the_base_the_dockerfile_names(tmp_path: Path) -> None:
    # postgres-image.yml reads FROM, so a Renovate pull request that pins a new digest builds on it.
    workflow = yaml.safe_load((REPO / ".github/workflows/postgres-image.yml").read_text())
    [script] = [
        s["run"] for s in workflow["jobs"]["postgres-image"]["steps"] if "docker build" in str(s.get("run"))
    ]
    [line] = [line.strip() for line in script.splitlines() if line.strip().startswith("from=")]
    dockerfile = tmp_path / DOCKERFILE
    dockerfile.parent.mkdir(parents=True)
    dockerfile.write_text(f"# comment\nFROM  postgres:15.8-alpine@{DIGEST}\nRUN true\n")
    result = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; {line}; printf %s "$from"'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout == f"postgres:15.8-alpine@{DIGEST}"
    assert 'docker pull "$from"' in script
