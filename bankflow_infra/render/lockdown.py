"""Issue 12, item 5: the compose keys that lock a container down (facts per service: catalog.hardening).

How Docker applies them (no Docker engine here; from the sources):

- ``tmpfs``: docker compose splits each entry at the first ``:`` into HostConfig.Tmpfs
  (path -> mount options, docker/compose pkg/compose/create.go); the engine mounts a tmpfs with
  those options (size=, mode=, uid=, gid= are tmpfs's own) and, unless told otherwise,
  rw,noexec,nosuid,nodev. Mounts are sorted by depth, so a tmpfs on /run lies under the secret
  bind mounts in /run/secrets.
- ``cap_drop: [ALL]`` then ``cap_add``: only the listed capabilities remain, for root in the
  container too (a root without DAC_OVERRIDE is an ordinary uid for file permissions).
- ``no-new-privileges``: no setuid binary or file capability can raise a process's privileges;
  su-exec (postgres's entrypoint and the agent's pgBackRest calls) only drops them, so it works.
- ``pids_limit``: the pids cgroup counts threads as well as processes.
"""

from __future__ import annotations

from typing import Any

from bankflow_infra import catalog


def lockdown(service: str) -> dict[str, Any]:
    """``user``, ``read_only``, ``tmpfs``, ``cap_drop``/``cap_add``, ``security_opt``, ``pids_limit``."""
    facts = catalog.hardening(service)
    body: dict[str, Any] = {}
    if facts.user is not None:
        body["user"] = facts.user
    body["read_only"] = True
    body["tmpfs"] = list(facts.tmpfs)
    body["cap_drop"] = ["ALL"]
    if facts.cap_add:
        body["cap_add"] = list(facts.cap_add)
    body["security_opt"] = ["no-new-privileges:true"]
    body["pids_limit"] = facts.pids_limit
    return body
