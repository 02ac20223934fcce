"""The markdown the workflows write: job summaries and pull-request bodies (pure functions).

Inputs are what the steps saved (stack outputs JSON, health tables, diffs) and step outcomes;
an empty outcome means the step never ran. Nothing here reads files or the environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bankflow_infra.ops.workflow.tools import outcome

FENCE = "```"
NO_CI_RUN = (
    "Opened with the workflow's GITHUB_TOKEN, so GitHub starts no `ci` or `preview` run for it:",
    "close and reopen this pull request to run them.",
)


@dataclass(frozen=True)
class Run:
    """Who started the run and where it is (GITHUB_ACTOR, GITHUB_EVENT_NAME, ...)."""

    actor: str
    event: str
    server: str
    repository: str
    run_id: str

    @property
    def url(self) -> str:
        return f"{self.server}/{self.repository}/actions/runs/{self.run_id}"


def block(text: str, language: str = "") -> list[str]:
    """``text`` in a fenced block (the fence always on a line of its own)."""
    return [FENCE + language, *text.rstrip("\n").split("\n"), FENCE] if text else [FENCE + language, FENCE]


def outcome_table(rows: Sequence[tuple[str, str | None]]) -> list[str]:
    return ["| step | outcome |", "|---|---|", *(f"| {step} | {outcome(value)} |" for step, value in rows)]


def tables(saved: Sequence[tuple[str, str]]) -> list[str]:
    """Each non-empty saved table (name, text) under its own heading."""
    lines: list[str] = []
    for name, text in saved:
        if text:
            lines += ["", f"### {name}", "", *block(text)]
    return lines


def text(lines: Sequence[str]) -> str:
    return "\n".join(lines) + "\n"


# --- deploy-stack.yml ------------------------------------------------------------------------


def stack_outputs_lines(outputs: Any) -> list[str]:
    """The release and the URLs from saved `pulumi stack output --json` ({} when unreadable)."""
    if not isinstance(outputs, Mapping):
        return ["(stack outputs unreadable)"]
    urls = outputs.get("urls") or {}
    if not isinstance(urls, Mapping):
        return ["(stack outputs unreadable)"]
    lines = [f"Release (host bundle): `{outputs.get('release') or 'unknown'}`", ""]
    return lines + [f"- {service}: {url}" for service, url in sorted(urls.items())]


def deploy_summary(
    stack: str,
    commit: str,
    tag: str,
    outputs: Any,
    steps: Mapping[str, str | None],
    saved_tables: Sequence[tuple[str, str]],
) -> str:
    """The deploy job's summary: outcomes, commit and tag, release and URLs, health tables."""
    lines = [f"## {stack}", ""]
    lines += outcome_table(
        [
            ("pulumi up", steps.get("up")),
            ("health gate", steps.get("health")),
            ("rollback", steps.get("rollback")),
        ]
    )
    lines += ["", f"Commit `{commit}`, image tag `{tag}`.", ""]
    lines += stack_outputs_lines(outputs)
    lines += tables(saved_tables)
    if steps.get("rollback") == "success":
        lines += [
            "",
            "Rolled back on the host. The stack state still records the failed release:",
            "fix forward (a new release tag or a revert commit), do not re-run this job as is.",
        ]
    return text(lines)


# --- release.yml -----------------------------------------------------------------------------


def release_pr_body(stack: str, tag: str, file: str, diff: str, run: Run) -> str:
    lines = [
        f"Release `{tag}` to **{stack}**: `bankflow:release.tag` in `{file}`.",
        "",
        "Merging this pull request deploys it through `deploy.yml` (CI, `pulumi up`, health gate,",
        "rollback on a failed gate); production waits for the `production` environment's reviewers.",
        "Merge it yourself: a merge by the workflow token (auto-merge) would start no deploy.",
        "",
        f"Requested by {run.actor} ({run.event}), run {run.url}.",
        "",
        *block(diff, "diff"),
        "",
        *NO_CI_RUN,
    ]
    return text(lines)


