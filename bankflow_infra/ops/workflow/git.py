"""What the workflows do with git and the GitHub CLI: collect, apply and propose stack config.

Only the pull-request jobs (contents: write, no deploy credentials) and the rebuild job's
collection step use this. ``GH_TOKEN`` reaches git through gh's credential helper: never in a
URL, a file, an argument or the log.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from bankflow_infra.ops.workflow.tools import StepFailed, WorkflowError, stack_config_files
from bankflow_infra.stackfile import stack_file_name

BOT_NAME = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"
# Nothing in a configured credential helper, then gh's: the token never touches .git/config.
GH_CREDENTIALS = ("-c", "credential.helper=", "-c", "credential.helper=!gh auth git-credential")


@dataclass(frozen=True)
class Notice:
    level: str  # notice, warning or error
    title: str
    message: str


class Repo:
    """A checkout, as the workflow's steps see it (the current directory by default)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(args, cwd=self.root, capture_output=True, text=True, check=check)
        except FileNotFoundError:
            raise StepFailed("Tool missing", f"{args[0]} is not installed on this runner") from None
        except subprocess.CalledProcessError as error:
            detail = (error.stderr or error.stdout or "").strip()
            raise StepFailed(f"{args[0]} {args[1]} failed", f"{' '.join(args[:2])}: {detail}") from None

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("git", *args, check=check)

    def changed(self, *paths: str) -> bool:
        return self.git("diff", "--quiet", "--", *paths, check=False).returncode != 0

    def diff(self, *paths: str) -> str:
        return self.git("diff", "--", *paths).stdout


def check_branch_name(repo: Repo, branch: str) -> str:
    """``branch`` as git accepts it (a tag with `..` or `.lock` makes an unusable one)."""
    if repo.git("check-ref-format", "--branch", branch, check=False).returncode != 0:
        raise WorkflowError(
            "Unusable branch name",
            f"{branch} is not a valid git branch name (e.g. '..' or '.lock' in the tag)",
        )
    return branch


def collect_stack_config(
    repo: Repo, stack: str, new_stack: str, cutover: str, patch: Path
) -> tuple[list[str], list[Notice]]:
    """Write the stack config to commit as a binary-safe patch; return its files and warnings.

    The new stack's file (stack init, config set) whenever the rebuild created it, even if a later
    step failed: finishing or abandoning that stack by hand needs it. Pulumi.<stack>.yaml
    (edge.originStack) only once the cutover succeeded: then traffic has moved, and git must say
    so; after a failed cutover a person decides (diff in the job summary).
    """
    files: list[str] = []
    notices: list[Notice] = []
    new = stack_file_name(new_stack)
    if (repo.root / new).is_file() and not repo.git("ls-files", "--", new).stdout.strip():
        repo.git("add", "--intent-to-add", "--", new)
        files.append(new)
    own = stack_file_name(stack)
    if repo.changed(own):
        if cutover == "success":
            files.append(own)
        else:
            notices.append(
                Notice(
                    "warning",
                    "Stack config not committed",
                    f"{own} changed on the runner but the cutover did not succeed: "
                    "decide by hand (diff in the job summary)",
                )
            )
    patch.parent.mkdir(parents=True, exist_ok=True)
    if files:
        patch.write_text(repo.git("diff", "--binary", "--", *files).stdout)
    return files, notices


def apply_stack_config(repo: Repo, patch: Path, base: str) -> list[str]:
    """Apply a collected patch that touches only top-level stack files; return those files."""
    numstat = repo.git("apply", "--numstat", str(patch)).stdout
    files = stack_config_files(
        line.split("\t", 2)[2] for line in numstat.splitlines() if line.count("\t") >= 2
    )
    if repo.git("apply", str(patch), check=False).returncode != 0:
        raise StepFailed(
            "Stack config does not apply",
            f"{base} changed under the rebuild; apply the diff from the rebuild job's summary by hand",
        )
    return files


def open_pull_request(repo: Repo, base: str, branch: str, title: str, body: Path) -> tuple[str, Notice]:
    """Commit the changed stack files on ``branch`` and open a pull request against ``base``.

    Returns the pull request's URL ("" when there was nothing to change) and what to tell the
    run. A re-run finds the open pull request instead of pushing again.
    """
    repo.git("config", "user.name", BOT_NAME)
    repo.git("config", "user.email", BOT_EMAIL)
    repo.git("add", "--all", "--", "Pulumi.*.yaml")
    if repo.git("diff", "--cached", "--quiet", check=False).returncode == 0:
        return "", Notice(
            "notice", "Nothing to change", f"{base} already has this stack config: no pull request"
        )
    listed = repo.run(
        "gh",
        "pr",
        "list",
        "--base",
        base,
        "--head",
        branch,
        "--state",
        "open",
        "--json",
        "url",
        "--jq",
        '.[0].url // ""',
    )
    existing = listed.stdout.strip()
    if existing:
        return existing, Notice("notice", "Pull request already open", existing)
    repo.git("switch", "--quiet", "--create", branch)
    repo.git("commit", "--quiet", "--message", title)
    pushed = repo.git(*GH_CREDENTIALS, "push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", check=False)
    if pushed.returncode != 0:
        raise StepFailed(
            "Branch not pushed",
            f"{branch} exists without an open pull request: delete the branch and run again",
        )
    created = repo.run(
        "gh", "pr", "create", "--base", base, "--head", branch, "--title", title, "--body-file", str(body)
    )
    url = created.stdout.strip()
    return url, Notice("notice", "Pull request", url)
