"""The rolling deploy's request (issue 13): what the Pulumi program hands the roll on stdin.

With ``server.count`` > 1, each droplet first receives the release bundle over its own remote
command (no switch); then one ``local.Command`` on the machine running ``pulumi up`` runs
:data:`ROLL_COMMAND`, which switches the droplets one at a time behind the load balancer and
returns the switched ones to their previous release when one fails. The request travels on that
command's stdin (a secret input: it holds the deploy key), never in its text.

Stdlib only: the program (``components/``) writes it, the ops CLI (``ops/``) reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from .grammar import is_stack_name
from .release import is_release_id

# Run in the project directory (local.Command's default `dir`): the venv `./scripts/setup` made.
ROLL_COMMAND: Final = "venv/bin/bankflow-infra roll --stdin"
ROLL_REQUEST_SCHEMA: Final = 1


class RollRequestError(ValueError):
    """A roll request that cannot be used; the message names the field (never a secret value)."""


@dataclass(frozen=True)
class RollTarget:
    """One droplet, in roll order."""

    name: str  # bankflow-<stack>-server[-N]
    host: str  # its public IPv4 (SSH)
    port: int
    user: str
    host_public_key: str  # pinned


@dataclass(frozen=True)
class RollRequest:
    stack: str
    release: str  # the release id every droplet received
    targets: tuple[RollTarget, ...]
    private_key: str = field(repr=False)  # the deploy key (OpenSSH format)


def render_roll_request(request: RollRequest) -> str:
    return json.dumps(
        {
            "schema": ROLL_REQUEST_SCHEMA,
            "stack": request.stack,
            "release": request.release,
            "targets": [vars(target) for target in request.targets],
            "private_key": request.private_key,
        },
        sort_keys=True,
    )


def _target(index: int, raw: Any) -> RollTarget:
    keys = ("name", "host", "port", "user", "host_public_key")
    if not isinstance(raw, dict) or set(raw) != set(keys):
        raise RollRequestError(
            f"roll request: targets[{index}] must be an object with exactly {', '.join(keys)}"
        )
    port = raw["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise RollRequestError(f"roll request: targets[{index}].port is not a port number")
    for key in ("name", "host", "user", "host_public_key"):
        if not isinstance(raw[key], str) or not raw[key]:
            raise RollRequestError(f"roll request: targets[{index}].{key} must be a non-empty string")
    return RollTarget(raw["name"], raw["host"], port, raw["user"], raw["host_public_key"])


def parse_roll_request(text: str) -> RollRequest:
    """The request on stdin, or one RollRequestError naming what is wrong (never a key's value)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise RollRequestError(f"roll request: not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(raw, dict) or raw.get("schema") != ROLL_REQUEST_SCHEMA:
        raise RollRequestError(f"roll request: expected an object with schema {ROLL_REQUEST_SCHEMA}")
    stack, release, key = raw.get("stack"), raw.get("release"), raw.get("private_key")
    if not isinstance(stack, str) or not is_stack_name(stack):
        raise RollRequestError("roll request: stack must be a stack name")
    if not isinstance(release, str) or not is_release_id(release):
        raise RollRequestError("roll request: release must be a 12-hex-digit release id")
    if not isinstance(key, str) or "PRIVATE KEY-----" not in key:
        raise RollRequestError("roll request: private_key must be an OpenSSH private key")
    targets_raw = raw.get("targets")
    if not isinstance(targets_raw, list) or not targets_raw:
        raise RollRequestError("roll request: targets must be a non-empty list of droplets")
    targets = tuple(_target(index, item) for index, item in enumerate(targets_raw))
    if len({t.host for t in targets}) != len(targets):
        raise RollRequestError("roll request: a droplet is listed twice")
    return RollRequest(stack, release, targets, key)
