"""`bankflow-agent history` as a process, over an audit log written as the agent writes it
(``state.audit``), plus lines a newer writer may add (unknown keys, start/end phases)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bankflow_infra.host import state

AGENT = [sys.executable, "-m", "bankflow_infra.host.agent"]


def history(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, "--home", str(home), "history", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def write(home: Path, *lines: dict[str, Any] | str) -> None:
    log = home / "state" / "audit.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else json.dumps(line)) + "\n")


def line(time: str, action: str, result: str, **extra: Any) -> dict[str, Any]:
    return {"time": time, "actor": "ci", "action": action, "release": "aaaaaaaaaaaa", "result": result,
            "message": f"{action} {result}", **extra}


def test_entries_newest_first_as_the_agent_writes_them(tmp_path: Path) -> None:
    log = tmp_path / "state" / "audit.log"
    log.parent.mkdir(parents=True)
    state.audit(log, "alice", "deploy", "aaaaaaaaaaaa", "ok", "deploy aaaaaaaaaaaa: done")
    state.audit(log, "bob", "rollback", "bbbbbbbbbbbb", "failed", "rollback bbbbbbbbbbbb: step failed")
    done = history(tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    entries = json.loads(done.stdout)["entries"]
    assert [(e["actor"], e["action"], e["release"], e["result"]) for e in entries] == [
        ("bob", "rollback", "bbbbbbbbbbbb", "failed"), ("alice", "deploy", "aaaaaaaaaaaa", "ok")]
    text = history(tmp_path).stdout.splitlines()
    assert text[0].split("  ")[1:5] == ["bob", "rollback", "bbbbbbbbbbbb", "failed"]


def test_unknown_keys_are_ignored_and_a_torn_line_is_counted(tmp_path: Path) -> None:
    torn = '{"time": "2026-'
    write(tmp_path, line("2026-01-01T00:00:00Z", "deploy", "ok", host="droplet-1", duration_s=12), torn)
    document = json.loads(history(tmp_path, "--json").stdout)
    assert document["skipped"] == 1
    [entry] = document["entries"]
    assert "host" not in entry
    assert entry["result"] == "ok"


def test_start_and_end_of_one_attempt_are_one_entry_and_a_lone_start_is_unfinished(tmp_path: Path) -> None:
    write(tmp_path,
          line("2026-01-01T10:00:00Z", "deploy", "started", phase="start", attempt="a1"),
          line("2026-01-01T10:02:00Z", "deploy", "ok", phase="end", attempt="a1"),
          line("2026-01-02T09:00:00Z", "deploy", "started", phase="start", attempt="a2"))
    entries = json.loads(history(tmp_path, "--json").stdout)["entries"]
    assert [(e["attempt"], e["time"], e["ended"], e["result"]) for e in entries] == [
        ("a2", "2026-01-02T09:00:00Z", None, "unfinished"),
        ("a1", "2026-01-01T10:00:00Z", "2026-01-01T10:02:00Z", "ok"),
    ]
    assert "unfinished" in history(tmp_path).stdout.splitlines()[0]


def test_last_bounds_the_answer(tmp_path: Path) -> None:
    write(tmp_path, *(line(f"2026-01-0{day}T00:00:00Z", "deploy", "ok") for day in range(1, 8)))
    entries = json.loads(history(tmp_path, "--json", "--last", "3").stdout)["entries"]
    assert [e["time"][:10] for e in entries] == ["2026-01-07", "2026-01-06", "2026-01-05"]
    refused = history(tmp_path, "--last", "0")
    assert refused.returncode == 2
    assert "is not a whole number in 1..1000" in refused.stderr


def test_no_log_yet(tmp_path: Path) -> None:
    done = history(tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == "no actions recorded yet"