def release_summary(
    stack: str, tag: str, base: str, steps: Mapping[str, str | None], url: str, diff: str
) -> str:
    lines = [f"## release {tag} -> {stack}", ""]
    if url:
        lines += [
            f"Pull request against `{base}`: {url}",
            "",
            f"Merging it deploys {stack} through deploy.yml. Nothing was deployed by this run.",
        ]
    elif steps.get("pr") == "success":
        lines.append(f"`{base}` already has this tag: no pull request, nothing to deploy.")
    else:
        lines.append(
            f"No pull request (edit: {outcome(steps.get('edit'))}, pull request: {outcome(steps.get('pr'))})."
            " Nothing was deployed."
        )
    if diff:
        lines += ["", *block(diff, "diff")]
    return text(lines)


# --- emergency.yml ---------------------------------------------------------------------------


def rebuild_rows(stack: str, new_stack: str, steps: Mapping[str, str | None]) -> list[tuple[str, str | None]]:
    return [
        (f"rebuild {new_stack}", steps.get("rebuild")),
        (f"health of {new_stack} (origin)", steps.get("health-new")),
        (f"cutover of {stack}", steps.get("cutover")),
        (f"health of {stack} after cutover", steps.get("health-cutover")),
    ]


def rebuild_summary(
    stack: str,
    new_stack: str,
    branch: str,
    steps: Mapping[str, str | None],
    patch: str,
    own_diff: str,
    saved_tables: Sequence[tuple[str, str]],
) -> str:
    """The rebuild job's summary. ``own_diff`` is Pulumi.<stack>.yaml as changed on the runner:
    shown for a person to decide when the cutover did not succeed (it is then not committed)."""
    lines = [f"## emergency rebuild of {stack} as {new_stack}", ""]
    lines += outcome_table(
        [
            ("rebuild", steps.get("rebuild")),
            (f"health of {new_stack} (origin)", steps.get("health-new")),
            ("cutover", steps.get("cutover")),
            (f"health of {stack} after cutover", steps.get("health-cutover")),
        ]
    )
    if patch:
        lines += [
            "",
            f"### Stack config for the pull request against `{branch}` (job pull-request)",
            "",
            f"Merge it before any other push to `{branch}`: that push deploys the committed config.",
            "",
            *block(patch, "diff"),
        ]
    if steps.get("cutover") != "success" and own_diff:
        lines += ["", "### Changed on the runner, not committed (the cutover did not succeed)", ""]
        lines += block(own_diff, "diff")
    return text(lines + tables(saved_tables))


def emergency_pr_body(
    stack: str, new_stack: str, base: str, steps: Mapping[str, str | None], patch: str, run: Run
) -> str:
    lines = [
        f"Stack config written by the emergency run {run.url}",
        f"(started by {run.actor}): until this is merged it exists only in the state backend.",
        "",
        *outcome_table(rebuild_rows(stack, new_stack, steps)),
        "",
    ]
    if steps.get("cutover") == "success":
        lines += [
            f"**Traffic has moved to {new_stack}** (`edge.originStack`). Merge this before any other push to",
            f"`{base}`: a deploy of the committed config would move traffic back to {stack}'s own server.",
        ]
    else:
        lines += [
            f"Traffic has not moved. `Pulumi.{new_stack}.yaml` is not deployed by any workflow; it records",
            "the new stack's config (and its VPC range, so the next rebuild picks another).",
        ]
    lines += [
        "",
        *block(patch, "diff"),
        "",
        NO_CI_RUN[0],
        NO_CI_RUN[1] + " Merge it yourself (not auto-merge).",
    ]
    return text(lines)


def emergency_pr_summary(
    stack: str, new_stack: str, base: str, steps: Mapping[str, str | None], url: str
) -> str:
    lines = [f"## stack config of the emergency rebuild of {stack} as {new_stack}", ""]
    if url:
        lines.append(f"Pull request against `{base}`: {url}. Merge it before any other push to `{base}`.")
    elif steps.get("pr") == "success":
        lines.append(f"`{base}` already has this stack config: no pull request.")
    else:
        lines += [
            f"No pull request (apply: {outcome(steps.get('apply'))}, "
            f"pull request: {outcome(steps.get('pr'))}): commit the diff",
            f"in the rebuild job's summary by hand before any other push to `{base}`.",
        ]
    return text(lines)
