"""files/bootstrap/host-setup.sh, run for real against a temporary root filesystem.

The system managers it drives (apt, systemd, ufw, iptables, swap, the clock, the Docker engine)
are recording stand-ins (tests/bootstrap/standin_tool.py): they cannot run in a test sandbox and
must not touch the machine running the tests. Everything else is real: bash, the files written
with their modes, and ``sshd -t``/``-T`` from the real OpenSSH server when it is installed.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from bankflow_infra.contract import layout
from tests.bootstrap.rig import DAEMON_JSON, DROPIN, HostSetupRig, Run, mode_of, owner_of, running_as_root
from tests.support.tools import require_tool

DOCKER_PACKAGES = (
    "docker-ce",
    "docker-ce-cli",
    "containerd.io",
    "docker-buildx-plugin",
    "docker-compose-plugin",
)
METADATA_RULE = ["iptables", "-w", "-I", "DOCKER-USER", "1", "-d", "169.254.169.254/32", "-j", "DROP"]


@pytest.fixture
def rig(tmp_path: Path) -> HostSetupRig:
    return HostSetupRig(tmp_path)


@pytest.fixture
def real_sshd_rig(tmp_path: Path) -> HostSetupRig:
    require_tool("sshd")
    return HostSetupRig(tmp_path)


def _ok(rig: HostSetupRig, *args: str, **env: str) -> Run:
    run = rig.run(*args, **env)
    assert run.returncode == 0, f"host-setup failed:\n{run.stdout}\n{run.stderr}"
    return run


def _assert_docker_and_the_bankflow_tree(rig: HostSetupRig, run: Run) -> None:
    # Docker from Docker's own repository, keyring checked by fingerprint, noble, signed-by.
    repo = rig.path("/etc/apt/sources.list.d/docker.list").read_text()
    assert repo == (
        "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc]"
        " https://download.docker.com/linux/ubuntu noble stable\n"
    )
    assert rig.path("/etc/apt/keyrings/docker.asc").is_file()
    installs = [c for c in run.commands if c[0] == "apt-get" and "install" in c]
    assert any(set(DOCKER_PACKAGES) <= set(c) for c in installs)
    assert all("DPkg::Lock::Timeout=600" in c for c in installs)
    assert all("--no-remove" in c for c in installs)
    # a new repository is fetched before installing from it
    docker_install = next(i for i, c in enumerate(run.commands) if c[0] == "apt-get" and "docker-ce" in c)
    assert run.commands[docker_install - 1][-1] == "update"

    # The /opt/bankflow tree, with the contract's paths (contract.layout); secrets and backups root-only.
    for directory in (layout.BIN_DIR, layout.RELEASES_DIR, layout.LOGS_DIR, layout.UPLOADS_DIR,
                      layout.NGINX_LIVE_DIR, layout.STATE_DIR):  # fmt: skip
        assert rig.path(directory).is_dir(), directory
    assert mode_of(rig.path(layout.SECRETS_DIR)) == 0o700
    assert mode_of(rig.path(layout.BACKUPS_DIR)) == 0o700


def _assert_firewall_metadata_block_and_host_files(rig: HostSetupRig, run: Run) -> None:
    # ufw: deny incoming, 22/80/443 allowed before enabling (never lock the SSH session out).
    ufw = [c[1:] for c in run.commands if c[0] == "ufw"]
    assert ufw.index(["allow", "22/tcp"]) < ufw.index(["--force", "enable"])
    assert {"22/tcp", "80/tcp", "443/tcp"} <= set(rig.state()["ufw"]["rules"])
    assert 'DEFAULT_INPUT_POLICY="DROP"' in rig.path("/etc/default/ufw").read_text()

    # Metadata service blocked for containers, and persisted by a unit ordered before docker.
    assert run.called(*METADATA_RULE) == 1
    unit = rig.path("/etc/systemd/system/bankflow-metadata-block.service").read_text()
    assert "Before=docker.service" in unit
    assert "WantedBy=docker.service" in unit
    assert "-I DOCKER-USER 1 -d 169.254.169.254/32 -j DROP" in unit

    # Host files from the bundle.
    assert json.loads(rig.path("/etc/docker/daemon.json").read_text()) == DAEMON_JSON
    assert rig.path("/etc/logrotate.d/bankflow").is_file()
    assert mode_of(rig.path("/etc/systemd/system/bankflow-backup.timer")) == 0o644
    assert ["systemctl", "enable", "bankflow-backup.timer"] in run.commands
    # The every-minute backup watch (alerts) is installed and running on every host.
    assert mode_of(rig.path("/etc/systemd/system/bankflow-backup-watch.timer")) == 0o644
    assert ["systemctl", "enable", "bankflow-backup-watch.timer"] in run.commands
    assert ["systemctl", "restart", "bankflow-backup-watch.timer"] in run.commands


def _assert_upgrades_sshd_and_swap(rig: HostSetupRig, run: Run) -> None:
    # Unattended security upgrades, Docker's packages held back.
    periodic = rig.path("/etc/apt/apt.conf.d/20auto-upgrades").read_text()
    assert 'APT::Periodic::Unattended-Upgrade "1";' in periodic
    blacklist = rig.path("/etc/apt/apt.conf.d/51bankflow-unattended-upgrades").read_text()
    listed = re.findall(r'^\s*"([^"]+)";', blacklist, re.MULTILINE)
    assert set(DOCKER_PACKAGES) <= set(listed)

    # sshd drop-in installed verbatim, validated, then ssh reloaded.
    installed = rig.path("/etc/ssh/sshd_config.d/50-bankflow-hardening.conf")
    assert installed.read_bytes() == DROPIN.read_bytes()
    assert mode_of(installed) == 0o644
    sshd_t = run.commands.index(["sshd", "-t", "-f", str(rig.path("/etc/ssh/sshd_config"))])
    assert run.commands.index(["systemctl", "try-reload-or-restart", "ssh.service"]) > sshd_t
    authorized = rig.path("/root/.ssh/authorized_keys")
    assert mode_of(authorized) == 0o600
    assert mode_of(authorized.parent) == 0o700

    # Swap on a small droplet: 2 GiB file, 0600, swapon, one fstab line, low swappiness.
    swapfile = rig.path("/swapfile")
    assert swapfile.stat().st_size == 2 * 1024**3
    assert mode_of(swapfile) == 0o600
    assert ["mkswap", f"{swapfile}.bankflow-new"] in run.commands
    assert rig.state()["swaps"] == ["/swapfile"]
    assert rig.path("/etc/fstab").read_text().count("/swapfile none swap sw 0 0") == 1
    assert "vm.swappiness = 10" in rig.path("/etc/sysctl.d/60-bankflow-swap.conf").read_text()


def test_first_run_sets_up_the_host(rig: HostSetupRig) -> None:
    run = _ok(rig)
    _assert_docker_and_the_bankflow_tree(rig, run)
    _assert_firewall_metadata_block_and_host_files(rig, run)
    _assert_upgrades_sshd_and_swap(rig, run)

    # Clock, agent, summary.
    assert ["timedatectl", "set-ntp", "true"] in run.commands
    assert rig.path(f"{layout.BIN_DIR}/bankflow_infra/host/agent.py").is_file()
    assert run.lines[-1] == f"host-setup: {len(run.changed)} change(s)"
    assert all(re.match(r"^(ok|changed): ", line) for line in run.lines[1:-1]), run.stdout


def test_second_run_changes_nothing(rig: HostSetupRig) -> None:
    _ok(rig)
    files_before = rig.snapshot()

    run = _ok(rig)

    assert run.lines[-1] == "host-setup: no changes"
    assert run.changed == []
    assert run.mutating() == [], "a run with nothing to do must not change the host"
    assert not any(c[0] == "apt-get" for c in run.commands)
    assert rig.snapshot() == files_before, "no file may be rewritten, not even with the same content"


def test_changed_daemon_json_restarts_docker_once(rig: HostSetupRig) -> None:
    _ok(rig)
    (rig.payload / "host" / "daemon.json").write_text(json.dumps({**DAEMON_JSON, "live-restore": True}))

    run = _ok(rig)

    assert run.changed == ["changed: docker daemon.json (docker restarted)"]
    assert run.lines[-1] == "host-setup: 1 change(s)"
    restarts = [c for c in run.commands if c[:2] == ["systemctl", "restart"]]
    assert restarts == [["systemctl", "restart", "docker.service"]]
    assert json.loads(rig.path("/etc/docker/daemon.json").read_text())["live-restore"] is True


def test_invalid_daemon_json_is_refused_before_it_reaches_docker(rig: HostSetupRig) -> None:
    _ok(rig)
    good = rig.path("/etc/docker/daemon.json").read_text()
    (rig.payload / "host" / "daemon.json").write_text('{"log-driver": ')

    run = rig.run()

    assert run.returncode != 0
    assert "not a valid Docker daemon configuration" in run.stderr
    assert rig.path("/etc/docker/daemon.json").read_text() == good
    assert ["systemctl", "restart", "docker.service"] not in run.commands


def test_changed_timer_is_reloaded_and_restarted(rig: HostSetupRig) -> None:
    _ok(rig)
    timer = rig.payload / "host" / "bankflow-backup.timer"
    timer.write_text(timer.read_text().replace("03:15", "04:30"))

    run = _ok(rig)

    assert run.changed == ["changed: backup timer bankflow-backup.timer (enabled)"]
    assert run.commands.index(["systemctl", "daemon-reload"]) < run.commands.index(
        ["systemctl", "restart", "bankflow-backup.timer"]
    )


def test_removed_metadata_rule_is_restored(rig: HostSetupRig) -> None:
    _ok(rig)
    rig.update_state(rules=[])  # e.g. someone flushed DOCKER-USER by hand

    run = _ok(rig)

    assert run.changed == ["changed: DOCKER-USER drops traffic to 169.254.169.254"]
    assert run.called(*METADATA_RULE) == 1


def test_invalid_sshd_dropin_is_rolled_back(real_sshd_rig: HostSetupRig) -> None:
    rig = real_sshd_rig
    _ok(rig)
    installed = rig.path("/etc/ssh/sshd_config.d/50-bankflow-hardening.conf")
    good = installed.read_bytes()
    broken = rig.payload / "ssh" / DROPIN.name
    broken.write_text(broken.read_text() + "\nCiphers aes256-gcm@openssh.com,not-a-cipher\n")

    run = rig.run()

    assert run.returncode != 0
    assert "sshd -t rejected" in run.stderr
    assert "previous configuration restored" in run.stderr
    assert installed.read_bytes() == good
    assert ["systemctl", "try-reload-or-restart", "ssh.service"] not in run.commands


def test_invalid_sshd_dropin_on_a_fresh_host_is_removed(real_sshd_rig: HostSetupRig) -> None:
    rig = real_sshd_rig
    broken = rig.payload / "ssh" / DROPIN.name
    broken.write_text(broken.read_text().replace("MaxAuthTries 3", "MaxAuthTries three"))

    run = rig.run()

    assert run.returncode != 0
    assert not rig.path("/etc/ssh/sshd_config.d/50-bankflow-hardening.conf").exists()


def test_an_earlier_dropin_that_weakens_sshd_fails_the_setup(real_sshd_rig: HostSetupRig) -> None:
    rig = real_sshd_rig
    # sshd keeps the first value it reads: a drop-in sorting before ours would win.
    rig.path("/etc/ssh/sshd_config.d/10-weak.conf").write_text("PasswordAuthentication yes\n")

    run = rig.run()

    assert run.returncode != 0
    assert "expected 'passwordauthentication no'" in run.stderr


def test_cloud_init_image_dropin_does_not_override_ours(real_sshd_rig: HostSetupRig) -> None:
    # The rig's rootfs has DigitalOcean's 50-cloud-init.conf with PasswordAuthentication yes.
    rig = real_sshd_rig
    assert "PasswordAuthentication yes" in rig.path("/etc/ssh/sshd_config.d/50-cloud-init.conf").read_text()
    _ok(rig)


def test_tampered_docker_key_is_refused(rig: HostSetupRig) -> None:
    rig.update_state(tampered_key=True)

    run = rig.run()

    assert run.returncode != 0
    assert "expected 9DC858229FC7DD38854AE2D88D81803C0EBFCD88" in run.stderr
    assert not rig.path("/etc/apt/keyrings/docker.asc").exists()
    assert not any(c[0] == "apt-get" and "docker-ce" in c for c in run.commands)


def test_no_swap_on_a_droplet_with_enough_memory(rig: HostSetupRig) -> None:
    rig.update_state(mem_bytes=8 * 1024**3)

    run = _ok(rig)

    assert any(line.startswith("ok: swap not needed") for line in run.lines)
    assert not rig.path("/swapfile").exists()
    assert not any(c[0] in ("fallocate", "mkswap", "swapon") and "--show=NAME" not in c for c in run.commands)


def test_swap_disabled_by_setting(rig: HostSetupRig) -> None:
    run = _ok(rig, BANKFLOW_SWAP_GB="0")
    assert "ok: swap not wanted (BANKFLOW_SWAP_GB=0)" in run.lines
    assert not rig.path("/swapfile").exists()


@pytest.mark.parametrize(("rc", "succeeds"), [(0, True), (2, True), (1, False)])
def test_cloud_init_degraded_counts_as_done(rig: HostSetupRig, rc: int, succeeds: bool) -> None:
    rig.update_state(cloud_init_rc=rc)
    run = rig.run()
    assert (run.returncode == 0) is succeeds, run.stderr
    if not succeeds:
        assert not any(c[0] == "apt-get" for c in run.commands), "nothing may run before cloud-init is done"


def test_other_releases_are_refused(rig: HostSetupRig) -> None:
    os_release = rig.path("/etc/os-release")
    os_release.write_text(os_release.read_text().replace("noble", "jammy"))
    run = rig.run()
    assert run.returncode != 0
    assert "Ubuntu 24.04 (noble) only" in run.stderr
    assert [c[0] for c in run.commands] == []


def test_authorized_keys_the_hardened_sshd_would_refuse_are_rejected(rig: HostSetupRig) -> None:
    (rig.payload / "ssh" / "authorized_keys").write_text(
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGJhbmtmbG93 admin\n"
    )
    run = rig.run()
    assert run.returncode != 0
    assert "the only types sshd accepts" in run.stderr
    assert not rig.path("/root/.ssh/authorized_keys").exists()


def test_host_files_are_required_unless_skipped(rig: HostSetupRig) -> None:
    (rig.payload / "host" / "logrotate-bankflow").unlink()
    run = rig.run()
    assert run.returncode != 0
    assert "host file missing" in run.stderr

    shutil.rmtree(rig.payload / "host")
    run = _ok(rig, BANKFLOW_HOST_FILES="none")
    assert "ok: host files skipped (BANKFLOW_HOST_FILES=none)" in run.lines


@pytest.mark.skipif(not running_as_root(), reason="ownership is only enforced when running as root")
def test_secrets_dir_mode_and_owner_are_enforced(rig: HostSetupRig) -> None:
    _ok(rig)
    secrets = rig.path(layout.SECRETS_DIR)
    secrets.chmod(0o755)

    run = _ok(rig)

    assert mode_of(secrets) == 0o700
    assert owner_of(secrets) == (0, 0)
    assert run.changed == [f"changed: bankflow directories: {layout.SECRETS_DIR} (mode 755 -> 700)"]


def test_paths_are_the_ones_the_bootstrap_command_passes(rig: HostSetupRig) -> None:
    run = rig.run("--print-config")
    assert run.returncode == 0
    assert run.commands == []
    config = dict(line.split("=", 1) for line in run.lines)
    assert config["HOME_DIR"] == layout.HOST_ROOT
    assert config["BIN_DIR"] == layout.BIN_DIR
    assert config["RELEASES_DIR"] == layout.RELEASES_DIR
    assert config["SECRETS_DIR"] == layout.SECRETS_DIR
    assert config["LOGS_DIR"] == layout.LOGS_DIR
    assert config["UPLOADS_DIR"] == layout.UPLOADS_DIR
    assert config["BACKUPS_DIR"] == layout.BACKUPS_DIR
    assert config["SWAP_GB"] == "2"


@pytest.mark.parametrize("unset", ["BANKFLOW_HOME", "BANKFLOW_SECRETS_DIR"])
def test_refuses_to_run_without_the_host_layout(rig: HostSetupRig, unset: str) -> None:
    # No default for the layout in the script: it comes only from the bootstrap command.
    run = rig.run(**{unset: ""})
    assert run.returncode == 2
    assert f"host-setup: error: not set: {unset} " in run.stderr
    assert "bootstrap_environment()" in run.stderr
    assert run.commands == []
    assert not rig.path(layout.HOST_ROOT).exists()


def test_a_data_volume_needs_its_mount_point(rig: HostSetupRig) -> None:
    run = rig.run(BANKFLOW_DATA_VOLUME_LABEL="bankflow-data", BANKFLOW_DATA_VOLUME_MOUNT="")
    assert run.returncode == 2
    assert "not set: BANKFLOW_DATA_VOLUME_MOUNT" in run.stderr
    assert run.commands == []


def test_payload_layout_is_the_bootstrap_payloads(rig: HostSetupRig) -> None:
    run = rig.run("--print-config", "/payload")
    config = dict(line.split("=", 1) for line in run.lines)
    assert config["SSHD_DROPIN"] == "/payload/ssh/50-bankflow-hardening.conf"
    assert config["HOST_FILES"] == "/payload/host"
    assert config["AUTHORIZED_KEYS"] == "/payload/ssh/authorized_keys"
    assert config["AGENT_DIR"] == "/payload/agent"


def test_runs_with_the_host_files_the_renderer_produces(rig: HostSetupRig) -> None:
    # The bundle's real host/ files (bankflow_infra.render.host_files) for the staging stack, in place of
    # the rig's samples: same names, installed verbatim, and a second run is still a no-op.
    import yaml

    from bankflow_infra.render.host_files import render_host_files
    from bankflow_infra.stackfile import settings_from_stack_file

    stack_file = Path(__file__).resolve().parents[2] / "Pulumi.staging.yaml"
    settings = settings_from_stack_file(
        "bankflow", "staging", yaml.safe_load(stack_file.read_text()), str(stack_file)
    )
    rendered = render_host_files(settings)
    shutil.rmtree(rig.payload / "host")
    (rig.payload / "host").mkdir()
    for bundle_path, text in rendered.items():
        (rig.payload / bundle_path).write_text(text)

    _ok(rig, BANKFLOW_SWAP_GB=str(settings.server.swap_gb))

    assert rig.path("/etc/docker/daemon.json").read_text() == rendered["host/daemon.json"]
    assert rig.path("/etc/logrotate.d/bankflow").read_text() == rendered["host/logrotate-bankflow"]
    assert (
        rig.path("/etc/systemd/system/bankflow-backup.timer").read_text()
        == rendered["host/bankflow-backup.timer"]
    )
    assert _ok(rig).lines[-1] == "host-setup: no changes"
