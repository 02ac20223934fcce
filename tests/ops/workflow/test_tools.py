"""The workflows' decisions (bankflow_infra.ops.workflow.tools), bad inputs included."""

from __future__ import annotations

import pytest

from bankflow_infra.contract import exit_codes, grammar
from bankflow_infra.contract.services import DEPLOY_BRANCH
from bankflow_infra.ops.workflow import tools
from tests.support.tags import BAD_TAGS, GOOD_TAGS

DIGEST = "ab" * 32


@pytest.mark.parametrize(("stack", "branch"), sorted(DEPLOY_BRANCH.items()))
def test_each_stack_deploys_from_its_branch(stack: str, branch: str) -> None:
    assert tools.deploy_branch(stack) == branch
    assert tools.check_deploy_ref(stack, f"refs/heads/{branch}") == branch


@pytest.mark.parametrize("stack", ["", "prod", "Staging", "staging ", "production-r1", "main"])
def test_an_unknown_stack_is_refused_as_bad_input(stack: str) -> None:
    with pytest.raises(tools.WorkflowError, match="staging or production") as caught:
        tools.deploy_branch(stack)
    assert caught.value.exit_code == exit_codes.USAGE
    assert repr(stack) in str(caught.value)


@pytest.mark.parametrize(
    ("stack", "ref"),
    [
        ("staging", "refs/heads/main"),
        ("production", "refs/heads/staging"),
        ("production", "refs/heads/feature"),
        ("production", "refs/tags/main"),
    ],
)
def test_the_guard_refuses_another_branch(stack: str, ref: str) -> None:
    with pytest.raises(tools.WorkflowError, match=f"only from the {DEPLOY_BRANCH[stack]} branch"):  # type: ignore[index]
        tools.check_deploy_ref(stack, ref)


@pytest.mark.parametrize("tag", GOOD_TAGS)
def test_good_tags_pass(tag: str) -> None:
    assert tools.check_release_tag(tag) == tag
    assert grammar.is_image_tag(tag)


@pytest.mark.parametrize("tag", BAD_TAGS)
def test_bad_tags_are_refused(tag: str) -> None:
    with pytest.raises(tools.WorkflowError, match=r"not 'latest'"):
        tools.check_release_tag(tag)


def test_a_release_request_names_its_branch_and_title() -> None:
    request = tools.release_request("production", "2026.12.01-1")
    assert request.outputs() == {
        "tag": "2026.12.01-1",
        "stack": "production",
        "ref": "main",
        "branch": "release/production-2026.12.01-1",
        "title": "release: production 2026.12.01-1",
    }
    with pytest.raises(tools.WorkflowError):
        tools.release_request("dev", "2026.12.01-1")
    with pytest.raises(tools.WorkflowError):
        tools.release_request("staging", "latest")


@pytest.mark.parametrize(
    ("environment", "confirm", "ref", "new_stack", "expected"),
    [
        ("production", "rebuild production", "refs/heads/main", "", "production-r42"),
        ("staging", "rebuild staging", "refs/heads/feature", "staging-2", "staging-2"),
        ("production", "rebuild staging", "refs/heads/main", "", None),
        ("production", "Rebuild production", "refs/heads/main", "", None),
        ("production", "rebuild production ", "refs/heads/main", "", None),
        ("production", "", "refs/heads/main", "", None),
        ("production", "rebuild production", "refs/heads/feature", "", None),
        ("production", "rebuild production", "refs/heads/main", "x;rm -rf /", None),
        ("production", "rebuild production", "refs/heads/main", "staging", None),
        ("production", "rebuild production", "refs/heads/main", "ab", None),
        ("production", "rebuild production", "refs/heads/main", "Prod-new", None),
        ("dev", "rebuild dev", "refs/heads/main", "", None),
    ],
)
def test_the_typed_confirmation(
    environment: str, confirm: str, ref: str, new_stack: str, expected: str | None
) -> None:
    if expected is None:
        with pytest.raises(tools.WorkflowError):
            tools.confirm_rebuild(environment, confirm, new_stack, ref, "42")
        return
    request = tools.confirm_rebuild(environment, confirm, new_stack, ref, "42")
    assert request.outputs() == {
        "stack": environment,
        "new-stack": expected,
        "branch": DEPLOY_BRANCH[environment],
    }  # type: ignore[index]


