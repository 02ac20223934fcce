"""doctor's output: the table a person reads and the ``--json`` document, with its schema."""

from __future__ import annotations

from typing import Any, Final

from bankflow_infra.ops.doctor import STATUSES, Report

JSON_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["stack", "ok", "counts", "checks", "manual", "notes"],
    "additionalProperties": False,
    "properties": {
        "stack": {"type": "string"},
        "ok": {"type": "boolean"},
        "counts": {
            "type": "object",
            "required": list(STATUSES),
            "additionalProperties": False,
            "properties": {s: {"type": "integer", "minimum": 0} for s in STATUSES},
        },
        "checks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "status", "detail", "fix", "commands"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "status": {"enum": list(STATUSES)},
                    "detail": {"type": "string"},
                    "fix": {"type": ["string", "null"]},
                    "commands": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "manual": {"type": "array", "items": {"type": "string"}},
        "notes": {"type": "array", "items": {"type": "string"}},
    },
}


def report_document(report: Report) -> dict[str, Any]:
    return {
        "stack": report.stack,
        "ok": report.ok,
        "counts": {s: sum(1 for c in report.checks if c.status == s) for s in STATUSES},
        "checks": [
            {
                "name": c.name,
                "status": c.status,
                "detail": c.detail,
                "fix": c.fix,
                "commands": list(c.commands),
            }
            for c in report.checks
        ],
        "manual": list(report.manual),
        "notes": list(report.notes),
    }


def format_table(report: Report) -> str:
    width = max([len(c.name) for c in report.checks] + [5])
    lines = [f"doctor {report.stack}", f"{'STATUS':<6}  {'CHECK':<{width}}  DETAIL"]
    for check in report.checks:
        lines.append(f"{check.status:<6}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status != "ok":
            lines.append(f"{'':<6}  {'':<{width}}  fix: {check.fix}")
        lines.extend(f"{'':<6}  {'':<{width}}  run: {command}" for command in check.commands)
    counts = report_document(report)["counts"]
    lines.append(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    if report.manual:
        lines.append("manual checks (no API tells; do them before the first `up`):")
        lines.extend(f"  - {item}" for item in report.manual)
    return "\n".join(lines) + "\n"
