"""stackfile.py, the one reader of the stack files: every way a file can be unusable is one
StackFileError naming it (never a traceback, never a silent pass), and a stack never claims what
another stack file of the project holds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bankflow_infra.settings import SettingsError
from bankflow_infra.stackfile import (
    StackFileError,
    check_against_other_stacks,
    conflicts_with_other_stacks,
    read_stack_file,
)
from tests.support.tools import REPO


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml", "Pulumi.production.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def staging_file(project: Path) -> Path:
    return project / "Pulumi.staging.yaml"


BROKEN = [
    (
        "duplicate top-level key",
        lambda text: text + "  bankflow:server:\n    enabled: false\n",
        "duplicate key 'bankflow:server'",
    ),
    (
        "duplicate nested key",
        lambda text: text.replace(
            "    region: nyc3\n    size:", "    region: nyc3\n    region: fra1\n    size:"
        ),
        "duplicate key 'region'",
    ),
    (
        "misspelt namespace",
        lambda text: text.replace("bankflow:server:", "bankfow:server:"),
        "bankfow:server: unknown namespace 'bankfow'",
    ),
    ("a list, not a mapping", lambda text: "- config\n", "must be a mapping with a 'config:' key"),
    ("config is a list", lambda text: "config:\n  - bankflow:environment\n", "'config' must be a mapping"),
    ("not YAML", lambda text: text + "  bankflow:nginx: {\n", "not valid YAML"),
]


@pytest.mark.parametrize(("edit", "expected"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_a_broken_file_is_one_error_naming_it(project, edit, expected):
    path = staging_file(project)
    path.write_text(edit(path.read_text()))
    with pytest.raises(StackFileError) as raised:
        read_stack_file(project, "staging")
    assert "Pulumi.staging.yaml" in str(raised.value)
    assert expected in str(raised.value)


def test_a_file_that_is_not_utf8_is_one_error(project):
    path = staging_file(project)
    path.write_bytes(path.read_bytes().replace(b"ops@", "op\u00e9@".encode("latin-1")))
    with pytest.raises(StackFileError, match=r"Pulumi\.staging\.yaml: not UTF-8 text \(byte 0xe9"):
        read_stack_file(project, "staging")


def test_a_directory_in_place_of_the_file_is_one_error(project):
    path = staging_file(project)
    path.unlink()
    path.mkdir()
    with pytest.raises(StackFileError, match=r"Pulumi\.staging\.yaml: is a directory, not a file"):
        read_stack_file(project, "staging")


def test_a_key_without_namespace_is_the_projects(project):
    path = staging_file(project)
    path.write_text(
        path.read_text().replace("  bankflow:nginx", "  nginx").replace("bankflow:backups:", "backups:")
    )
    assert "backups" in read_stack_file(project, "staging").bankflow_values()


# --------------------------------------------------------------------------- across stack files


def settings_of(project: Path, stack: str):
    return read_stack_file(project, stack).settings()


def test_the_committed_stacks_do_not_conflict():
    for stack in ("staging", "production"):
        assert conflicts_with_other_stacks(REPO, settings_of(REPO, stack)) == []


def test_a_hostname_of_another_environment_is_refused(project):
    path = staging_file(project)
    path.write_text(
        path.read_text().replace("api: [api.qa.conciliaextrato.com]", "api: [api.conciliaextrato.com]")
    )
    problems = conflicts_with_other_stacks(project, settings_of(project, "staging"))
    assert problems == [
        "bankflow:hostnames.api[0]: 'api.conciliaextrato.com' belongs to production "
        "(Pulumi.production.yaml); a hostname belongs to one environment"
    ]


def test_two_edge_stacks_of_one_environment_never_share_a_hostname(project):
    copy = (project / "Pulumi.production.yaml").read_text().replace("10.120.16.0/20", "10.130.16.0/20")
    (project / "Pulumi.production-r1.yaml").write_text(copy)
    problems = conflicts_with_other_stacks(project, settings_of(project, "production-r1"))
    assert len(problems) == 4
    assert all("also served by Pulumi.production.yaml" in p for p in problems)
    # What `rebuild` writes (edge off) shares them legitimately.
    (project / "Pulumi.production-r1.yaml").write_text(
        copy.replace("    zoneSettings: true\n", "    zoneSettings: false\n").replace(
            "  bankflow:edge:\n    enabled: true", "  bankflow:edge:\n    enabled: false"
        )
    )
    assert conflicts_with_other_stacks(project, settings_of(project, "production-r1")) == []


@pytest.mark.parametrize("cidr", ["10.120.16.0/20", "10.120.0.0/16", "10.120.20.0/24"])
def test_a_vpc_range_overlapping_another_stack_file_is_refused(project, cidr):
    path = staging_file(project)
    path.write_text(path.read_text().replace("10.110.16.0/20", cidr))
    with pytest.raises(SettingsError) as raised:
        check_against_other_stacks(project, settings_of(project, "staging"), "Pulumi.staging.yaml")
    assert f"bankflow:server.vpcCidr: '{cidr}' overlaps 10.120.16.0/20 of Pulumi.production.yaml" in str(
        raised.value
    )


def test_an_unreadable_other_file_claims_nothing(project):
    (project / "Pulumi.broken.yaml").write_bytes(b"\xff\xfe")
    assert conflicts_with_other_stacks(project, settings_of(project, "staging")) == []
