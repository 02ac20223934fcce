"""What each notification says, decided from step outcomes and saved files (pure functions).

- a deploy (deploy-stack.yml): started; then succeeded, rolled back or failed from the outcomes
  of its `up`, health gate and rollback steps;
- a rebuild (emergency.yml and `bankflow-infra rebuild`): succeeded or failed, naming the step;
- a restore (`bankflow-infra restore`): succeeded or failed;
- the daily drift check (drift.yml): drift from the `pulumi preview --refresh
  --expect-no-changes` outcome and log, plus the certificate and backup findings of
  `health --backups --json`; the same facts become the drift record (ops/status_drift.py).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bankflow_infra.ops.notify import Notice, Severity
from bankflow_infra.ops.status_drift import DriftRecord

OUTCOMES: Final = ("success", "failure", "cancelled", "skipped", "")
# What `pulumi preview --expect-no-changes` says when the refreshed state differs (pkg/cmd/pulumi
# preview.go; newer versions name the operation: "no changes were expected for preview but ...").
NO_CHANGES_EXPECTED: Final = re.compile(r"no changes were expected(?: for \S+)? but changes were proposed")
DIFF_LINES: Final = 80


@dataclass(frozen=True)
class RunContext:
    actor: str
    link: str | None  # the workflow run's URL, when run by GitHub Actions
    commit: str | None

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> RunContext:
        env = os.environ if env is None else env
        server, repo = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY")
        run = env.get("GITHUB_RUN_ID")
        link = f"{server}/{repo}/actions/runs/{run}" if server and repo and run else None
        actor = env.get("GITHUB_ACTOR") or env.get("BANKFLOW_ACTOR") or env.get("USER") or "unknown"
        return RunContext(actor, link, (env.get("GITHUB_SHA") or "")[:12] or None)

    def lines(self) -> tuple[str, ...]:
        return (f"by {self.actor}",) + ((f"commit {self.commit}",) if self.commit else ())


def shown(outcome: str) -> str:
    return outcome or "not run"


def deploy_started(stack: str, run: RunContext) -> Notice:
    return Notice("deploy started", stack, "info", run.lines(), link=run.link)


def deploy_finished(stack: str, up: str, health: str, rollback: str, run: RunContext) -> Notice:
    """succeeded (up and gate passed), rolled back (gate failed, rollback done), else failed."""
    steps = (f"up: {shown(up)}", f"health gate: {shown(health)}", f"rollback: {shown(rollback)}")
    if up == "success" and health == "success":
        return Notice("deploy succeeded", stack, "good", (*steps[:2], *run.lines()), link=run.link)
    if health == "failure" and rollback == "success":
        return Notice("deploy rolled back", stack, "warning",
                      (*steps, "the release that served before serves again", *run.lines()), link=run.link)
    return Notice("deploy FAILED", stack, "danger", (*steps, *run.lines()), link=run.link)


def rebuild_finished(stack: str, new_stack: str, outcomes: Mapping[str, str], run: RunContext) -> Notice:
    """``outcomes``: step name -> outcome, in order (rebuild, health of the new server, cutover...)."""
    steps = tuple(f"{name}: {shown(outcome)}" for name, outcome in outcomes.items())
    failed = [name for name, outcome in outcomes.items() if outcome in ("failure", "cancelled")]
    facts = (f"new stack: {new_stack}", *steps, *run.lines())
    if failed or outcomes.get("rebuild") != "success":
        return Notice(f"rebuild FAILED ({', '.join(failed) or 'rebuild not run'})", stack, "danger", facts,
                      link=run.link)
    return Notice("rebuild succeeded", stack, "good", facts, link=run.link)


def restore_finished(stack: str, key: str, code: int, run: RunContext) -> Notice:
    if code == 0:
        return Notice("restore succeeded", stack, "good", (f"dump: {key}", *run.lines()), link=run.link)
    return Notice("restore FAILED", stack, "danger", (f"dump: {key}", f"exit code {code}", *run.lines()),
                  link=run.link)


# --------------------------------------------------------------------------- drift


def drifted(preview: str, log: str) -> bool | None:
    """True: the preview proposed changes; False: it passed; None: it failed for another reason."""
    if preview == "success":
        return False
    if NO_CHANGES_EXPECTED.search(log):
        return True
    return None


def health_findings(document: Any) -> list[str]:
    """The certificate, backup and health problems in a `health --backups --json` document."""
    if not isinstance(document, dict):
        return ["health check: no result (the step did not run or printed no JSON)"]
    found = []
    unhealthy = [p.get("service") for p in document.get("probes") or [] if not p.get("healthy")]
    if unhealthy:
        found.append(f"unhealthy: {', '.join(str(s) for s in unhealthy)}")
    if document.get("certificate_warning"):
        found.append(str(document["certificate_warning"]).removeprefix("WARNING: "))
    backup = document.get("backup")
    if isinstance(backup, dict) and (backup.get("stale") or backup.get("error")):
        age = backup.get("age_hours")
        found.append(f"backup: {backup.get('error') or f'the newest is {age} h old'}")
    return found


def parse_health_json(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


def diff_excerpt(log: str) -> str:
    """The preview's resource lines (the diff), at most DIFF_LINES of them."""
    lines = [line.rstrip() for line in log.splitlines() if line.strip()]
    return "\n".join(lines[-DIFF_LINES:])


def drift_record(
    stack: str, preview: str, log: str, health: Any, now: datetime, run: RunContext
) -> DriftRecord:
    state = drifted(preview, log)
    problems = []
    if state:
        problems.append("drift: the refreshed state differs from the program (diff in the run summary)")
    elif state is None:
        problems.append(f"drift: the preview could not run ({shown(preview)}): drift unknown")
    problems += health_findings(health)
    return DriftRecord(stack, now, state, shown(preview), run.link, tuple(problems))


def drift_notice(record: DriftRecord, log: str, run: RunContext) -> Notice:
    if not record.problems:
        return Notice("daily check: no drift, certificate and backups fine", record.stack, "good",
                      run.lines(), link=run.link)
    severity: Severity = "danger" if record.drifted or record.drifted is None else "warning"
    detail = diff_excerpt(log) if record.drifted is not False else ""
    event = "DRIFT detected" if record.drifted else "daily check needs attention"
    return Notice(event, record.stack, severity, (*record.problems, *run.lines()), detail, run.link)
