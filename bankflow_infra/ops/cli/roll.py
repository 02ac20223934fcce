"""``bankflow-infra roll --stdin``: the rolling deploy that ``pulumi up`` runs (issue 13).

    bankflow-infra roll --stdin    the roll request (contract/roll.py) on stdin

The program's ``roll`` local.Command runs it once every droplet has received the release: one
droplet at a time, drain at the load balancer, switch behind the host agent's health gate,
undrain, wait until back in rotation (engine: ops/roll.py; transport: ops/roll_ssh.py). A bad
request is refused before any droplet is contacted; the deploy key is never printed.

Exit codes: 0 every droplet serves the release; 1 the roll failed (the droplets that had switched
were put back: the message says which, and what could not be); 2 a bad request (nothing changed).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.roll import RollRequestError, parse_roll_request
from bankflow_infra.ops.cli import session
from bankflow_infra.ops.roll import RollTimings, roll, roll_step, summary
from bankflow_infra.ops.roll_ssh import SshRollTransport

MAX_REQUEST_BYTES = 1024 * 1024


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "roll",
        help="the rolling deploy across the droplets (run by `pulumi up`; request on stdin)",
        description="Switch every droplet of the request to its release, one at a time behind the "
        "load balancer; a failure puts the switched droplets back and exits 1.",
    )
    parser.add_argument(
        "--stdin", action="store_true", required=True, help="read the roll request from stdin"
    )
    defaults = RollTimings()
    parser.add_argument(
        "--drain-wait", type=session.seconds, default=defaults.drain_wait, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--rejoin-wait", type=session.seconds, default=defaults.rejoin_wait, help=argparse.SUPPRESS
    )
    parser.set_defaults(handler=run_roll)


def run_roll(args: argparse.Namespace) -> int:
    raw = sys.stdin.buffer.read(MAX_REQUEST_BYTES + 1)
    try:
        if len(raw) > MAX_REQUEST_BYTES:
            raise RollRequestError(f"roll request: larger than {MAX_REQUEST_BYTES} bytes")
        request = parse_roll_request(raw.decode("utf-8", "replace"))
    except RollRequestError as refused:
        session.error("roll", f"{refused}; nothing changed")
        return exit_codes.USAGE
    transport = SshRollTransport(request.stack, request.private_key, note=session.note)
    timings = RollTimings(drain_wait=args.drain_wait, rejoin_wait=args.rejoin_wait)

    def say(text: str) -> None:
        print(f"{session.PROGRAM} roll: {text}", file=sys.stderr, flush=True)

    say(f"stack {request.stack}: release {request.release} on {len(request.targets)} droplets")

    def run() -> int:
        result = roll(request.targets, roll_step(request.release), transport, timings=timings, say=say)
        say(summary(result))
        return exit_codes.OK if result.ok else exit_codes.FAILED

    return session.guarded("roll", run)
