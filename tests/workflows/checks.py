"""Rules every GitHub workflow here must keep, as functions returning the problems they find.

Each takes the workflow's text or its parsed YAML, so a test can feed it a deliberately broken
snippet and prove the rule catches it (tests/workflows/test_checks.py).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"

Workflow = dict[Any, Any]
Step = dict[str, Any]

PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
VERSION_COMMENT = re.compile(r"^\s+#\s*v\d+(\.\d+)*\b")
SECRET = re.compile(r"\$\{\{[^}]*\bsecrets\.")
# Steps that change a stack: each must be followed by a health gate.
CHANGES_STACK = re.compile(r"\bpulumi up\b|\bbankflow-infra (?:rebuild|cutover)\b")
# Steps that need the stack's deploy credentials: only in jobs behind an environment.
NEEDS_ENVIRONMENT = re.compile(
    r"\bpulumi (?:up|config set)\b|\bbankflow-infra (?:rollback|rebuild|cutover)\b"
)
HEALTH = re.compile(r"\bbankflow-infra health\b")
# The only write scopes, by job name: the preview comment, and the jobs that open a pull request
# with stack config (release.yml, emergency.yml).
WRITE_SCOPES: dict[str, set[str]] = {
    "preview": {"pull-requests"},
    "postgres-image": {"packages"},  # pushes the postgres + pgBackRest image to GHCR, nothing else
    "pull-request": {"contents", "pull-requests"},
}
# Deploy credentials: a job that can push to the repository must hold none of them. The offline
# commands are allowed there: `plan` (mock engine) and the `workflow` group (no pulumi, no
# credentials: tests/ops/workflow proves it imports no stack access).
PULUMI_USE = re.compile(r"\bpulumi\b|\bbankflow-infra (?!plan\b|workflow\b)[a-z]+")
# Longest `run:` block, in lines of the workflow file: longer logic belongs in `bankflow-infra
# workflow` (Python with unit tests), the YAML only wires steps.
MAX_RUN_LINES = 15
# Scripts that print every variable, secrets included: xtrace, `env`, `printenv`.
DUMPS_ENVIRONMENT = re.compile(r"\bset -[a-z]*x|^\s*env\s*$|\bprintenv\b", re.MULTILINE)


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))


def load(text: str) -> Workflow:
    workflow = yaml.safe_load(text)
    assert isinstance(workflow, dict), "a workflow is a mapping"
    return workflow


def read(name: str) -> Workflow:
    return load((WORKFLOWS / name).read_text())


def triggers(workflow: Workflow) -> dict[str, Any]:
    """The `on:` mapping (YAML 1.1 reads the bare key `on` as True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    assert isinstance(on, dict), "the workflow has no `on:`"
    return on


def jobs(workflow: Workflow) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = workflow.get("jobs") or {}
    return found


def steps(job: dict[str, Any]) -> list[Step]:
    found: list[Step] = job.get("steps") or []
    return found


def step(workflow: Workflow, job: str, step_id: str) -> Step:
    for candidate in steps(jobs(workflow)[job]):
        if candidate.get("id") == step_id:
            return candidate
    raise AssertionError(f"job {job} has no step with id {step_id}")


def run_text(candidate: Step) -> str:
    return str(candidate.get("run") or "")


def run_step(candidate: Step, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A step's `run:` as GitHub runs it (bash -eo pipefail, no profile), bounded."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", run_text(candidate)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def commands(candidate: Step) -> str:
    """The script without the lines that only print or comment (`echo "| pulumi up |"` runs nothing)."""
    kept = [line for line in run_text(candidate).splitlines() if not re.match(r"\s*(?:echo\b|#)", line)]
    return "\n".join(kept)


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def unpinned_actions(text: str) -> list[str]:
    """Every third-party `uses:` is owner/repo@<40-hex SHA> followed by `# vX.Y.Z`."""
    problems = []
    lines = text.splitlines()
    seen = 0
    for number, line in enumerate(lines, 1):
        match = USES_LINE.match(line)
        if not match:
            continue
        seen += 1
        ref = match["ref"].strip("'\"")
        if ref.startswith("./"):
            continue
        if ref.startswith("docker://"):
            if "@sha256:" not in ref:
                problems.append(f"line {number}: {ref} is not pinned to a digest")
            continue
        if not PINNED.match(ref):
            problems.append(f"line {number}: {ref} is not pinned to a full commit SHA")
        elif not VERSION_COMMENT.match(match["rest"]):
            problems.append(f"line {number}: {ref} has no `# vX.Y.Z` comment naming the version")
    in_yaml = sum(1 for path, value in _walk(load(text), "") if path.endswith(".uses") and value)
    if in_yaml != seen:
        problems.append(f"{in_yaml} `uses:` in the YAML but {seen} `uses:` lines: write one per line")
    return problems


def secret_leaks(workflow: Workflow) -> list[str]:
    """Secrets appear only as values of a step's `env:`, and no script prints those variables."""
    problems = []
    for path, value in _walk(workflow, ""):
        in_step_env = re.fullmatch(r"\.jobs\.[^.]+\.steps\[\d+\]\.env\.[^.]+", path)
        if isinstance(value, str) and SECRET.search(value) and not in_step_env:
            problems.append(f"{path}: a secret outside a step's env")
    for job_name, job in jobs(workflow).items():
        if job.get("secrets") is not None:
            problems.append(f"jobs.{job_name}.secrets: pass no secrets to reusable workflows")
        for index, candidate in enumerate(steps(job)):
            secret_vars = [
                name for name, value in (candidate.get("env") or {}).items() if SECRET.search(str(value))
            ]
            script = run_text(candidate)
            if re.search(r"\bsecrets\.", script):
                problems.append(f"jobs.{job_name}.steps[{index}]: `secrets.` in a script")
            for name in secret_vars:
                printed = rf"(?m)^.*\b(?:echo|printf|cat)\b.*\$\{{?{re.escape(name)}\b"
                if re.search(printed, script) or re.search(DUMPS_ENVIRONMENT, script):
                    problems.append(f"jobs.{job_name}.steps[{index}]: may print the secret ${name}")
    return problems


def run_injections(workflow: Workflow) -> list[str]:
    """No `${{ }}` inside a script: values reach scripts through env only."""
    return [
        f"jobs.{job_name}.steps[{index}]: `${{{{` in run"
        for job_name, job in jobs(workflow).items()
        for index, candidate in enumerate(steps(job))
        if "${{" in run_text(candidate)
    ]


def hygiene_problems(workflow: Workflow) -> list[str]:
    problems = []
    if workflow.get("permissions") != {}:
        problems.append("top-level `permissions` must be {} (grant per job)")
    if "pull_request_target" in triggers(workflow):
        problems.append("pull_request_target runs untrusted code with secrets")
    for job_name, job in jobs(workflow).items():
        where = f"jobs.{job_name}"
        permissions = job.get("permissions")
        if not isinstance(permissions, dict):
            problems.append(f"{where}: no `permissions` of its own")
        else:
            for scope, level in permissions.items():
                if level == "write" and scope not in WRITE_SCOPES.get(job_name, set()):
                    problems.append(f"{where}: {scope}: write")
        if "steps" in job and "timeout-minutes" not in job:
            problems.append(f"{where}: no timeout-minutes")
        for index, candidate in enumerate(steps(job)):
            uses = str(candidate.get("uses") or "")
            persist = str((candidate.get("with") or {}).get("persist-credentials")).lower()
            if uses.startswith("actions/checkout@") and persist != "false":
                problems.append(f"{where}.steps[{index}]: checkout without persist-credentials: false")
            script = run_text(candidate).strip()
            if "\n" in script and not script.startswith("set -euo pipefail"):
                problems.append(f"{where}.steps[{index}]: a multi-line run without `set -euo pipefail` first")
    return problems


def write_job_problems(workflow: Workflow) -> list[str]:
    """A job that can push (contents: write) holds no deploy credentials and changes no stack.

    No environment, no secret but GITHUB_TOKEN, no pulumi and no bankflow-infra command beyond the
    offline `plan`: it writes to git, and a deploy happens only from what git then holds.
    """
    problems = []
    for job_name, job in jobs(workflow).items():
        if (job.get("permissions") or {}).get("contents") != "write":
            continue
        where = f"jobs.{job_name}"
        if job.get("environment") or job.get("uses"):
            problems.append(f"{where}: can push and runs behind an environment or a reusable workflow")
        for path, value in _walk(job, where):
            if isinstance(value, str) and re.search(r"\bsecrets\.(?!GITHUB_TOKEN\b)", value):
                problems.append(f"{path}: a secret other than GITHUB_TOKEN in a job that can push")
        for index, candidate in enumerate(steps(job)):
            uses = str(candidate.get("uses") or "")
            if uses.startswith("pulumi/") or PULUMI_USE.search(commands(candidate)):
                problems.append(f"{where}.steps[{index}]: pulumi or a stack command in a job that can push")
    return problems


def environment_problems(workflow: Workflow) -> list[str]:
    """Jobs that change a stack or read its deploy credentials run behind an environment."""
    problems = []
    for job_name, job in jobs(workflow).items():
        if any(NEEDS_ENVIRONMENT.search(commands(candidate)) for candidate in steps(job)):
            if not job.get("environment"):
                problems.append(f"jobs.{job_name}: changes a stack without an `environment`")
            concurrency = job.get("concurrency") or {}
            if not str(concurrency.get("group", "")).startswith("bankflow-stack-${{"):
                problems.append(f"jobs.{job_name}: not in the per-stack concurrency group")
            if concurrency.get("cancel-in-progress") is not False:
                problems.append(f"jobs.{job_name}: concurrency must set cancel-in-progress: false")
    return problems


def health_gate_problems(workflow: Workflow) -> list[str]:
    """After every step that changes a stack, a health gate; after a failed `up` gate, a rollback."""
    problems = []
    for job_name, job in jobs(workflow).items():
        job_steps = steps(job)
        for index, candidate in enumerate(job_steps):
            script = commands(candidate)
            if not CHANGES_STACK.search(script) or "--dry-run" in script:
                continue
            later = job_steps[index + 1 :]
            gate = next((s for s in later if HEALTH.search(commands(s))), None)
            if gate is None or "--wait" not in commands(gate):
                problems.append(f"jobs.{job_name}.steps[{index}]: no `bankflow-infra health --wait` next")
                continue
            # The gate runs whenever the change ran: the same condition, and its failure counts.
            if gate.get("if", "") != candidate.get("if", "") or gate.get("continue-on-error"):
                problems.append(f"jobs.{job_name}: the gate after step {index} may be skipped or ignored")
            if "pulumi up" not in script:
                continue
            gate_id = gate.get("id")
            after_gate = later[later.index(gate) + 1 :]
            rollback = next((s for s in after_gate if "bankflow-infra rollback" in commands(s)), None)
            condition = str((rollback or {}).get("if", ""))
            on_gate_failure = "failure()" in condition and f"steps.{gate_id}.outcome" in condition
            if rollback is None or not on_gate_failure:
                problems.append(f"jobs.{job_name}: no rollback `if: failure()` of the health gate after `up`")
            elif "--yes" not in run_text(rollback):
                problems.append(f"jobs.{job_name}: the rollback must not wait for a prompt (--yes)")
    return problems


def run_block_lines(text: str) -> list[tuple[int, int]]:
    """(first line, line count) of every `run:` value as written in the file, folded or not."""
    found: list[tuple[int, int]] = []

    def visit(node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if (
                    isinstance(key, yaml.ScalarNode)
                    and key.value == "run"
                    and isinstance(value, yaml.ScalarNode)
                ):
                    end = value.end_mark.line + (1 if value.end_mark.column else 0)
                    found.append((value.start_mark.line + 1, max(1, end - value.start_mark.line)))
                visit(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                visit(item)

    root = yaml.compose(text)
    if root is not None:
        visit(root)
    return found


def long_run_blocks(text: str) -> list[str]:
    """No `run:` longer than MAX_RUN_LINES, counted in the file (a folded `>-` block included)."""
    problems = []
    for line, count in run_block_lines(text):
        if count > MAX_RUN_LINES:
            problems.append(f"line {line}: a run block of {count} lines (at most {MAX_RUN_LINES})")
    return problems


def workflow_calls(candidate: Step) -> list[list[str]]:
    """Each `bankflow-infra workflow ...` command line of a step, split as the shell would."""
    script = run_text(candidate).replace("\\\n", " ")
    calls = []
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        for index, word in enumerate(words[:-1]):
            if word.endswith("bankflow-infra") and words[index + 1] == "workflow":
                calls.append(words[index + 2 :])
    return calls


def all_problems(text: str) -> list[str]:
    workflow = load(text)
    return (
        unpinned_actions(text)
        + secret_leaks(workflow)
        + run_injections(workflow)
        + hygiene_problems(workflow)
        + write_job_problems(workflow)
        + environment_problems(workflow)
        + health_gate_problems(workflow)
        + long_run_blocks(text)
    )
