"""The ``status --json`` document's schema (schema 1), as README "status" documents it."""

from __future__ import annotations

from typing import Any

NULLABLE_STRING = {"type": ["string", "null"]}
ERROR = NULLABLE_STRING

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "stack", "environment", "generated_at", "server", "releases", "deploys",
                 "health", "backup", "archive", "certificate", "drift", "problems"],
    "properties": {
        "schema": {"const": 1},
        "stack": {"type": "string"},
        "environment": {"enum": ["staging", "production"]},
        "generated_at": {"type": "string", "pattern": r"Z$"},
        "server": {"type": "object", "required": ["own", "origin_stack", "origin_ip", "enabled", "size",
                                                  "region", "error"],
                   "properties": {"own": {"type": "boolean"}, "size": NULLABLE_STRING,
                                  "region": NULLABLE_STRING, "error": ERROR}},
        "releases": {"type": "object", "required": ["serving", "kept", "error"],
                     "properties": {"serving": NULLABLE_STRING, "error": ERROR, "kept": {
                         "type": "array", "items": {"type": "object",
                                                    "required": ["release", "current", "previous"]}}}},
        "deploys": {"type": "object", "required": ["entries", "error"],
                    "properties": {"error": ERROR, "entries": {"type": "array", "items": {
                        "type": "object",
                        "required": ["time", "actor", "action", "release", "result", "message"]}}}},
        "health": {"type": "object", "required": ["healthy", "probes"],
                   "properties": {"healthy": {"type": ["boolean", "null"]}, "probes": {"type": "array"}}},
        "backup": {"type": "object", "required": ["newest", "age_hours", "stale", "error"],
                   "properties": {"newest": NULLABLE_STRING, "age_hours": {"type": ["number", "null"]},
                                  "stale": {"type": ["boolean", "null"]}, "error": ERROR}},
        "archive": {"type": "object", "required": ["state", "lag_seconds"]},
        "certificate": {"type": "object", "required": ["expires_on", "days_left", "warning"],
                        "properties": {"days_left": {"type": ["integer", "null"]}}},
        "drift": {"type": "object", "required": ["state", "checked_at", "run_url", "problems", "error"],
                  "properties": {"state": {"enum": ["clean", "drifted", "unknown", "error"]}}},
        "problems": {"type": "array", "items": {"type": "string"}},
    },
}
