"""A stand-in for the `docker` CLI: Docker has no engine on this machine (stdlib only).

The over-SSH tests put a ``docker`` wrapper running this script first on the SSH session's
PATH, so the REAL host agent -- with its real DockerRuntime -- drives it exactly as it drives
Docker on the droplet. It understands the commands DockerRuntime builds and nothing else:

- ``compose -p P -f FILE... [--env-file F] config|pull|up|run|ps|down|logs ...``: every ``-f``
  and ``--env-file`` must exist (what ``docker compose`` checks first), then success; ``logs``
  prints ``--tail`` lines (at most 3) per service; ``ps`` prints ``[]``.
- ``exec bankflow-nginx-1 nginx -t|-s reload``, ``image rm ...``, ``login ... --password-stdin``.
- ``compose ... exec -T postgres psql ...`` (the agent's database roles step): a query given with
  ``-c`` finds no role (prints nothing); a script on stdin is read and "committed" (prints ``0``,
  the objects handed over). The stdin is never written to the journal.

Every call is appended to ``$BANKFLOW_DOCKER_STANDIN_JOURNAL`` (one JSON argv per line; the
login password is never written, only its length). ``$BANKFLOW_DOCKER_STANDIN_FAIL`` names
compose subcommands to fail (comma-separated), to exercise a failing step.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

JOURNAL_ENV = "BANKFLOW_DOCKER_STANDIN_JOURNAL"
FAIL_ENV = "BANKFLOW_DOCKER_STANDIN_FAIL"
COMPOSE_SUBCOMMANDS = ("config", "pull", "up", "run", "ps", "down", "logs", "exec")


def journal(entry: dict[str, object]) -> None:
    path = os.environ.get(JOURNAL_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def compose(args: list[str]) -> int:
    files: list[str] = []
    rest = list(args)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        if option in ("-p", "-f", "--env-file") and rest:
            value = rest.pop(0)
            if option != "-p":
                files.append(value)
        else:
            print(f"docker-standin: unknown compose option {option}", file=sys.stderr)
            return 1
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        print(f"docker-standin: no such file: {', '.join(missing)}", file=sys.stderr)
        return 1
    if not rest or rest[0] not in COMPOSE_SUBCOMMANDS:
        print(f"docker-standin: unsupported compose command {rest[:1]}", file=sys.stderr)
        return 1
    sub, options = rest[0], rest[1:]
    if sub in os.environ.get(FAIL_ENV, "").split(","):
        print(f"docker-standin: compose {sub} failed (told to)", file=sys.stderr)
        return 1
    if sub == "exec":
        return psql_exec(options)
    if sub == "ps":
        print("[]")
    if sub == "logs":
        tail = int(options[options.index("--tail") + 1]) if "--tail" in options else 3
        services = [o for o in options if not o.startswith("-") and not o.isdigit()] or ["(all)"]
        for service in services:
            for line in range(min(tail, 3)):
                print(f"{service} | standin log line {line + 1}")
    return 0


def psql_exec(options: list[str]) -> int:
    """``exec -T postgres psql ...``: the only exec in a compose project the agent runs here."""
    if options[:3] != ["-T", "postgres", "psql"]:
        print(f"docker-standin: unsupported compose exec {options[:3]}", file=sys.stderr)
        return 1
    if "-c" not in options:
        sys.stdin.buffer.read()
        print("0")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["login"]:
        password = sys.stdin.buffer.read()
        journal({"argv": ["docker", *argv], "password_len": len(password.strip())})
        return 0
    journal({"argv": ["docker", *argv]})
    if argv[:1] == ["compose"]:
        return compose(argv[1:])
    if argv[:1] == ["exec"] and argv[2:3] == ["nginx"]:
        return 0
    if argv[:2] == ["image", "rm"]:
        return 0
    print(f"docker-standin: unsupported command {argv[:2]}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
