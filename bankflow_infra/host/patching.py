"""bankflow-agent patch: the maintenance window (``bankflow-maintenance.timer``). Stdlib only.

Unattended upgrades install security updates daily but hold Docker's packages back (an engine
upgrade restarts dockerd) and never reboot. This window, at a stated time, does what they leave:

1. **refuse** unless dockerd has ``live-restore`` on (render/host_files.py daemon.json): with it,
   containers keep running while dockerd/containerd restart during their upgrade;
2. **upgrade** every package, Docker/containerd/runc included (``apt-get dist-upgrade``,
   unattended: existing config files kept, bounded wait for the apt lock);
3. **health gate**: every base and serving app container healthy, every hostname 2xx through nginx;
4. **reboot** when the upgrade asks for one (``/var/run/reboot-required``, written by Ubuntu's
   update-notifier-common for a new kernel, libc, ...): a marker in the state dir first, then
   ``systemctl reboot``; at the next boot ``bankflow-maintenance-resume.service`` (only when the
   marker exists) runs ``patch --after-reboot``: the same health gate, bounded, then the marker
   goes. A failed gate exits non-zero (a failed unit, on record in the audit log).

It runs under the deploy lock, so it never interleaves with a deploy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ..contract.exit_codes import FAILED, OK
from . import patching_fleet, traffic
from . import state as st
from .context import Context, StepFailed, describe
from .manifest import load_manifest
from .plan import app_project
from .release_dir import projects
from .runtime import Completed, RuntimeFailure, subprocess_runner

ACTION: Final = "patch"
REBOOT_REQUIRED: Final = Path("/var/run/reboot-required")
BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")
MARKER_NAME: Final = "maintenance-reboot.json"  # in the state dir: a reboot this window asked for
APT_ENV: Final = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "l"}
# Keep existing config files (ours: daemon.json, sshd drop-in); wait for the apt lock that
# apt-daily/unattended-upgrades may hold instead of failing the window.
APT_OPTIONS: Final = (
    "-o", "DPkg::Lock::Timeout=600",
    "-o", "Dpkg::Options::=--force-confdef",
    "-o", "Dpkg::Options::=--force-confold",
)  # fmt: skip
AFTER_REBOOT_HEALTH_SECONDS: Final = 600.0  # containers come back by their restart policy


def upgrade_argvs() -> list[list[str]]:
    """The package commands of one window, in order (env: ``APT_ENV``)."""
    return [
        ["apt-get", *APT_OPTIONS, "update"],
        # dist-upgrade, not upgrade: a new kernel or a containerd.io with new dependencies is
        # installed too. Docker's packages are held only in unattended-upgrades' blacklist.
        ["apt-get", *APT_OPTIONS, "-y", "dist-upgrade"],
        ["apt-get", *APT_OPTIONS, "-y", "autoremove"],
    ]


@dataclass
class System:
    """What the window touches beyond the containers: injectable so the tests run it for real
    against stand-ins (no apt, no reboot here)."""

    run: Callable[..., Completed] = subprocess_runner
    # Behind a load balancer: out of rotation before the reboot, back once the gate passes after it.
    set_draining: Callable[[Context, bool], int] = patching_fleet.set_draining
    reboot_required: Path = REBOOT_REQUIRED
    boot_id: Path = BOOT_ID
    env: Mapping[str, str] = field(default_factory=lambda: dict(APT_ENV))

    def check(self, argv: Sequence[str], timeout: float = 3600) -> str:
        done = self.run(argv, timeout=timeout)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StepFailed(ACTION, f"{' '.join(argv)} exited {done.returncode}: {tail[0]}")
        return done.stdout


def live_restore_on(system: System) -> bool:
    return system.check(["docker", "info", "--format", "{{.LiveRestoreEnabled}}"], 60).strip() == "true"


def health_problems(ctx: Context) -> list[str]:
    """The serving release's containers (base and app) healthy, every hostname 2xx through nginx."""
    current = st.read_current(ctx.paths)
    if current is None:
        return []  # nothing serves yet: nothing to gate
    manifest = load_manifest(ctx.paths.release_dir(current.release))
    _, base = projects(ctx.paths, current.release, manifest)
    app, _ = app_project(ctx, current.app_release)
    problems = []
    for project, services in ((base, manifest.base_services), (app, manifest.app_names())):
        health = ctx.runtime.wait_healthy(project, services, ctx.options.health_timeout)
        problems += [f"{s} unhealthy" for s in services if not health.get(s, False)]
    if not problems:
        try:
            url = patching_fleet.gate_url(ctx)
            listener = "public listener" if url == ctx.options.verify_url else "verify listener"
            traffic.verify_through(ctx, manifest, url, listener)
        except StepFailed as exc:
            problems.append(str(exc))
    return problems


