"""Release ids and compose project names, as the renderer and the agent both use them."""

from __future__ import annotations

import hashlib

from bankflow_infra.contract import release


def test_a_release_id_is_the_digest_prefix_and_nothing_else_passes() -> None:
    digest = hashlib.sha256(b"bundle").hexdigest()
    rid = release.release_id(digest)
    assert digest.startswith(rid)
    assert len(rid) == release.RELEASE_ID_LENGTH
    assert release.is_release_id(rid)
    for bad in (digest, rid[:-1], rid.upper(), f"{rid}\n", "x" * release.RELEASE_ID_LENGTH, ""):
        assert not release.is_release_id(bad), bad


def test_each_release_runs_as_its_own_project_beside_the_base() -> None:
    a, b = "0123456789ab", "ba9876543210"
    assert release.app_project_name(a) != release.app_project_name(b)
    assert release.BASE_PROJECT not in (release.app_project_name(a), release.app_project_name(b))
    assert release.release_alias("api", a) != release.release_alias("api", b)


def test_the_bundle_digest_sees_every_path_mode_and_byte() -> None:
    base = [("release.json", 0o644, b"{}\n"), ("secrets/app.env", 0o600, b"A=1\n")]
    digest = release.digest_files(base)
    assert release.digest_files(reversed(base)) == digest  # order of listing does not matter
    changed = [
        [("release.json", 0o600, b"{}\n"), base[1]],  # a mode
        [("release.jso", 0o644, b"n{}\n"), base[1]],  # a byte moved from the path to the content
        [base[0], ("secrets/app.env", 0o600, b"A=2\n")],  # a byte
        base[:1],  # a file
    ]
    assert len({digest, *(release.digest_files(files) for files in changed)}) == 1 + len(changed)
