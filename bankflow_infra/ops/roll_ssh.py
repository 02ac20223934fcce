"""The roll's transport in production: each droplet's host agent over SSH (``ops/ssh.py``).

One SSH connection per agent command, with that droplet's pinned host key (the roll request's
``host_public_key``, from the ``origin_ips`` output) and the deploy key from the request, written
to a 0600 file in a private temp dir by :func:`ops.ssh.ssh_session` and removed after each call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bankflow_infra.contract.outputs import SshEndpoint, StackOutputs
from bankflow_infra.contract.roll import RollTarget
from bankflow_infra.ops.roll import AgentAnswer, TargetUnreachable
from bankflow_infra.ops.ssh import RemoteError, ssh_session


def fleet_targets(outputs: StackOutputs) -> tuple[RollTarget, ...]:
    """The stack's app droplets in roll order (``origin_ips``), each with its pinned host key;
    the SSH port and user are the stack's (``ssh``)."""
    if outputs.ssh is None:
        return ()
    port, user = outputs.ssh.port, outputs.ssh.user
    return tuple(RollTarget(d.name, d.ipv4, port, user, d.host_public_key) for d in outputs.origin_ips)


def target_outputs(stack: str, target: RollTarget, private_key: str) -> StackOutputs:
    """What the SSH session reads of a stack's outputs, for one droplet of the roll: its
    address, its pinned host key and the deploy key (nothing else is used by ops/ssh)."""
    return StackOutputs(
        stack=stack,
        environment="production",  # not read by the SSH session; the roll request names no environment
        origin_ip=target.host,
        origin_ipv6=None,
        ssh=SshEndpoint(target.host, target.port, target.user, target.host_public_key),
        deploy_private_key=private_key,
        urls={},
        health=(),
        release=None,
        origin_stack=stack,
        backup_bucket=None,
        origin_certificate=None,
        origin_cert_expires_on=None,
    )


@dataclass
class SshRollTransport:
    stack: str
    private_key: str = field(repr=False)
    ssh: str | None = None
    extra_options: Sequence[str] = ()
    note: Callable[[str], None] = lambda _text: None

    def agent(self, target: RollTarget, args: Sequence[str]) -> AgentAnswer:
        outputs = target_outputs(self.stack, target, self.private_key)
        try:
            with ssh_session(outputs, ssh=self.ssh, extra_options=self.extra_options, note=self.note) as ssh:
                done = ssh.run_agent(list(args), capture=True)
        except RemoteError as exc:
            raise TargetUnreachable(str(exc)) from None
        return AgentAnswer(
            done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
        )