def _marker(ctx: Context) -> Path:
    return ctx.paths.state / MARKER_NAME


def run_window(ctx: Context, system: System) -> int:
    """Steps 1-4 above; the exit code."""
    if not live_restore_on(system):
        refusal = (
            "refused: dockerd runs without live-restore (an engine upgrade would restart every "
            "container): fix /etc/docker/daemon.json, then run the window again"
        )
        return _end(ctx, FAILED, refusal)
    for argv in upgrade_argvs():
        ctx.say(f"{ACTION}: {' '.join(argv)}")
        system.check(argv)
    problems = health_problems(ctx)
    if problems:
        return _end(ctx, FAILED, "upgraded; health gate FAILED: " + "; ".join(problems))
    if not system.reboot_required.exists():
        return _end(ctx, OK, "upgraded; health gate passed; no reboot required")
    packages = _reboot_packages(system.reboot_required)
    if patching_fleet.load_balanced(ctx) and system.set_draining(ctx, True) != OK:
        refusal = "upgraded; health gate passed; NOT rebooted: the droplet could not be drained"
        return _end(ctx, FAILED, refusal)
    boot = system.boot_id.read_text().strip()
    st.write_json(_marker(ctx), {"boot_id": boot, "since": st.utc_now(), "packages": packages})
    why = ", ".join(packages)
    ctx.audit(ACTION, None, "rebooting", f"upgraded; health gate passed; rebooting for {why}")
    ctx.ended = True
    system.check(["systemctl", "reboot"], 60)
    return OK


def after_reboot(ctx: Context, system: System, sleep: Callable[[float], None] = time.sleep) -> int:
    """At boot, after a reboot this window asked for: the health gate (bounded), then the marker goes."""
    path = _marker(ctx)
    try:
        marker: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return _end(ctx, OK, "no reboot of a maintenance window pending")
    if marker.get("boot_id") == system.boot_id.read_text().strip():
        return _end(ctx, FAILED, "the reboot asked for at " + str(marker.get("since")) + " did not happen")
    deadline = time.monotonic() + AFTER_REBOOT_HEALTH_SECONDS
    problems = health_problems(ctx)
    while problems and time.monotonic() < deadline:
        sleep(10)
        problems = health_problems(ctx)
    path.unlink(missing_ok=True)
    if problems:
        # Behind a load balancer the droplet stays drained: out of rotation until someone looks.
        return _end(ctx, FAILED, "rebooted; health gate FAILED: " + "; ".join(problems))
    if patching_fleet.load_balanced(ctx) and system.set_draining(ctx, False) != OK:
        stuck = "rebooted; health gate passed; the droplet could not rejoin the load balancer"
        return _end(ctx, FAILED, stuck)
    return _end(ctx, OK, "rebooted; health gate passed")


def _reboot_packages(flag: Path) -> list[str]:
    listed = flag.with_name(flag.name + ".pkgs")  # update-notifier writes the packages beside it
    try:
        return sorted(set(listed.read_text().split())) or ["(unnamed)"]
    except OSError:
        return ["(unnamed)"]


def _end(ctx: Context, code: int, message: str) -> int:
    (ctx.say if code == OK else ctx.complain)(f"{ACTION}: {message}")
    ctx.audit(ACTION, None, "ok" if code == OK else "failed", message)
    return code


def cmd_patch(ctx: Context, after: bool, system: System | None = None) -> int:
    system = system or System()
    try:
        return after_reboot(ctx, system) if after else run_window(ctx, system)
    except (StepFailed, RuntimeFailure, OSError) as exc:
        return _end(ctx, FAILED, describe(exc))


def register(sub: Any) -> None:
    parser = sub.add_parser(
        ACTION, help="maintenance window: upgrade packages (Docker too), health gate, reboot"
    )
    parser.add_argument(
        "--after-reboot", action="store_true", help="the health gate after the window's reboot"
    )


COMMANDS: Final = {ACTION: (lambda ctx, a, _s: cmd_patch(ctx, a.after_reboot), True)}  # under the deploy lock
