"""The rolling deploy of a load balanced stack (``server.count`` > 1; issue 13).

Every droplet's ``RemoteDeploy`` stages the release; then ONE ``command:local:Command`` named
``roll``, depending on every stage, runs ``contract.roll.ROLL_COMMAND`` on the machine running
``pulumi up`` with the roll request on stdin. ``bankflow-infra roll --stdin`` switches the
droplets one at a time behind the load balancer and returns the already switched ones to their
previous release when one fails; it exits non-zero then, which fails ``pulumi up``.

Why a local command and not a chain of remote ones: a chain cannot return the droplets that
already switched when a later one fails.

pulumi-command facts relied on (the installed SDK, pulumi_command/local/command.py, and
FIELD-NOTES): the command runs on create and when a non-trigger input changes, never on a no-op
``up``; any change of ``triggers`` replaces it (create runs again); ``dir`` defaults to the
project directory (ROLL_COMMAND's relative ``venv/bin``); ``stdin`` is an input, so a secret
stdin stays encrypted in the state; a failed command's output goes into the error message
whatever ``logging`` says, which is why the roll never prints the key (ops/roll.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pulumi
import pulumi_command.local as local

from bankflow_infra.catalog import SSH_PORT, SSH_USER
from bankflow_infra.components.server import Machine
from bankflow_infra.contract.release import release_id
from bankflow_infra.contract.roll import ROLL_COMMAND, RollRequest, RollTarget, render_roll_request

RESOURCE_NAME: Final = "roll"


def roll_request_text(
    stack: str, digest: str, targets: Sequence[tuple[str, str, str]], private_key: str
) -> str:
    """The request on the roll's stdin; ``digest``: the bundle's sha256 (the request names its
    release id); ``targets``: (name, ipv4, host public key) in roll order."""
    return render_roll_request(
        RollRequest(
            stack=stack,
            release=release_id(digest),
            targets=tuple(RollTarget(name, host, SSH_PORT, SSH_USER, key) for name, host, key in targets),
            private_key=private_key,
        )
    )


def roll_command(
    stack: str,
    release: pulumi.Output[str],  # the bundle digest every stage received
    machines: Sequence[Machine],
    private_key: pulumi.Output[str],
    stages: Sequence[pulumi.Resource],
) -> local.Command:
    """The one roll across ``machines`` (roll order), after every stage in ``stages``."""
    targets = pulumi.Output.all(
        *[pulumi.Output.all(m.name, m.ipv4, m.host_public_key) for m in machines]
    ).apply(lambda rows: [(row[0], row[1], row[2]) for row in rows])
    request: pulumi.Output[str] = pulumi.Output.all(release, targets, private_key).apply(
        lambda v: roll_request_text(stack, v[0], v[1], v[2])
    )
    secret_request: pulumi.Output[str] = pulumi.Output.secret(request)
    return local.Command(
        RESOURCE_NAME,
        create=ROLL_COMMAND,  # a fixed text: nothing secret, nothing computed
        # The request holds the deploy key: a secret input, encrypted in the state.
        stdin=secret_request,
        # A new release rolls; so does a replaced droplet (a new id), which staged the release
        # but serves nothing until the roll switches it.
        triggers=[release, *[m.droplet.id for m in machines]],
        add_previous_output_in_env=False,
        opts=pulumi.ResourceOptions(depends_on=list(stages)),
    )
