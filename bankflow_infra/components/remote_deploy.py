"""Remote bootstrap and release deploys on the droplet, over SSH with the pinned host key.

Three remote commands, in order, each re-run only when its own payload digest changes (a no-op
`pulumi up` runs nothing remote) and all of them again on a replacement droplet:

1. ``wait-cloud-init``: the droplet finished first boot (the pinned host key is installed).
2. ``bootstrap``: the idempotent host setup script plus host files and the host agent.
3. ``deploy``: the release bundle (secrets included) on stdin; the host agent switches to it
   behind its health gate and exits non-zero -- failing ``pulumi up`` -- when it rolls back.

Behind a load balancer (``server.count`` > 1) each droplet has its own ``RemoteDeploy`` (droplet
1 keeps the name ``host`` and its URNs, then ``host-2`` ...), and step 3 only stages the release
(``receive --stdin`` without ``--deploy``): the switch is the roll's (``components/rolling.py``).

With a data volume, two more: ``grow-data-filesystem`` (resize2fs when the volume grows) and
``release-data-volume``, a step whose only command is its ``delete``: it stops PostgreSQL and
unmounts the volume, and Pulumi deletes it before the VolumeAttachment (it depends on it).

Nothing secret is ever in command text: payloads travel on stdin, the deploy's output is a
secret, and it logs nothing. pulumi-command puts a failed command's text and its combined
stdout/stderr into the error message whatever ``logging`` says
(provider/pkg/provider/remote/commandOutputs.go: ``"%w: running %q:\n%s"``), so the deploy
command sends the agent's output to a root-only file on the droplet and prints only a fixed line.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_command.remote as remote

from bankflow_infra.catalog import SSH_PORT, SSH_USER
from bankflow_infra.components.backups import DATA_VOLUME_LABEL
from bankflow_infra.components.credentials import Credentials
from bankflow_infra.components.database_owner import database_owner_step
from bankflow_infra.components.managed_data import ManagedPostgres
from bankflow_infra.components.server import Machine, Server
from bankflow_infra.contract.layout import AGENT_BIN, DATA_VOLUME_MOUNT, STATE_DIR, bootstrap_environment
from bankflow_infra.render import Bundle
from bankflow_infra.render.host_files import FILES_DIR
from bankflow_infra.render.payloads import digest_of
from bankflow_infra.render.remote_payloads import (
    GROW_DATA_FILESYSTEM_SCRIPT,
    RELEASE_DATA_VOLUME_SCRIPT,
    bootstrap_payload,
    deploy_payload,
)

# The component's type token and resource name predate this module's name (it was the "Host"
# component): they are the resources' URNs in every stack's state, so they stay as they are.
COMPONENT_TYPE: Final = "bankflow:index:Host"
RESOURCE_NAME: Final = "host"
# A fresh droplet refuses SSH for a while; the default limit gives up after ~10 s.
DIAL_ERROR_LIMIT: Final = 120
PER_DIAL_TIMEOUT_SECONDS: Final = 10
# The release step connects to a droplet that has been up for a while: a dead one must not hold
# a replacement or a retire for 20 minutes (see docs/RUNBOOK-emergency.md for a dead droplet).
RELEASE_DIAL_ERROR_LIMIT: Final = 6
# Where the deploy command keeps the agent's output on the droplet (root only, 0600): never in
# pulumi-command's error message, which would print it on the runner.
DEPLOY_OUTPUT_LOG: Final = f"{STATE_DIR}/pulumi-deploy.log"


@dataclass(frozen=True)
class RemoteDeployArgs:
    stack: str  # the deploy's actor: pulumi:<stack>
    swap_gb: int
    data_volume: bool  # the bootstrap mounts the data volume before PostgreSQL starts
    admin_ssh_keys: tuple[str, ...]  # root's authorized_keys, with the generated deploy key
    volume_size_gb: int = 0  # the data volume's size: a larger one re-runs grow-data-filesystem
    # Start the backup unit after each deploy. Not for a stack writing into another stack's
    # bucket (a rebuild): its fresh cluster is not the one the shared pgBackRest stanza belongs to
    # until `restore --source-stack` brings that one back, and the backup would hold the lock the
    # restore needs (rebuild step 8).
    backup_after_deploy: bool = True
    # Behind a load balancer: receive the release without switching (the roll switches).
    stage_only: bool = False


# cloud-init exits 2 when it finished "degraded" (a non-fatal module warning): still done.
WAIT_CLOUD_INIT_COMMAND: Final = (
    "rc=0; cloud-init status --wait >/dev/null || rc=$?; "
    'if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then echo "cloud-init failed ($rc)" >&2; exit "$rc"; fi'
)


UPLOADS_NFS_SOURCE_VARIABLE: Final = "BANKFLOW_UPLOADS_NFS_SOURCE"


def bootstrap_variables(args: RemoteDeployArgs, uploads_nfs_source: str | None = None) -> dict[str, str]:
    """The host setup's environment: the host layout (the script has no default for it), swap,
    with a data volume its label and mount point (mounted before PostgreSQL starts), and with
    shared uploads the NFS share (``<host>:<path>``, no secret) mounted at the uploads path."""
    variables = {**bootstrap_environment(), "BANKFLOW_SWAP_GB": str(args.swap_gb)}
    if args.data_volume:
        variables["BANKFLOW_DATA_VOLUME_LABEL"] = DATA_VOLUME_LABEL
        variables["BANKFLOW_DATA_VOLUME_MOUNT"] = DATA_VOLUME_MOUNT
    if uploads_nfs_source is not None:
        variables[UPLOADS_NFS_SOURCE_VARIABLE] = uploads_nfs_source
    return variables


def bootstrap_command(args: RemoteDeployArgs, uploads_nfs_source: str | None = None) -> str:
    """Unpack the stdin payload into a private temp dir and run the host setup from it."""
    assignments = " ".join(
        f"{key}={shlex.quote(value)}" for key, value in bootstrap_variables(args, uploads_nfs_source).items()
    )
    return (
        "set -eu; work=$(mktemp -d); trap 'rm -rf \"$work\"' EXIT; "
        'base64 -d | tar -xz --no-same-owner -C "$work"; '
        f"{assignments} "
        'bash "$work/bootstrap/host-setup.sh" "$work"'
    )


BACKUP_UNIT: Final = "bankflow-backup.service"  # files/systemd: the dump, then pgBackRest


def deploy_command(
    args: RemoteDeployArgs, agent: str = AGENT_BIN, log: str = DEPLOY_OUTPUT_LOG, systemctl: str = "systemctl"
) -> str:
    """Receive the bundle and switch to it; the agent's output (which a failure could fill with
    anything, secrets included) goes to a root-only file, and only a fixed line is printed.

    After a successful switch the backup unit starts in the background (--no-block: the `up`
    does not wait for it): the first deploy of a stack creates the pgBackRest stanza and its first
    full backup at once, instead of archiving into nothing until the nightly timer; later deploys
    leave a backup set per release. The backup watch alerts if it fails."""
    # The actor goes on the command line: environment variables would need sshd's AcceptEnv.
    receive = f"{shlex.quote(agent)} --actor pulumi:{args.stack} receive --stdin --deploy"
    backup = f"{shlex.quote(systemctl)} start --no-block {BACKUP_UNIT}"
    out = shlex.quote(log)
    return (
        f"umask 077; rc=0; {receive} >{out} 2>&1 || rc=$?; "
        'if [ "$rc" -ne 0 ]; then '
        f'echo "deploy failed: bankflow-agent exited $rc (the previous release still serves unless it '
        f"says otherwise); its output is on the droplet in {log}: bankflow-infra ssh {args.stack} -- "
        f'cat {log}" >&2; exit "$rc"; fi; '
        + (
            f"{backup} >>{out} 2>&1 || {{ rc=$?; "
            f'echo "deployed, but the backup after the deploy could not be started ({BACKUP_UNIT}, '
            f'exit $rc); see {log} on the droplet" >&2; }}; '
            if args.backup_after_deploy
            else ""
        )
        + 'exit "$rc"'
    )


def stage_command(args: RemoteDeployArgs, agent: str = AGENT_BIN, log: str = DEPLOY_OUTPUT_LOG) -> str:
    """Receive the bundle as a release directory without switching to it (a load balanced stack:
    the roll switches the droplets one at a time). Output handled as in :func:`deploy_command`."""
    receive = f"{shlex.quote(agent)} --actor pulumi:{args.stack} receive --stdin"
    out = shlex.quote(log)
    return (
        f"umask 077; rc=0; {receive} >{out} 2>&1 || rc=$?; "
        'if [ "$rc" -ne 0 ]; then '
        f'echo "staging the release failed: bankflow-agent exited $rc (nothing was switched); its '
        f"output is on the droplet in {log}: bankflow-infra ssh {args.stack} -- "
        f'cat {log}" >&2; fi; '
        'exit "$rc"'
    )


def volume_script_command(script: str, mount: str = DATA_VOLUME_MOUNT) -> str:
    """Run a ``files/`` script (no secret in it) over SSH: its text travels in the command."""
    text = (FILES_DIR / script).read_text(encoding="utf-8")
    return f"bash -c {shlex.quote(text)} {shlex.quote(script.rsplit('/', 1)[-1])} {shlex.quote(mount)}"


def ssh_connection(
    machine: Machine, credentials: Credentials, dial_error_limit: int = DIAL_ERROR_LIMIT
) -> remote.ConnectionArgs:
    return remote.ConnectionArgs(
        host=machine.ipv4,  # the droplet's own address, never a proxied hostname
        port=SSH_PORT,
        user=SSH_USER,
        private_key=credentials.deploy_private_key,
        host_key=machine.host_public_key,  # pinned: nothing else is accepted
        dial_error_limit=dial_error_limit,
        per_dial_timeout=PER_DIAL_TIMEOUT_SECONDS,
    )


class RemoteDeploy(pulumi.ComponentResource):
    """The droplet's bootstrap and each release's deploy, as remote commands over SSH."""

    release: pulumi.Output[str]
    deploy_command: remote.Command  # the deploy (one droplet) or the stage (load balanced)

    def __init__(
        self,
        name: str,
        args: RemoteDeployArgs,
        server: Server,
        credentials: Credentials,
        bundle: pulumi.Output[Bundle],
        opts: pulumi.ResourceOptions | None = None,
        *,
        machine: Machine | None = None,
        uploads_nfs_source: pulumi.Output[str] | None = None,
        after: list[pulumi.Resource] | None = None,
        database: ManagedPostgres | None = None,
    ) -> None:
        """``machine``: the droplet (default droplet 1); ``after``: what the bootstrap waits for
        besides the droplet (the shared uploads' attachment, the managed clusters' firewalls);
        ``database``: a managed PostgreSQL whose ownership step runs here (droplet 1), before the
        deploy or stage."""
        super().__init__(COMPONENT_TYPE, name, None, opts)
        machine = machine or server.machines[0]
        self._droplet = machine.droplet
        connection = ssh_connection(machine, credentials)
        wait = remote.Command(
            f"{name}-wait-cloud-init",
            connection=connection,
            create=WAIT_CLOUD_INIT_COMMAND,
            add_previous_output_in_env=False,
            opts=self._on_droplet([machine.droplet]),
        )
        volume = [server.volume_attachment] if server.volume_attachment and machine.index == 1 else []
        bootstrap = self._bootstrap(
            name, args, connection, bundle, credentials, uploads_nfs_source, [wait, *volume, *(after or [])]
        )
        self.release = pulumi.Output.unsecret(bundle.apply(lambda b: b.digest))
        self.database_owner = (
            database_owner_step(f"{name}-database-owner", self, machine, connection, database, [bootstrap])
            if database is not None
            else None
        )
        ready: list[pulumi.Resource] = [bootstrap, *([self.database_owner] if self.database_owner else [])]
        self.deploy_command = self._deploy(name, args, connection, bundle, ready)
        if server.volume is not None and server.volume_attachment is not None and machine.index == 1:
            self._data_volume_steps(name, args, server, credentials, bootstrap)
        self.register_outputs({"release": self.release})

    def _bootstrap(
        self,
        name: str,
        args: RemoteDeployArgs,
        connection: remote.ConnectionArgs,
        bundle: pulumi.Output[Bundle],
        credentials: Credentials,
        uploads_nfs_source: pulumi.Output[str] | None,
        depends_on: list[pulumi.Resource],
    ) -> remote.Command:
        bootstrap_text = pulumi.Output.all(bundle, credentials.deploy_public_key).apply(
            lambda v: bootstrap_payload(args.admin_ssh_keys, v[0], v[1])
        )
        # The host files carry no secret; the digest is shown in previews so a reviewer sees
        # that the host setup will run again.
        bootstrap_digest = pulumi.Output.unsecret(bootstrap_text.apply(digest_of))
        # The share's address changes the command text (an update re-runs the bootstrap).
        create: pulumi.Input[str] = (
            uploads_nfs_source.apply(lambda source: bootstrap_command(args, source))
            if uploads_nfs_source is not None
            else bootstrap_command(args)
        )
        return remote.Command(
            f"{name}-bootstrap",
            connection=connection,
            create=create,
            stdin=bootstrap_text,
            triggers=[bootstrap_digest],
            add_previous_output_in_env=False,
            opts=self._on_droplet(depends_on),
        )

    def _data_volume_steps(
        self,
        name: str,
        args: RemoteDeployArgs,
        server: Server,
        credentials: Credentials,
        bootstrap: remote.Command,
    ) -> None:
        assert server.volume is not None
        assert server.volume_attachment is not None
        remote.Command(
            f"{name}-grow-data-filesystem",
            connection=ssh_connection(server.machines[0], credentials),
            create=volume_script_command(GROW_DATA_FILESYSTEM_SCRIPT),
            # A larger volume (resized in place by DigitalOcean) re-runs resize2fs.
            triggers=[args.volume_size_gb],
            add_previous_output_in_env=False,
            opts=self._on_droplet([bootstrap, server.volume]),
        )
        remote.Command(
            f"{name}-release-data-volume",
            connection=ssh_connection(server.machines[0], credentials, RELEASE_DIAL_ERROR_LIMIT),
            # Nothing on create; on delete, before the attachment goes (it depends on it):
            # PostgreSQL stopped and the volume unmounted, so a detach loses no write.
            delete=volume_script_command(RELEASE_DATA_VOLUME_SCRIPT),
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[server.volume_attachment, bootstrap],
                # No `deleted_with`: that would skip this delete exactly when the droplet goes.
                # Replaced with the droplet, deleted first (the droplet is delete-before-replace).
                replace_with=[self._droplet],
                delete_before_replace=True,
            ),
        )

    def _on_droplet(
        self, depends_on: list[pulumi.Resource], secret_output: bool = False
    ) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(
            parent=self,
            depends_on=depends_on,
            # Destroying the droplet takes its commands with it; replacing it re-runs them.
            deleted_with=self._droplet,
            replace_with=[self._droplet],
            additional_secret_outputs=["stdout", "stderr"] if secret_output else None,
        )

    def _deploy(
        self,
        name: str,
        args: RemoteDeployArgs,
        connection: remote.ConnectionArgs,
        bundle: pulumi.Output[Bundle],
        ready: list[pulumi.Resource],
    ) -> remote.Command:
        payload: pulumi.Output[str] = bundle.apply(deploy_payload)
        deploy_text: pulumi.Output[str] = pulumi.Output.secret(payload)
        return remote.Command(
            f"{name}-deploy",
            connection=connection,
            create=stage_command(args) if args.stage_only else deploy_command(args),
            stdin=deploy_text,
            triggers=[self.release],
            # The bundle carries the database password and the TLS key: log nothing, keep
            # whatever the agent prints out of the state in plain text.
            logging=remote.Logging.NONE,
            add_previous_output_in_env=False,
            opts=self._on_droplet(ready, secret_output=True),
        )
