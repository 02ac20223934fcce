"""A bundle for a managed PostgreSQL cluster (issue 13, ``managed_database: true`` in
release.json): the agent applies no roles -- nothing runs on the droplet to apply them to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bankflow_infra.host.database_roles import RolesError, load_roles

# an entry the agent would refuse: proves the managed flag is what skips it
BROKEN_ENTRY = {"service": "postgres", "database": "bankflow", "superuser": "x", "app_role": "x"}


def bundle(tmp_path: Path, **manifest: object) -> Path:
    (tmp_path / "release.json").write_text(json.dumps(manifest))
    return tmp_path


def test_a_managed_database_bundle_has_no_roles_to_apply(tmp_path: Path) -> None:
    assert load_roles(bundle(tmp_path, managed_database=True, database=BROKEN_ENTRY)) is None


def test_the_same_entry_on_a_droplet_database_is_checked(tmp_path: Path) -> None:
    with pytest.raises(RolesError, match="must not be the superuser"):
        load_roles(bundle(tmp_path, managed_database=False, database=BROKEN_ENTRY))
