"""What this stack reads from other stacks (StackReference): the droplet addresses and the
origin-pull client certificate of ``edge.originStack``, and the backup repositories' keys of
``backups.bucketStack``. Each value is checked: a missing one is one error naming the stack and
the output, never a value (some are secret)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import pulumi

from bankflow_infra.components.backups import BackupBucket
from bankflow_infra.components.origin_pull import OriginPullClient
from bankflow_infra.settings import Settings


class OriginStackError(ValueError):
    """The stack named by bankflow:edge.originStack has no usable server address."""


def origin_address(value: object, version: int, stack: str) -> str:
    """The referenced stack's droplet address, or one clear error: DNS must never get "None"."""
    key = "origin_ip" if version == 4 else "origin_ipv6"
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError:
        address = None
    if value is None or address is None or address.version != version:
        raise OriginStackError(
            f"bankflow:edge.originStack: stack {stack!r} has no usable {key} output (got {value!r}); "
            f"is its server layer on and deployed (pulumi up -s {stack})?"
        )
    return str(address)


def origin_pull_part(value: Any, key: str, stack: str) -> str:
    """One part of another stack's `origin_pull_client` output; an error never shows a value."""
    if not isinstance(value, dict) or not isinstance(value.get(key), str) or "-----BEGIN" not in value[key]:
        raise OriginStackError(
            f"bankflow:edge.originStack: stack {stack!r} has no usable origin_pull_client.{key} output "
            f"(a PEM): has it been `pulumi up`-ed with the current program (pulumi up -s {stack})? "
            "Its nginx accepts only Cloudflare connections presenting that client certificate"
        )
    return str(value[key])


def stack_reference_name(stack: str) -> str:
    # Fully qualified so it works on Pulumi Cloud and on a self-managed (s3://) backend alike.
    return stack if "/" in stack else f"{pulumi.get_organization()}/{pulumi.get_project()}/{stack}"


class OriginStack:
    """The one StackReference to ``edge.originStack`` (a second one would be a duplicate URN)."""

    def __init__(self, stack: str) -> None:
        self.stack = stack
        self.reference = pulumi.StackReference(stack_reference_name(stack))

    def addresses(self) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """The referenced stack's front door: its load balancer when it has one (issue 13: its
        droplets admit 443 from the load balancer only), else its droplet."""
        stack, ref = self.stack, self.reference
        pairs = pulumi.Output.all(
            ref.get_output("load_balancer_ip"), ref.get_output("load_balancer_ipv6"),
            ref.get_output("origin_ip"), ref.get_output("origin_ipv6"),
        )  # fmt: skip
        return (
            pairs.apply(lambda v: origin_address(v[0] if v[0] is not None else v[2], 4, stack)),
            pairs.apply(lambda v: origin_address(v[1] if v[0] is not None else v[3], 6, stack)),
        )

    def origin_pull_client(self) -> OriginPullClient:
        stack, value = self.stack, self.reference.get_output("origin_pull_client")
        return OriginPullClient(
            certificate_pem=value.apply(lambda v: origin_pull_part(v, "certificate", stack)),
            private_key_pem=pulumi.Output.secret(
                value.apply(lambda v: origin_pull_part(v, "private_key", stack))
            ),
        )


@dataclass(frozen=True)
class RepositoryKeys:
    """The keys of the backup repositories in this server's bucket (None: no bucket to use)."""

    cipher_pass: pulumi.Input[str | None] = None
    uploads_password: pulumi.Input[str | None] = None


def repository_keys(settings: Settings, own: BackupBucket | None) -> RepositoryKeys:
    """This stack's own bucket's keys, or -- a rebuild stack writing to its environment's original
    bucket -- that stack's, through a StackReference: a new random key could not open backups
    made with the old one (pgBackRest and restic repositories have one key each)."""
    if own is not None:
        return RepositoryKeys(own.cipher_pass, own.uploads_password)
    if settings.backups.bucket_stack == settings.stack:
        return RepositoryKeys()
    reference = pulumi.StackReference(stack_reference_name(settings.backups.bucket_stack))
    source = settings.backups.bucket_stack
    repository = reference.get_output("backup_repository")
    return RepositoryKeys(
        repository.apply(lambda v: repository_key(v, "cipher_pass", source)),
        repository.apply(lambda v: repository_key(v, "uploads_password", source)),
    )


def repository_key(value: Any, key: str, source: str) -> str:
    """One key of another stack's `backup_repository` output; an error names the stack, never a value."""
    if not isinstance(value, dict) or not isinstance(value.get(key), str) or not value[key]:
        raise ValueError(
            f"stack {source!r} has no output backup_repository.{key}: has it been `pulumi up`-ed with "
            "the current program (its bucket generates the backup repositories' keys)?"
        )
    return str(value[key])