@pytest.mark.parametrize("name", ["production-r42", "abc", "a" + "b" * 39])
def test_workflow_stack_names_are_new_stack_names_too(name: str) -> None:
    assert tools.WORKFLOW_NEW_STACK.fullmatch(name)
    assert grammar.is_new_stack_name(name)


def test_the_served_release_is_a_full_digest_or_nothing() -> None:
    assert tools.served_release(DIGEST) == DIGEST
    for other in ("", "null", DIGEST[:12], DIGEST.upper(), DIGEST + "\n", "error: no stack"):
        assert tools.served_release(other) == ""


def test_a_rollback_goes_back_only_when_the_up_replaced_the_release() -> None:
    assert tools.rollback_release("staging", DIGEST, "cd" * 32) == DIGEST[:12]
    assert tools.rollback_release("staging", DIGEST, "") == DIGEST[:12]
    for before, after in (("", "cd" * 32), (DIGEST, DIGEST), ("", "")):
        with pytest.raises(tools.StepFailed, match="no new release went out") as caught:
            tools.rollback_release("staging", before, after)
        assert caught.value.exit_code == exit_codes.FAILED


def test_a_patch_may_touch_top_level_stack_files_only() -> None:
    assert tools.stack_config_files(["Pulumi.production-r42.yaml", "Pulumi.production.yaml"])
    for name in (
        ".github/workflows/x.yml",
        "Pulumi.yaml",
        "sub/Pulumi.staging.yaml",
        "Pulumi.A.yaml",
        '"Pulumi.x y.yaml"',
    ):
        with pytest.raises(tools.WorkflowError, match="not only Pulumi"):
            tools.stack_config_files([name])


def test_emergency_titles_and_outcomes() -> None:
    assert (
        tools.emergency_title("production", "production-r4", "success")
        == "emergency: production cut over to production-r4"
    )
    assert (
        tools.emergency_title("staging", "staging-r4", "failure")
        == "emergency: stack config of staging-r4 (rebuild of staging)"
    )
    assert tools.outcome("") == tools.outcome(None) == "not run"
    assert tools.outcome("skipped") == "skipped"


# --- the one-line tag edit -------------------------------------------------------------------


HEAD = "# header\nconfig:\n  bankflow:release:   # the app\n    registry: ghcr.io/x  # pinned\n"
TAIL = "    images:\n      tag: not-this-one\n  bankflow:backups:\n    region: nyc3\n"


def test_the_edit_changes_one_line_and_keeps_comments() -> None:
    text = f"{HEAD}    tag: '2026.11.26-1'\n{TAIL}"
    assert tools.replace_release_tag(text, "2026.12.01-1", "f") == f'{HEAD}    tag: "2026.12.01-1"\n{TAIL}'
    # An all-digit tag stays a string.
    assert '    tag: "1"\n' in tools.replace_release_tag(text, "1", "f")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("config:\n  bankflow:environment: staging\n", "found 0"),
        ("config:\n  bankflow:release:\n    registry: r\n", "expected one `tag:`"),
        ("config:\n  bankflow:release:\n    tag: a\n    tag: b\n", "expected one `tag:`"),
        ("config:\n  bankflow:release:\n    tag: a\n  bankflow:release:\n    tag: b\n", "found 2"),
    ],
)
def test_the_edit_refuses_a_file_it_does_not_understand(text: str, problem: str) -> None:
    with pytest.raises(tools.WorkflowError, match=problem):
        tools.replace_release_tag(text, "2026.12.01-1", "Pulumi.staging.yaml")


def test_the_edit_refuses_a_bad_tag() -> None:
    with pytest.raises(tools.WorkflowError, match=r"not 'latest'"):
        tools.replace_release_tag(f"{HEAD}    tag: a\n", 'x"\n  injected: true', "f")


def test_only_the_tag_changed() -> None:
    before = {"config": {"bankflow:release": {"tag": "a", "registry": "r"}, "x": 1}}
    assert tools.only_the_tag_changed(
        before, {"config": {"bankflow:release": {"tag": "b", "registry": "r"}, "x": 1}}, "b"
    )
    assert not tools.only_the_tag_changed(
        before, {"config": {"bankflow:release": {"tag": "b", "registry": "r"}, "x": 2}}, "b"
    )
    assert not tools.only_the_tag_changed({"config": None}, {"config": None}, "b")
