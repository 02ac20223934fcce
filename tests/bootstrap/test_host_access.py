"""Who may reach the droplet, as files/bootstrap/host-setup.sh sets it up (issue 12, items 7 and 8).

Run for real against a temporary root filesystem (tests/bootstrap/rig.py): root's deploy key behind
the dispatcher, the operators' accounts with audited sudo, /etc/ssh/moduli pruned, the penalties
drop-in only on an sshd that knows it, and the host firewall from ``host/firewall-allow``
(bankflow_infra/render/host_access.py): ufw for what the host serves itself, DOCKER-USER for the
ports Docker publishes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bankflow_infra.contract.fleet import LB_HEALTH_PORT
from bankflow_infra.render.host_access import render_firewall_allow, render_operators
from bankflow_infra.render.model import BundleInputError, CloudflareRanges
from bankflow_infra.settings.model import OperatorAccount
from tests.bootstrap.rig import SCRIPT, HostSetupRig, Run, mode_of
from tests.support.tools import require_tool, unavailable

DISPATCH = "/usr/local/sbin/bankflow-ssh-dispatch"
DEPLOY_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJhbmtmbG93LXRlc3QtZGVwbG95LWtleS0wMDAwMDAwMA deploy"
ANA = OperatorAccount(
    "ana", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFuYS10ZXN0LWtleS0wMDAwMDAwMDAwMDAwMDAw ana@laptop"
)
BRUNO = OperatorAccount(
    "bruno", "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIA bruno"
)
SSH_CIDRS = ("203.0.113.0/24", "2001:db8:1::/48")
CLOUDFLARE = CloudflareRanges(ipv4=("173.245.48.0/20", "103.21.244.0/22"), ipv6=("2400:cb00::/32",))
WEB_INGRESS = "BANKFLOW-WEB-INGRESS"
VPC = "10.130.16.0/20"


@pytest.fixture
def rig(tmp_path: Path) -> HostSetupRig:
    return HostSetupRig(tmp_path)


def _ok(rig: HostSetupRig, **env: str) -> Run:
    run = rig.run(**env)
    assert run.returncode == 0, f"host-setup failed:\n{run.stdout}\n{run.stderr}"
    return run


def _failed(rig: HostSetupRig, message: str) -> Run:
    run = rig.run()
    assert run.returncode != 0, run.stdout
    assert message in run.stderr, run.stderr
    return run


def _host_file(rig: HostSetupRig, name: str, text: str) -> None:
    (rig.payload / "host" / name).write_text(text)


# ------------------------------------------------------------------------------ the deploy key


def test_root_keys_get_the_dispatcher_as_forced_command(rig: HostSetupRig) -> None:
    run = _ok(rig)
    authorized = rig.path("/root/.ssh/authorized_keys").read_text()
    assert authorized == f'restrict,command="{DISPATCH}" {DEPLOY_KEY}\n'
    dispatcher = rig.path(DISPATCH)
    assert dispatcher.read_bytes() == (rig.payload / "ssh" / "bankflow-ssh-dispatch").read_bytes()
    assert mode_of(dispatcher) == 0o755
    # The data-volume scripts the dispatcher may run, by digest.
    digests = rig.path("/etc/bankflow/ssh-dispatch-scripts.sha256").read_text().splitlines()
    scripts = (rig.payload / "volume").glob("*.sh")
    expected = sorted(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in scripts)
    assert sorted(digests) == expected
    assert len(expected) == 2
    # The dispatcher is in place before root's keys point at it.
    lines = run.lines
    assert next(i for i, line in enumerate(lines) if "ssh dispatcher" in line) < next(
        i for i, line in enumerate(lines) if "root authorized_keys" in line
    )


def test_without_the_dispatcher_root_keys_are_left_alone(rig: HostSetupRig) -> None:
    (rig.payload / "ssh" / "bankflow-ssh-dispatch").unlink()
    run = _failed(rig, "the deploy key's forced command is missing")
    assert run.commands == []
    assert not rig.path("/root/.ssh/authorized_keys").exists()


def test_effective_root_login_must_be_forced_commands_only(rig: HostSetupRig) -> None:
    if rig.real_sshd is None:
        unavailable("needs the real sshd")
    # An earlier-sorting drop-in that re-opens root logins with any key fails the setup.
    rig.path("/etc/ssh/sshd_config.d/10-weaker.conf").write_text("PermitRootLogin prohibit-password\n")
    _failed(rig, "expected 'permitrootlogin forced-commands-only'")


# ------------------------------------------------------------------------------ sshd extras


def test_moduli_keep_only_3072_bit_groups(rig: HostSetupRig) -> None:
    moduli = rig.path("/etc/ssh/moduli")
    small = "20230101000000 2 6 100 2047 2 F1"
    large = "20230101000000 2 6 100 3071 5 C7"
    larger = "20230101000000 2 6 100 8191 2 E3"
    moduli.write_text(f"#    Time Type Tests Tries Size Generator Modulus\n{small}\n{large}\n{larger}\n")
    run = _ok(rig)
    assert "changed: sshd moduli (groups under 3072 bits removed)" in run.lines
    assert moduli.read_text().splitlines()[1:] == [large, larger]
    assert "ok: sshd moduli (only >= 3072-bit groups)" in _ok(rig).lines


def test_penalties_drop_in_only_where_sshd_knows_the_keyword(rig: HostSetupRig) -> None:
    dropin = rig.path("/etc/ssh/sshd_config.d/49-bankflow-penalties.conf")
    rig.real_sshd = None  # the stand-in sshd: answers -T like OpenSSH 9.6 (Ubuntu 24.04), then 9.8
    run = _ok(rig)
    assert not dropin.exists()
    assert any("predates PerSourcePenalties" in line for line in run.lines)
    rig.update_state(sshd_knows_penalties=True)
    run = _ok(rig)
    assert dropin.read_bytes() == (rig.payload / "ssh" / "49-bankflow-penalties.conf").read_bytes()
    rig.update_state(sshd_knows_penalties=False)  # e.g. a downgrade: the file would break sshd -t
    run = _ok(rig)
    assert not dropin.exists()


def test_real_sshd_of_this_machine_gets_no_penalties_file_unless_it_knows_them(rig: HostSetupRig) -> None:
    if rig.real_sshd is None:
        unavailable("needs the real sshd")
    import subprocess

    knows = "persourcepenalties" in subprocess.run(
        [rig.real_sshd, "-T", "-f", "/dev/null", "-h", str(rig.sshd_host_key)],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    _ok(rig)
    assert rig.path("/etc/ssh/sshd_config.d/49-bankflow-penalties.conf").exists() == knows


# ------------------------------------------------------------------------------ operators


def test_operators_get_accounts_keys_and_audited_sudo(rig: HostSetupRig) -> None:
    _host_file(rig, "operators", render_operators([ANA, BRUNO]))
    run = _ok(rig)
    state = rig.state()
    assert set(state["groups"]["bankflow-ops"]) == {"ana", "bruno"}
    for operator in (ANA, BRUNO):
        keys = rig.path(f"/home/{operator.name}/.ssh/authorized_keys")
        assert keys.read_text() == operator.public_key + "\n"
        assert mode_of(keys) == 0o644
        assert mode_of(keys.parent) == 0o755  # root's (when run as root): the operator cannot add keys
    sudoers = rig.path("/etc/sudoers.d/bankflow-operators")
    assert mode_of(sudoers) == 0o440
    text = sudoers.read_text()
    assert "Defaults:%bankflow-ops log_input, log_output, iolog_dir=/var/log/sudo-io/%{user}" in text
    assert "syslog=authpriv" in text
    assert "%bankflow-ops ALL=(ALL:ALL) NOPASSWD: ALL" in text
    # the sudoers file is checked before it is installed
    visudo = next(i for i, c in enumerate(run.commands) if c[0] == "visudo")
    assert visudo < next(i for i, c in enumerate(run.commands) if c[0] == "useradd")
    # a second run changes nothing
    again = _ok(rig)
    assert [line for line in again.changed if "operator" in line or "sudo" in line] == []
    assert not any(c[0] in ("useradd", "usermod", "groupadd", "gpasswd") for c in again.commands)


def test_the_real_visudo_accepts_the_operators_sudoers(rig: HostSetupRig) -> None:
    require_tool("visudo")  # scripts/install-test-tools: sudo
    _host_file(rig, "operators", render_operators([ANA]))
    run = _ok(rig)
    assert any(c[0] == "visudo" and "-c" in c for c in run.commands)
    assert rig.path("/etc/sudoers.d/bankflow-operators").is_file()


def test_an_operator_removed_from_settings_is_retired(rig: HostSetupRig) -> None:
    _host_file(rig, "operators", render_operators([ANA, BRUNO]))
    _ok(rig)
    _host_file(rig, "operators", render_operators([ANA]))
    run = _ok(rig)
    assert ["usermod", "--expiredate", "1", "bruno"] in run.commands
    assert rig.state()["groups"]["bankflow-ops"] == ["ana"]
    assert not rig.path("/home/bruno/.ssh/authorized_keys").exists()
    assert rig.path("/home/bruno").is_dir(), "the home directory stays for the audit"
    # listed again: the account works again
    _host_file(rig, "operators", render_operators([ANA, BRUNO]))
    run = _ok(rig)
    assert ["usermod", "--expiredate", "", "bruno"] in run.commands
    assert rig.path("/home/bruno/.ssh/authorized_keys").read_text() == BRUNO.public_key + "\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Ana " + ANA.public_key, "'Ana' is not an account name"),
        ("root " + ANA.public_key, "root is not an operator account"),
        ("ana ecdsa-sha2-nistp256 AAAAE2VjZHNh ana", "the key of 'ana' is not"),
        (f"ana {ANA.public_key}\nana {BRUNO.public_key}", "'ana' is listed twice"),
    ],
    ids=["upper-case", "root", "ecdsa", "twice"],
)
def test_bad_operators_file_changes_nothing(rig: HostSetupRig, line: str, message: str) -> None:
    _host_file(rig, "operators", line + "\n")
    run = _failed(rig, message)
    assert not any(c[0] in ("useradd", "groupadd", "visudo") for c in run.commands)
    assert not rig.path("/etc/sudoers.d/bankflow-operators").exists()


def test_a_sudoers_file_visudo_rejects_is_not_installed(rig: HostSetupRig) -> None:
    _host_file(rig, "operators", render_operators([ANA]))
    rig.update_state(visudo_rejects=True)
    run = rig.run(STANDIN_REAL_VISUDO="")
    assert run.returncode != 0
    assert "visudo rejected" in run.stderr
    assert not rig.path("/etc/sudoers.d/bankflow-operators").exists()
    assert not any(c[0] == "useradd" for c in run.commands)


# ------------------------------------------------------------------------------ host firewall


def _ufw(run: Run) -> list[list[str]]:
    return [c[1:] for c in run.commands if c[0] == "ufw"]


def test_ufw_admits_ssh_from_the_operators_ranges_and_web_from_cloudflare_only(rig: HostSetupRig) -> None:
    _host_file(rig, "firewall-allow", render_firewall_allow(SSH_CIDRS, CLOUDFLARE))
    run = _ok(rig)
    rules = set(rig.state()["ufw"]["rules"])
    expected = {f"proto tcp from {cidr} to any port 22" for cidr in SSH_CIDRS} | {
        f"proto tcp from {cidr} to any port {port}"
        for port in (80, 443)
        for cidr in (*CLOUDFLARE.ipv4, *CLOUDFLARE.ipv6)
    }
    assert rules == expected  # nothing from anywhere
    ufw = _ufw(run)
    first_allow = next(i for i, c in enumerate(ufw) if c[0] == "allow")
    assert first_allow < ufw.index(["--force", "enable"])
    assert all(c[-2:] == ["comment", "bankflow"] for c in ufw if c[0] == "allow")
    assert _ufw(_ok(rig)) == [["show", "added"], ["status"]], "a second run only reads"


def test_ufw_moves_from_the_old_open_rules_without_a_gap(rig: HostSetupRig) -> None:
    _ok(rig)  # today's host: 22, 80, 443/tcp from anywhere
    assert {"22/tcp", "80/tcp", "443/tcp"} <= set(rig.state()["ufw"]["rules"])
    _host_file(rig, "firewall-allow", render_firewall_allow(SSH_CIDRS, CLOUDFLARE))
    run = _ok(rig)
    ufw = _ufw(run)
    last_allow = max(i for i, c in enumerate(ufw) if c[0] == "allow")
    assert ufw.index(["delete", "allow", "22/tcp"]) > last_allow, "sourced rules first, then the open ones go"
    assert not {"22/tcp", "80/tcp", "443/tcp"} & set(rig.state()["ufw"]["rules"])


def test_ufw_drops_a_range_that_left_the_settings(rig: HostSetupRig) -> None:
    _host_file(rig, "firewall-allow", render_firewall_allow(SSH_CIDRS, CLOUDFLARE))
    _ok(rig)
    _host_file(rig, "firewall-allow", render_firewall_allow(("198.51.100.0/24",), CLOUDFLARE))
    run = _ok(rig)
    ufw = _ufw(run)
    added = ufw.index(["allow", "proto", "tcp", "from", "198.51.100.0/24", "to", "any", "port", "22",
                       "comment", "bankflow"])  # fmt: skip
    removed = ufw.index(
        ["delete", "allow", "proto", "tcp", "from", "203.0.113.0/24", "to", "any", "port", "22"]
    )
    assert added < removed
    ssh_rules = {r for r in rig.state()["ufw"]["rules"] if r.endswith("port 22")}
    assert ssh_rules == {"proto tcp from 198.51.100.0/24 to any port 22"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("80/tcp 173.245.48.0/20\n", "admits no address to 22/tcp"),
        ("22/tcp 0.0.0.0/0\n", "opens the port to everyone"),
        ("22/tcp 203.0.113.0/24\n5432/tcp 10.0.0.0/8\n", "must be 22/tcp, 80/tcp, 443/tcp or 8404/tcp"),
        ("22/tcp 203.0.113.0/24;reboot\n", "is not an IPv4 or IPv6 CIDR"),
    ],
    ids=["no-ssh", "everyone", "other-port", "injection"],
)
def test_bad_firewall_file_changes_nothing(rig: HostSetupRig, text: str, message: str) -> None:
    _ok(rig)
    _host_file(rig, "firewall-allow", text)
    run = _failed(rig, message)
    assert not any(c[0] == "ufw" and c[1] in ("allow", "delete") for c in run.commands)


def test_docker_published_web_ports_are_filtered_in_docker_user(rig: HostSetupRig) -> None:
    _host_file(rig, "firewall-allow", render_firewall_allow(SSH_CIDRS, CLOUDFLARE))
    run = _ok(rig)
    rules = [rule for chain, rule in rig.state()["rules"] if chain == WEB_INGRESS]
    assert rules == [
        "-i docker0 -j RETURN",
        "-i br-+ -j RETURN",
        "-s 103.21.244.0/22 -j RETURN",
        "-s 173.245.48.0/20 -j RETURN",
        "-j DROP",
    ]
    jumps = [rule for chain, rule in rig.state()["rules"] if chain == "DOCKER-USER" and WEB_INGRESS in rule]
    assert sorted(jumps) == [
        f"-p tcp -m conntrack --ctstate NEW --ctorigdstport {port} -j {WEB_INGRESS}" for port in (443, 80)
    ]
    unit = rig.path("/etc/systemd/system/bankflow-web-ingress.service").read_text()
    assert "Before=docker.service" in unit
    assert "ExecStart=/usr/local/sbin/bankflow-web-ingress" in unit
    assert ["systemctl", "enable", "bankflow-web-ingress.service"] in run.commands
    assert "--noflush" in next(c for c in run.commands if c[0] == "iptables-restore")
    again = _ok(rig)
    assert not any(c[0] == "iptables-restore" for c in again.commands)
    assert again.mutating() == []


def test_load_balanced_host_admits_443_and_the_health_port_from_the_vpc_only(rig: HostSetupRig) -> None:
    # issue 13: the load balancer connects from the VPC; Docker publishes 80, 443 and the health port
    _host_file(rig, "firewall-allow", render_firewall_allow(SSH_CIDRS, CLOUDFLARE, VPC))
    run = _ok(rig)
    rules = set(rig.state()["ufw"]["rules"])
    assert rules == {f"proto tcp from {cidr} to any port 22" for cidr in SSH_CIDRS} | {
        f"proto tcp from {VPC} to any port {port}" for port in (443, LB_HEALTH_PORT)
    }
    chain = [rule for chain, rule in rig.state()["rules"] if chain == WEB_INGRESS]
    assert chain == ["-i docker0 -j RETURN", "-i br-+ -j RETURN", f"-s {VPC} -j RETURN", "-j DROP"]
    jumps = [rule for chain, rule in rig.state()["rules"] if chain == "DOCKER-USER" and WEB_INGRESS in rule]
    assert sorted(jumps) == sorted(
        f"-p tcp -m conntrack --ctstate NEW --ctorigdstport {port} -j {WEB_INGRESS}"
        for port in (80, 443, LB_HEALTH_PORT)
    )
    script = rig.path("/usr/local/sbin/bankflow-web-ingress").read_text()
    assert f"for port in 80 443 {LB_HEALTH_PORT}; do" in script
    assert _ok(rig).mutating() == []
    assert "changed: ufw" in "\n".join(run.lines)


def test_single_droplet_web_ingress_script_is_as_before(rig: HostSetupRig) -> None:
    _host_file(rig, "firewall-allow", render_firewall_allow(SSH_CIDRS, CLOUDFLARE))
    _ok(rig)
    assert "for port in 80 443; do" in rig.path("/usr/local/sbin/bankflow-web-ingress").read_text()


def test_the_scripts_health_port_is_the_contracts() -> None:
    script = SCRIPT.read_text()
    assert f"readonly LB_HEALTH_PORT={LB_HEALTH_PORT}\n" in script


# ------------------------------------------------------------------------------ the renderer


def test_rendered_firewall_file_lists_every_source() -> None:
    text = render_firewall_allow(SSH_CIDRS, CLOUDFLARE)
    rules = [line for line in text.splitlines() if not line.startswith("#")]
    assert rules[:2] == ["22/tcp 203.0.113.0/24", "22/tcp 2001:db8:1::/48"]
    assert len(rules) == 2 + 2 * 3


@pytest.mark.parametrize(
    ("ssh", "cloudflare", "message"),
    [
        ((), CLOUDFLARE, "server.sshAllowedCidrs: empty"),
        (("0.0.0.0/0",), CLOUDFLARE, "would open port 22 to every address"),
        (SSH_CIDRS, CloudflareRanges(ipv4=(), ipv6=()), "cloudflare.ipv4: empty"),
    ],
)
def test_renderer_refuses_what_would_lock_out_or_open_up(
    ssh: tuple[str, ...], cloudflare: CloudflareRanges, message: str
) -> None:
    with pytest.raises(BundleInputError, match=message.replace(".", r"\.")):
        render_firewall_allow(ssh, cloudflare)


def test_host_rules_are_the_cloud_firewalls_tcp_rules() -> None:
    # The same inputs the program gives the DigitalOcean firewall (planned under the mock engine,
    # with its Cloudflare snapshot) render the same sources per port for the host firewall.
    from bankflow_infra.ops.mocks import CLOUDFLARE_IPV4_SNAPSHOT, CLOUDFLARE_IPV6_SNAPSHOT
    from tests.program.stacks import FIREWALL, inputs, only, stack_config, staging

    cloud_rules = inputs(only(staging(), FIREWALL))["inboundRules"]
    cloud = {
        (r["portRange"], cidr) for r in cloud_rules if r["protocol"] == "tcp" for cidr in r["sourceAddresses"]
    }
    ssh_cidrs = stack_config("staging")["bankflow:server"]["sshAllowedCidrs"]
    text = render_firewall_allow(
        ssh_cidrs, CloudflareRanges(CLOUDFLARE_IPV4_SNAPSHOT, CLOUDFLARE_IPV6_SNAPSHOT)
    )
    host = {
        (port.removesuffix("/tcp"), cidr)
        for port, cidr in (line.split() for line in text.splitlines() if not line.startswith("#"))
    }
    assert host == cloud
