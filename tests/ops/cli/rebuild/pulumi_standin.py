"""A recording stand-in for the pulumi CLI: pulumi cannot run here (no CLI, no cloud, no backend).

The test rig installs this program first on PATH under the name ``pulumi``. Each call appends its
argv (``["pulumi", ...]``) as one JSON line to ``$PULUMI_STANDIN_LOG`` and answers the read-only
queries the rebuild commands make from the JSON fixture ``$PULUMI_STANDIN_FIXTURE``::

    {"stacks": ["production", ...],                        # pulumi stack ls --json
     "config": {"STACK": {"bankflow:server": {...}, ...}},  # pulumi config [get] --json -s STACK
     "outputs": {"STACK": {...}}}                          # pulumi stack output --json -s STACK

Every other call (stack init, config set/rm, up) only records and succeeds. Failures on demand:
``$PULUMI_STANDIN_FAIL_AT=N`` fails the Nth call (1-based, counted from the log), and
``$PULUMI_STANDIN_FAIL_ON="up -s production-r1"`` fails every call whose arguments, joined by
spaces, start with that text. A failure prints an error and exits 255, as pulumi does.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def _stack(args: list[str]) -> str:
    return args[args.index("-s") + 1] if "-s" in args else ""


def _config_entry(value: Any) -> dict[str, Any]:
    if isinstance(value, (dict, list)):
        return {"value": json.dumps(value), "objectValue": value, "secret": False}
    return {"value": value if isinstance(value, str) else json.dumps(value), "secret": False}


def answer(args: list[str], fixture: dict[str, Any]) -> tuple[int, str, str]:
    words = [a for a in args if not a.startswith("-")]
    stack = _stack(args)
    if words[:2] == ["stack", "ls"]:
        return 0, json.dumps([{"name": s, "current": False} for s in fixture.get("stacks", [])]), ""
    if words[:2] == ["stack", "output"]:
        outputs = fixture.get("outputs", {})
        if stack not in outputs:
            return 255, "", f"error: no stack named '{stack}' found\n"
        return 0, json.dumps(outputs[stack]), ""
    if words[:1] == ["config"] and len(words) <= 3 and "--json" in args:
        config = fixture.get("config", {}).get(stack, {})
        if words[1:2] == ["get"]:
            key = args[-1]
            if key not in config:
                return 255, "", f"error: configuration key '{key}' not found for stack '{stack}'\n"
            return 0, json.dumps(_config_entry(config[key])), ""
        return 0, json.dumps({k: _config_entry(v) for k, v in config.items()}), ""
    return 0, f"pulumi stand-in: recorded {' '.join(args)}\n", ""


def main() -> int:
    args = sys.argv[1:]
    log = Path(os.environ["PULUMI_STANDIN_LOG"])
    with log.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(["pulumi", *args]) + "\n")
    call_number = len(log.read_text(encoding="utf-8").splitlines())
    fail_at = os.environ.get("PULUMI_STANDIN_FAIL_AT")
    fail_on = os.environ.get("PULUMI_STANDIN_FAIL_ON")
    if (fail_at and int(fail_at) == call_number) or (fail_on and " ".join(args).startswith(fail_on)):
        sys.stderr.write(f"error: pulumi stand-in: injected failure of `pulumi {' '.join(args)}`\n")
        return 255
    fixture = json.loads(Path(os.environ["PULUMI_STANDIN_FIXTURE"]).read_text(encoding="utf-8"))
    code, out, err = answer(args, fixture)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
