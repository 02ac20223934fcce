#!/usr/bin/env bash
# BankFlow host setup: the idempotent configuration of a droplet (Ubuntu 24.04 LTS "noble"), run
# as root over SSH by the Pulumi bootstrap command, and safe to run again at any time.
#
# Every step checks before it acts and prints one line:
#   ok: <step>        nothing to do
#   changed: <step>   it changed the host
# The last line is "host-setup: no changes" or "host-setup: N change(s)". Any failure exits
# non-zero with "host-setup: error: ..." on stderr, which fails `pulumi up`.
#
# Usage:  host-setup.sh [PAYLOAD_DIR]
#         host-setup.sh --print-config [PAYLOAD_DIR]   (print the resolved settings and exit)
#
# PAYLOAD_DIR is the unpacked bootstrap payload (bankflow_infra/render/remote_payloads.py):
#   ssh/50-bankflow-hardening.conf   the sshd drop-in (files/ssh/)
#   ssh/authorized_keys              root's keys: the deploy key (optional); every key in it is
#                                    installed as restrict,command="<dispatcher>" (see step_authorized_keys)
#   ssh/bankflow-ssh-dispatch        the deploy key's forced command -> /usr/local/sbin/ (required
#                                    with ssh/authorized_keys: without it root would be locked out)
#   ssh/49-bankflow-penalties.conf   sshd PerSourcePenalties drop-in (optional; installed only when
#                                    this host's sshd knows the keyword: OpenSSH >= 9.8)
#   host/operators                   named operator accounts, "NAME KEYTYPE KEY [COMMENT]" a line
#                                    (optional; server.operators, bankflow_infra/render/host_access.py):
#                                    sudo, every command audited
#   host/firewall-allow              host firewall, "PORT/tcp CIDR" a line (optional; render/host_access.py;
#                                    without it the old rules stay: 22, 80, 443/tcp from anywhere)
#   volume/*.sh                      the data-volume scripts the deploy key may run (optional): their
#                                    sha256 go to /etc/bankflow/ssh-dispatch-scripts.sha256
#   host/daemon.json                 -> /etc/docker/daemon.json        (docker restarted on change)
#   host/logrotate-bankflow          -> /etc/logrotate.d/bankflow
#   host/bankflow-backup.service     -> /etc/systemd/system/           (daemon-reload on change)
#   host/bankflow-backup.timer       -> /etc/systemd/system/           (enabled and started)
#   host/bankflow-uploads-backup.{service,timer}  -> /etc/systemd/system/  (optional: rendered only
#                                    when the stack has an uploads repository password; enabled)
#   host/service-log-dirs            "<service> <uid> <dir>" lines: one log directory per service,
#                                    owned by that uid (issue 12; optional: older bundles have none)
#   host/logrotate-access-logs       -> /etc/bankflow/logrotate-access-logs  (optional, with the pair:)
#   host/bankflow-access-logs.{service,timer}  -> /etc/systemd/system/  (nginx's access log rotated
#                                    hourly and shipped to the backups bucket; enabled)
#   agent/...                        -> $BANKFLOW_BIN_DIR/... (the host agent; optional)
# Environment (no value here is secret):
#   BANKFLOW_HOME, BANKFLOW_{BIN,RELEASES,NGINX,SECRETS,STATE,LOGS,UPLOADS,BACKUPS}_DIR
#                        required, no default: the host layout, passed by the bootstrap command
#                        (bankflow_infra/contract/layout.py bootstrap_environment()), so the tree
#                        is written down in one place only
#   BANKFLOW_SWAP_GB=2   swap file size when the droplet has < 4 GiB RAM; 0 = no swap
#   BANKFLOW_DATA_VOLUME_LABEL   filesystem label of the attached data volume (production:
#                        bankflow-data); when set, it is mounted at BANKFLOW_DATA_VOLUME_MOUNT
#                        (then required: contract/layout.py DATA_VOLUME_MOUNT) through
#                        /etc/fstab, with postgres/ (0700, uid 70); the uploads move onto it
#                        (bankflow-agent uploads-migrate: BANKFLOW_UPLOADS_DIR becomes a symlink to
#                        <mount>/uploads; the root disk's tree is kept as uploads.root-disk)
#   BANKFLOW_UPLOADS_NFS_SOURCE  "<host>:/<path>" of the stack's Network File Storage share (issue 13:
#                        uploads.shared; several app droplets write the same uploads): mounted at
#                        BANKFLOW_UPLOADS_DIR through /etc/fstab, before any container, and Docker
#                        requires that mount (a droplet whose share is missing runs no app, so no
#                        upload is ever written to its own disk). Unset: the uploads stay as before
#                        (the root disk, or the data volume)
#   BANKFLOW_SSHD_DROPIN, BANKFLOW_HOST_FILES, BANKFLOW_AUTHORIZED_KEYS, BANKFLOW_AGENT_DIR,
#   BANKFLOW_SSH_DISPATCH, BANKFLOW_OPERATORS, BANKFLOW_FIREWALL_ALLOW
#                        override the payload paths above; BANKFLOW_HOST_FILES=none skips host files
#   BANKFLOW_ROOTFS=     prefix of every path written (tests only; empty = the real /)
#
# Every system tool (apt-get, dpkg-query, curl, gpg, systemctl, ufw, iptables, sshd, dockerd,
# docker, free, fallocate, mkswap, swapon, sysctl, timedatectl, cloud-init, findmnt, mount, getent,
# groupadd, useradd, usermod, visudo) is called by name
# from PATH, so tests/bootstrap/test_host_setup.py can put recording stand-ins first.
set -euo pipefail
umask 022

# --------------------------------------------------------------------------- constants
readonly UBUNTU_CODENAME=noble
# Docker's release signing key (docs.docker.com/engine/install/ubuntu): the downloaded key must
# be exactly this one, so a tampered download cannot become an apt trust anchor.
readonly DOCKER_KEY_URL=https://download.docker.com/linux/ubuntu/gpg
readonly DOCKER_KEY_FINGERPRINT=9DC858229FC7DD38854AE2D88D81803C0EBFCD88
readonly DOCKER_KEYRING=/etc/apt/keyrings/docker.asc
readonly DOCKER_PACKAGES=(docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin)
readonly BASE_PACKAGES=(ca-certificates curl gnupg ufw unattended-upgrades systemd-timesyncd)
readonly METADATA_IP=169.254.169.254
readonly METADATA_UNIT=bankflow-metadata-block.service
readonly SSHD_DROPIN_NAME=50-bankflow-hardening.conf
# OpenSSH >= 9.8 only (Ubuntu 24.04 has 9.6p1): installed when `sshd -T` lists persourcepenalties.
readonly SSHD_PENALTIES_NAME=49-bankflow-penalties.conf
# The deploy key's forced command (files/ssh/bankflow-ssh-dispatch) and what it reads.
readonly SSH_DISPATCH_BIN=/usr/local/sbin/bankflow-ssh-dispatch
readonly SSH_DISPATCH_DIGESTS=/etc/bankflow/ssh-dispatch-scripts.sha256
# ssh-audit's hardening guide (Ubuntu 24.04): Diffie-Hellman group exchange only with >= 3072-bit
# groups; field 5 of /etc/ssh/moduli is the size minus one.
readonly SSH_MODULI=/etc/ssh/moduli
readonly SSH_MODULI_MIN_FIELD=3071
# Operators (server.operators): their group, sudo rule, and the root-owned keys of each account.
readonly OPERATORS_GROUP=bankflow-ops
readonly OPERATORS_SUDOERS=/etc/sudoers.d/bankflow-operators
readonly SUDO_IO_DIR=/var/log/sudo-io
readonly SSH_KEY_LINE_RE='^(ssh-ed25519|sk-ssh-ed25519@openssh\.com|ssh-rsa) [A-Za-z0-9+/=]+( .*)?$'
readonly OPERATOR_NAME_RE='^[a-z][a-z0-9_-]{0,31}$'
# Docker-published ports skip ufw's INPUT chain (Docker DNATs them in PREROUTING and FORWARDs):
# the web ports are filtered again in DOCKER-USER by this chain and unit (step_ufw).
readonly WEB_INGRESS_CHAIN=BANKFLOW-WEB-INGRESS
# The load balancer's health check listener (contract/fleet.py LB_HEALTH_PORT; a test checks they
# agree): published by Docker on a load-balanced droplet, admitted from the VPC range only.
readonly LB_HEALTH_PORT=8404
readonly WEB_INGRESS_UNIT=bankflow-web-ingress.service
readonly WEB_INGRESS_SCRIPT=/usr/local/sbin/bankflow-web-ingress
readonly FIREWALL_APPLIED=/etc/bankflow/ufw-allow.applied
readonly SWAP_FILE=/swapfile
readonly SWAP_RAM_THRESHOLD=$((4 * 1024 * 1024 * 1024))
readonly HOST_FILE_NAMES=(daemon.json logrotate-bankflow bankflow-backup.service bankflow-backup.timer
  bankflow-backup-watch.service bankflow-backup-watch.timer)
# The host agent's backup client (bankflow_infra/render/backup.py: why rclone).
readonly BACKUP_PACKAGES=(rclone)
# The uploads' backup client (bankflow_infra/render/uploads_backup.py: why restic).
readonly UPLOADS_BACKUP_PACKAGES=(restic)
# postgres:15-alpine runs PostgreSQL as uid/gid 70; its data dir must be that user's, mode 0700.
readonly POSTGRES_UID=70
# The uploads tree's group (catalog.UPLOADS_GID, checked by a test): saas and api both write it as
# their own uids with this group (issue 12: no container runs as root).
readonly UPLOADS_GID=10000
# issue 13: the shared uploads (NFS). hard: an outage blocks writes until the share is back instead
# of failing them halfway (a soft mount may return EIO mid-file); _netdev: mounted once the
# network is up; nofail: a missing share never stops the droplet from booting (sshd stays
# reachable) -- Docker's RequiresMountsFor drop-in keeps the apps down instead.
readonly UPLOADS_NFS_FS=nfs
readonly UPLOADS_NFS_OPTIONS=vers=4.1,hard,noatime,_netdev,nofail
readonly UPLOADS_NFS_PACKAGES=(nfs-common)
readonly DOCKER_UPLOADS_DROPIN=/etc/systemd/system/docker.service.d/bankflow-uploads-share.conf
readonly NFS_SOURCE_RE='^[A-Za-z0-9.-]{1,253}:/[A-Za-z0-9._/-]{0,255}$'
readonly DATA_VOLUME_FS=ext4
readonly DATA_VOLUME_OPTIONS=defaults,nofail,discard
# issue 12: per-service log directories and the access-log shipping (render/host_files.py)
readonly SERVICE_LOG_DIRS_FILE=service-log-dirs
readonly ACCESS_LOGROTATE_FILE=logrotate-access-logs
readonly ACCESS_LOGROTATE_DEST=/etc/bankflow/logrotate-access-logs

# --------------------------------------------------------------------------- arguments
print_config=0
if [[ ${1:-} == --print-config ]]; then
  print_config=1
  shift
fi
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi
payload=${1:-}
[[ $# -le 1 ]] || { echo "host-setup: error: expected at most one argument (the payload dir)" >&2; exit 2; }
script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

ROOTFS=${BANKFLOW_ROOTFS:-}
ROOTFS=${ROOTFS%/}
# The host layout comes only from the caller: a default here would be a second copy of it.
layout_vars=(BANKFLOW_HOME BANKFLOW_BIN_DIR BANKFLOW_RELEASES_DIR BANKFLOW_NGINX_DIR BANKFLOW_SECRETS_DIR
  BANKFLOW_STATE_DIR BANKFLOW_LOGS_DIR BANKFLOW_UPLOADS_DIR BANKFLOW_BACKUPS_DIR)
unset_layout=()
for name in "${layout_vars[@]}"; do
  [[ -n ${!name:-} ]] || unset_layout+=("$name")
done
if [[ -n ${BANKFLOW_DATA_VOLUME_LABEL:-} && -z ${BANKFLOW_DATA_VOLUME_MOUNT:-} ]]; then
  unset_layout+=(BANKFLOW_DATA_VOLUME_MOUNT)
fi
if ((${#unset_layout[@]})); then
  echo "host-setup: error: not set: ${unset_layout[*]} (the bootstrap command passes the host layout:" \
    "bankflow_infra/contract/layout.py bootstrap_environment())" >&2
  exit 2
fi
HOME_DIR=$BANKFLOW_HOME
BIN_DIR=$BANKFLOW_BIN_DIR
RELEASES_DIR=$BANKFLOW_RELEASES_DIR
NGINX_DIR=$BANKFLOW_NGINX_DIR
SECRETS_DIR=$BANKFLOW_SECRETS_DIR
STATE_DIR=$BANKFLOW_STATE_DIR
LOGS_DIR=$BANKFLOW_LOGS_DIR
UPLOADS_DIR=$BANKFLOW_UPLOADS_DIR
BACKUPS_DIR=$BANKFLOW_BACKUPS_DIR
SWAP_GB=${BANKFLOW_SWAP_GB:-2}
DATA_VOLUME_LABEL=${BANKFLOW_DATA_VOLUME_LABEL:-}
DATA_VOLUME_MOUNT=${BANKFLOW_DATA_VOLUME_MOUNT:-}
UPLOADS_NFS_SOURCE=${BANKFLOW_UPLOADS_NFS_SOURCE:-}
if [[ -n $UPLOADS_NFS_SOURCE && ! $UPLOADS_NFS_SOURCE =~ $NFS_SOURCE_RE ]]; then
  echo "host-setup: error: BANKFLOW_UPLOADS_NFS_SOURCE='$UPLOADS_NFS_SOURCE' is not '<host>:/<path>'" \
    "(the Network File Storage share's address and mount path)" >&2
  exit 2
fi

first_existing() {
  local candidate
  for candidate in "$@"; do
    if [[ -n $candidate && -e $candidate ]]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  printf '%s\n' "$1"
}
if [[ -n $payload ]]; then
  SSHD_DROPIN=${BANKFLOW_SSHD_DROPIN:-$payload/ssh/$SSHD_DROPIN_NAME}
  HOST_FILES=${BANKFLOW_HOST_FILES:-$payload/host}
  AUTHORIZED_KEYS=${BANKFLOW_AUTHORIZED_KEYS:-$payload/ssh/authorized_keys}
  AGENT_DIR=${BANKFLOW_AGENT_DIR:-$payload/agent}
  SSH_DISPATCH=${BANKFLOW_SSH_DISPATCH:-$payload/ssh/bankflow-ssh-dispatch}
  OPERATORS=${BANKFLOW_OPERATORS:-$payload/host/operators}
  FIREWALL_ALLOW=${BANKFLOW_FIREWALL_ALLOW:-$payload/host/firewall-allow}
else
  # Run from a checkout or a copied pair of files: the drop-in next to the script or in ../ssh.
  SSHD_DROPIN=${BANKFLOW_SSHD_DROPIN:-$(first_existing "$script_dir/$SSHD_DROPIN_NAME" \
    "$script_dir/../ssh/$SSHD_DROPIN_NAME")}
  HOST_FILES=${BANKFLOW_HOST_FILES:-}
  AUTHORIZED_KEYS=${BANKFLOW_AUTHORIZED_KEYS:-}
  AGENT_DIR=${BANKFLOW_AGENT_DIR:-}
  SSH_DISPATCH=${BANKFLOW_SSH_DISPATCH:-$(first_existing "$script_dir/bankflow-ssh-dispatch" \
    "$script_dir/../ssh/bankflow-ssh-dispatch")}
  OPERATORS=${BANKFLOW_OPERATORS:-}
  FIREWALL_ALLOW=${BANKFLOW_FIREWALL_ALLOW:-}
fi
# Beside the sshd drop-in: the penalties drop-in; beside the payload's ssh/: its volume/ scripts.
SSHD_PENALTIES=$(dirname -- "$SSHD_DROPIN")/$SSHD_PENALTIES_NAME
VOLUME_SCRIPTS_DIR=${payload:+$payload/volume}

if ((print_config)); then
  for name in ROOTFS HOME_DIR BIN_DIR RELEASES_DIR NGINX_DIR SECRETS_DIR STATE_DIR LOGS_DIR UPLOADS_DIR \
    BACKUPS_DIR SWAP_GB DATA_VOLUME_LABEL DATA_VOLUME_MOUNT SSHD_DROPIN HOST_FILES AUTHORIZED_KEYS AGENT_DIR \
    SSH_DISPATCH OPERATORS FIREWALL_ALLOW; do
    printf '%s=%s\n' "$name" "${!name}"
  done
  exit 0
fi

# --------------------------------------------------------------------------- helpers
changes=0
ok() { printf 'ok: %s\n' "$*"; }
changed() {
  printf 'changed: %s\n' "$*"
  changes=$((changes + 1))
}
die() {
  printf 'host-setup: error: %s\n' "$*" >&2
  exit 1
}
# "a, b, c"
joined() {
  local out
  printf -v out '%s, ' "$@"
  printf '%s' "${out%, }"
}
# The path of an absolute host path inside the target root filesystem.
target() { printf '%s%s' "$ROOTFS" "$1"; }

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

# sync_file SRC DEST MODE: make DEST (a target path) a copy of SRC with MODE, owned by the caller
# (root on the droplet), via a temporary file and an atomic rename. Sets FILE_CHANGED=1 when it
# wrote, 0 when DEST already had that content and mode. Call it as a plain command (not in an `if`)
# so `set -e` applies inside.
FILE_CHANGED=0
sync_file() {
  local src=$1 dest=$2 mode=$3 tmp
  FILE_CHANGED=0
  [[ -f $src ]] || die "missing input file: $src"
  if [[ -f $dest && ! -L $dest ]] && cmp -s -- "$src" "$dest" && [[ $(stat -c '%a' -- "$dest") == "${mode#0}" ]]; then
    return 0
  fi
  mkdir -p -- "$(dirname -- "$dest")"
  tmp=$(mktemp -- "$dest.bankflow-new.XXXXXX")
  cat -- "$src" >"$tmp"
  chmod -- "$mode" "$tmp"
  mv -f -- "$tmp" "$dest"
  FILE_CHANGED=1
}

# sync_text DEST MODE < text: sync_file with content from stdin.
sync_text() {
  local staged
  staged=$(mktemp -- "$work/text.XXXXXX")
  cat >"$staged"
  sync_file "$staged" "$1" "$2"
}

installed() { [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]; }

apt_updated=0
apt_get() {
  # Unattended: no prompts, keep our/existing conffiles, wait for the apt lock that cloud-init or
  # apt-daily may hold, and let needrestart only list (never restart) services.
  DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l apt-get -q -y \
    -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" </dev/null
}
apt_install() {
  if ((!apt_updated)); then
    apt_get update
    apt_updated=1
  fi
  # --no-remove: fail rather than let a dependency resolution remove anything.
  apt_get install --no-remove "$@"
}

unit_enabled_and_active() {
  systemctl is-enabled --quiet "$1" && systemctl is-active --quiet "$1"
}

# --------------------------------------------------------------------------- preconditions
[[ -n $ROOTFS || $(id -u) -eq 0 ]] || die "must run as root"
[[ $SWAP_GB =~ ^[0-9]+$ ]] || die "BANKFLOW_SWAP_GB must be a whole number of GiB, got '$SWAP_GB'"
# ext4 labels are at most 16 bytes; the label and mount point end up in /etc/fstab, so no spaces.
[[ -z $DATA_VOLUME_LABEL || $DATA_VOLUME_LABEL =~ ^[A-Za-z0-9_-]{1,16}$ ]] ||
  die "BANKFLOW_DATA_VOLUME_LABEL must be 1-16 characters of A-Z a-z 0-9 _ -, got '$DATA_VOLUME_LABEL'"
[[ -z $DATA_VOLUME_LABEL ||
  ($DATA_VOLUME_MOUNT =~ ^/[A-Za-z0-9_./-]+$ && $DATA_VOLUME_MOUNT != / && $DATA_VOLUME_MOUNT != *..*) ]] ||
  die "BANKFLOW_DATA_VOLUME_MOUNT must be an absolute path, got '$DATA_VOLUME_MOUNT'"
[[ -f $SSHD_DROPIN ]] || die "sshd drop-in not found: $SSHD_DROPIN (set BANKFLOW_SSHD_DROPIN)"
# root's keys get the dispatcher as their forced command: installing them without it locks root out.
[[ -z $AUTHORIZED_KEYS || ! -f $AUTHORIZED_KEYS || -f $SSH_DISPATCH ]] ||
  die "the deploy key's forced command is missing: $SSH_DISPATCH (the payload's ssh/bankflow-ssh-dispatch)"
if [[ $HOST_FILES != none ]]; then
  [[ -n $HOST_FILES ]] || die "BANKFLOW_HOST_FILES is required (the bundle's host/ directory; 'none' skips)"
  for name in "${HOST_FILE_NAMES[@]}"; do
    [[ -f $HOST_FILES/$name ]] || die "host file missing: $HOST_FILES/$name"
  done
fi
if [[ -n $ROOTFS ]]; then
  echo "host-setup: target root filesystem $ROOTFS (test mode)"
fi

# One run at a time (a manual run must not interleave with the Pulumi bootstrap).
mkdir -p -- "$(target /run/lock)"
exec 9>>"$(target /run/lock/bankflow-host-setup.lock)"
flock -w 600 9 || die "another host-setup run holds the lock"

# --------------------------------------------------------------------------- steps

step_os() {
  local id="" codename=""
  if [[ -r $(target /etc/os-release) ]]; then
    # shellcheck disable=SC1090,SC1091
    id=$(. "$(target /etc/os-release)" && printf '%s' "${ID:-}")
    # shellcheck disable=SC1090,SC1091
    codename=$(. "$(target /etc/os-release)" && printf '%s' "${VERSION_CODENAME:-}")
  fi
  [[ $id == ubuntu && $codename == "$UBUNTU_CODENAME" ]] ||
    die "supports Ubuntu 24.04 ($UBUNTU_CODENAME) only, found '${id:-?} ${codename:-?}'"
  ok "operating system ubuntu $codename"
}

step_cloud_init() {
  # The droplet's first boot installs the pinned host key and may hold the apt lock: wait for it.
  # Exit code 2 means "done, degraded" (a non-fatal module warning) and is accepted.
  if ! command -v cloud-init >/dev/null 2>&1; then
    ok "cloud-init (not installed)"
    return
  fi
  local rc=0
  cloud-init status --wait >/dev/null || rc=$?
  case $rc in
    0) ok "cloud-init finished" ;;
    2) ok "cloud-init finished (degraded; see cloud-init status --long)" ;;
    *) die "cloud-init status --wait exited $rc" ;;
  esac
}

step_base_packages() {
  local missing=() package
  for package in "${BASE_PACKAGES[@]}"; do
    installed "$package" || missing+=("$package")
  done
  if ((${#missing[@]} == 0)); then
    ok "base packages"
    return
  fi
  apt_install "${missing[@]}"
  changed "base packages (installed ${missing[*]})"
}

docker_key_fingerprint() {
  # Fingerprint(s) of the primary key(s) in an armored key file, one per line.
  local home
  home=$(mktemp -d -- "$work/gnupg.XXXXXX")
  gpg --homedir "$home" --batch --quiet --show-keys --with-colons -- "$1" 2>/dev/null |
    awk -F: '$1 == "pub" { primary = 1; next } $1 == "fpr" && primary { print $10; primary = 0 }'
}

step_docker_keyring() {
  local keyring
  keyring=$(target "$DOCKER_KEYRING")
  if [[ -f $keyring && $(docker_key_fingerprint "$keyring") == "$DOCKER_KEY_FINGERPRINT" ]]; then
    ok "docker apt key ($DOCKER_KEYRING)"
    return
  fi
  local download="$work/docker.asc"
  curl -fsSL --proto '=https' --tlsv1.2 --retry 3 -o "$download" "$DOCKER_KEY_URL"
  local got
  got=$(docker_key_fingerprint "$download")
  [[ $got == "$DOCKER_KEY_FINGERPRINT" ]] ||
    die "the key from $DOCKER_KEY_URL has fingerprint '${got//$'\n'/ }', expected $DOCKER_KEY_FINGERPRINT"
  mkdir -p -- "$(dirname -- "$keyring")"
  chmod 0755 -- "$(dirname -- "$keyring")"
  sync_file "$download" "$keyring" 0644
  changed "docker apt key ($DOCKER_KEYRING, fingerprint $DOCKER_KEY_FINGERPRINT)"
}

step_docker_repo() {
  local arch
  arch=$(dpkg --print-architecture)
  printf 'deb [arch=%s signed-by=%s] https://download.docker.com/linux/ubuntu %s stable\n' \
    "$arch" "$DOCKER_KEYRING" "$UBUNTU_CODENAME" | sync_text "$(target /etc/apt/sources.list.d/docker.list)" 0644
  if ((FILE_CHANGED)); then
    apt_updated=0 # the new source must be fetched before installing from it
    changed "docker apt repository ($UBUNTU_CODENAME stable)"
  else
    ok "docker apt repository ($UBUNTU_CODENAME stable)"
  fi
}

step_docker_packages() {
  local missing=() package
  for package in "${DOCKER_PACKAGES[@]}"; do
    installed "$package" || missing+=("$package")
  done
  if ((${#missing[@]} == 0)); then
    ok "docker engine and compose plugin"
  else
    apt_install "${missing[@]}"
    changed "docker engine and compose plugin (installed ${missing[*]})"
  fi
  if unit_enabled_and_active docker.service; then
    ok "docker service enabled and running"
  else
    systemctl enable --now docker.service
    changed "docker service enabled and running"
  fi
}

step_directories() {
  # mode owner-policy path. "strict": mode and root ownership are enforced on every run (money
  # data and credentials). "create": created with that mode when missing, then left alone (the
  # host agent may hand uploads/logs to the containers' users).
  local specs=(
    "0755 create $HOME_DIR" "0755 create $BIN_DIR" "0750 create $RELEASES_DIR" "0755 create $NGINX_DIR"
    "0700 strict $SECRETS_DIR" "0750 create $STATE_DIR" "0755 create $LOGS_DIR" "0755 create $UPLOADS_DIR"
    "0700 strict $BACKUPS_DIR"
  )
  local spec mode policy dir path did=()
  for spec in "${specs[@]}"; do
    read -r mode policy dir <<<"$spec"
    path=$(target "$dir")
    if [[ ! -d $path ]]; then
      mkdir -p -- "$path"
      chmod -- "$mode" "$path"
      did+=("$dir")
    elif [[ $policy == strict ]]; then
      local want="${mode#0}" have
      have=$(stat -c '%a' -- "$path")
      if [[ $(id -u) -eq 0 && $(stat -c '%u:%g' -- "$path") != 0:0 ]]; then
        chown 0:0 -- "$path"
        did+=("$dir (owner)")
      fi
      if [[ $have != "$want" ]]; then
        chmod -- "$mode" "$path"
        did+=("$dir (mode $have -> $want)")
      fi
    fi
  done
  if ((${#did[@]} == 0)); then
    ok "bankflow directories under $HOME_DIR"
  else
    changed "bankflow directories: $(joined "${did[@]}")"
  fi
}

# firewall_rules: the payload's firewall/allow as sorted "PORT CIDR" lines, validated; dies on the
# first bad line and when no rule admits SSH (enabling ufw would lock every session out).
firewall_rules() {
  local line port cidr rules=() ssh=0
  while IFS= read -r line || [[ -n $line ]]; do
    [[ -z $line || $line == \#* ]] && continue
    read -r port cidr <<<"$line"
    [[ $port =~ ^(22|80|443|$LB_HEALTH_PORT)/tcp$ ]] ||
      die "$FIREWALL_ALLOW: '$line': the port must be 22/tcp, 80/tcp, 443/tcp or $LB_HEALTH_PORT/tcp"
    [[ $cidr =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$ || $cidr =~ ^[0-9a-fA-F:]+:[0-9a-fA-F:]*/[0-9]{1,3}$ ]] ||
      die "$FIREWALL_ALLOW: '$line': '$cidr' is not an IPv4 or IPv6 CIDR"
    [[ $cidr != 0.0.0.0/0 && $cidr != ::/0 ]] || die "$FIREWALL_ALLOW: '$line' opens the port to everyone"
    [[ $port != 22/tcp ]] || ssh=1
    rules+=("${port%/tcp} $cidr")
  done <"$FIREWALL_ALLOW"
  ((ssh)) || die "$FIREWALL_ALLOW admits no address to 22/tcp: enabling the firewall would lock SSH out"
  printf '%s\n' "${rules[@]}" | LC_ALL=C sort -u
}

ufw_rule() { # ufw_rule allow|delete PORT CIDR
  if [[ $1 == allow ]]; then
    ufw allow proto tcp from "$3" to any port "$2" comment bankflow >/dev/null
  else
    ufw delete allow proto tcp from "$3" to any port "$2" >/dev/null
  fi
}

step_ufw() {
  # Second layer behind the DigitalOcean cloud firewall, with the same sources: 22 only from
  # server.sshAllowedCidrs, 80/443 only from Cloudflare's ranges (the payload's host/firewall-allow,
  # rendered from the list the program also gives the cloud firewall and nginx's realip). New
  # rules go in before old ones go and before enabling, so a run over SSH never locks its session
  # out. Docker-published ports skip these INPUT rules: step_web_ingress filters them again.
  local did=()
  if ! grep -qx 'DEFAULT_INPUT_POLICY="DROP"' "$(target /etc/default/ufw)" 2>/dev/null; then
    ufw default deny incoming >/dev/null
    did+=("default deny incoming")
  fi
  local added port
  added=$(ufw show added)
  if [[ -n $FIREWALL_ALLOW && -f $FIREWALL_ALLOW ]]; then
    local desired applied_file applied
    desired=$(firewall_rules)
    applied_file=$(target "$FIREWALL_APPLIED")
    applied=$(cat -- "$applied_file" 2>/dev/null || true)
    if [[ $desired != "$applied" ]]; then
      local rule_port rule_cidr
      while read -r rule_port rule_cidr; do ufw_rule allow "$rule_port" "$rule_cidr"; done <<<"$desired"
      while read -r rule_port rule_cidr; do
        [[ -z $rule_port ]] || grep -qxF -- "$rule_port $rule_cidr" <<<"$desired" ||
          ufw_rule delete "$rule_port" "$rule_cidr"
      done <<<"$applied"
      printf '%s\n' "$desired" | sync_text "$applied_file" 0644
      did+=("$(grep -c . <<<"$desired") source rule(s) for 22, 80, 443/tcp")
    fi
    # The rules from before issue 12 admitted everyone: removed once the sourced ones are in.
    for port in 22 80 443; do
      if grep -qx "ufw allow $port/tcp" <<<"$added"; then
        ufw delete allow "$port/tcp" >/dev/null
        did+=("removed allow $port/tcp from anywhere")
      fi
    done
  else
    for port in 22 80 443; do
      if ! grep -qx "ufw allow $port/tcp" <<<"$added"; then
        ufw allow "$port/tcp" >/dev/null
        did+=("allow $port/tcp")
      fi
    done
  fi
  if ! ufw status | grep -qx 'Status: active'; then
    ufw --force enable >/dev/null
    did+=("enable")
  fi
  local what="ufw (deny incoming; allow 22, 80, 443/tcp from anywhere; active)"
  [[ -z $FIREWALL_ALLOW || ! -f $FIREWALL_ALLOW ]] || what="ufw (deny incoming; 22, 80, 443/tcp from $FIREWALL_ALLOW; active)"
  if ((${#did[@]} == 0)); then
    ok "$what"
  else
    changed "ufw: $(joined "${did[@]}")"
  fi
}

# web_ingress_rules: iptables-restore input for the chain DOCKER-USER sends new connections to the
# published web ports through: containers' own traffic passes, IPv4 sources of firewall-allow's
# 80/443 rules pass, everything else is dropped. Declaring the chain in a --noflush restore
# replaces its rules in one commit: never a moment without them.
web_ingress_rules() {
  local cidr
  printf '*filter\n:%s - [0:0]\n' "$WEB_INGRESS_CHAIN"
  printf -- '-A %s -i docker0 -j RETURN\n-A %s -i br-+ -j RETURN\n' "$WEB_INGRESS_CHAIN" "$WEB_INGRESS_CHAIN"
  while read -r cidr; do
    printf -- '-A %s -s %s -j RETURN\n' "$WEB_INGRESS_CHAIN" "$cidr"
  done < <(awk '$1 != 22 && $2 ~ /^[0-9.]+\/[0-9]+$/ { print $2 }' <<<"$1" | LC_ALL=C sort -u)
  printf -- '-A %s -j DROP\nCOMMIT\n' "$WEB_INGRESS_CHAIN"
}

step_web_ingress() {
  # Ports Docker publishes (nginx's 80/443) are DNATed in PREROUTING and FORWARDed: ufw's INPUT
  # rules never see them. DOCKER-USER, the chain Docker leaves to the administrator, sends new
  # connections whose original destination port is 80 or 443 through WEB_INGRESS_CHAIN. (IPv6:
  # Docker without ip6tables publishes through docker-proxy, a host process, so ufw's INPUT rules
  # above apply.) Persisted like the metadata block: a unit before docker.service restores it.
  if [[ -z $FIREWALL_ALLOW || ! -f $FIREWALL_ALLOW ]]; then
    ok "web ingress filter (no host/firewall-allow in payload)"
    return
  fi
  local rules_file script_file did=() port rules web_ports="80 443"
  rules=$(firewall_rules)
  rules_file=$(target "/etc/bankflow/web-ingress.rules")
  web_ingress_rules "$rules" | sync_text "$rules_file" 0644
  local rules_changed=$FILE_CHANGED
  # Behind a load balancer (issue 13) Docker also publishes its health check port: filtered alike.
  if awk -v p="$LB_HEALTH_PORT" '$1 == p { found = 1 } END { exit !found }' <<<"$rules"; then
    web_ports+=" $LB_HEALTH_PORT"
  fi
  script_file=$(target "$WEB_INGRESS_SCRIPT")
  sync_text "$script_file" 0755 <<EOF
#!/bin/sh
# Installed by BankFlow host-setup.sh: Docker-published web ports only from the edge's ranges.
set -eu
iptables -w -S DOCKER-USER >/dev/null 2>&1 || iptables -w -N DOCKER-USER
iptables-restore -w --noflush /etc/bankflow/web-ingress.rules
for port in $web_ports; do
  iptables -w -C DOCKER-USER -p tcp -m conntrack --ctstate NEW --ctorigdstport "\$port" -j $WEB_INGRESS_CHAIN 2>/dev/null ||
    iptables -w -I DOCKER-USER -p tcp -m conntrack --ctstate NEW --ctorigdstport "\$port" -j $WEB_INGRESS_CHAIN
done
EOF
  if ((FILE_CHANGED)); then did+=("$WEB_INGRESS_SCRIPT"); fi
  sync_text "$(target "/etc/systemd/system/$WEB_INGRESS_UNIT")" 0644 <<EOF
# Installed by BankFlow host-setup.sh: filter Docker-published web ports by source (ufw cannot).
[Unit]
Description=BankFlow: Docker-published 80/443 only from the edge's ranges
After=ufw.service
Before=docker.service
PartOf=docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$WEB_INGRESS_SCRIPT

[Install]
WantedBy=docker.service
EOF
  if ((FILE_CHANGED)); then
    systemctl daemon-reload
    did+=("$WEB_INGRESS_UNIT")
  fi
  if ! systemctl is-enabled --quiet "$WEB_INGRESS_UNIT"; then
    systemctl enable "$WEB_INGRESS_UNIT" >/dev/null 2>&1
    did+=("enabled")
  fi
  # Now, in the kernel (the unit only restores it at boot): the chain, then the jumps to it.
  iptables -w -S DOCKER-USER >/dev/null 2>&1 || iptables -w -N DOCKER-USER
  if ((rules_changed)) || ! iptables -w -S "$WEB_INGRESS_CHAIN" >/dev/null 2>&1; then
    iptables-restore -w --noflush "$rules_file"
    did+=("chain $WEB_INGRESS_CHAIN")
  fi
  for port in $web_ports; do
    if ! iptables -w -C DOCKER-USER -p tcp -m conntrack --ctstate NEW --ctorigdstport "$port" -j "$WEB_INGRESS_CHAIN" 2>/dev/null; then
      iptables -w -I DOCKER-USER -p tcp -m conntrack --ctstate NEW --ctorigdstport "$port" -j "$WEB_INGRESS_CHAIN"
      did+=("DOCKER-USER -> $WEB_INGRESS_CHAIN for $port")
    fi
  done
  if ((${#did[@]})); then changed "web ingress filter: $(joined "${did[@]}")"; else ok "web ingress filter ($WEB_INGRESS_CHAIN)"; fi
}

step_metadata_block() {
  # Containers must not reach the metadata service: it serves user_data, which holds the droplet's
  # SSH host PRIVATE key. DOCKER-USER is the chain Docker reserves for the administrator; it sees
  # all forwarded (= container) traffic and Docker never flushes it. The rule is made persistent
  # by our own unit that runs before docker.service (so no container starts unprotected after a
  # reboot) and again whenever docker restarts (PartOf). Chosen over /etc/ufw/after.rules: that is
  # a conffile of the ufw package and its iptables-restore would have to declare Docker's chain.
  local check=(iptables -w -C DOCKER-USER -d "$METADATA_IP/32" -j DROP)
  sync_text "$(target "/etc/systemd/system/$METADATA_UNIT")" 0644 <<EOF
# Installed by BankFlow host-setup.sh: containers may not reach the cloud metadata service.
[Unit]
Description=BankFlow: block container traffic to $METADATA_IP (cloud metadata)
After=ufw.service
Before=docker.service
PartOf=docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'iptables -w -S DOCKER-USER >/dev/null 2>&1 || iptables -w -N DOCKER-USER; ${check[*]} 2>/dev/null || iptables -w -I DOCKER-USER 1 -d $METADATA_IP/32 -j DROP'

[Install]
WantedBy=docker.service
EOF
  local unit_changed=$FILE_CHANGED
  if ((unit_changed)); then
    systemctl daemon-reload
  fi
  if ((unit_changed)) || ! unit_enabled_and_active "$METADATA_UNIT"; then
    systemctl enable "$METADATA_UNIT" >/dev/null 2>&1
    systemctl restart "$METADATA_UNIT"
    changed "metadata block unit ($METADATA_UNIT)"
  else
    ok "metadata block unit ($METADATA_UNIT)"
  fi
  # The rule itself, checked in the kernel (the unit may be active while someone deleted it).
  if "${check[@]}" 2>/dev/null; then
    ok "DOCKER-USER drops traffic to $METADATA_IP"
  else
    iptables -w -S DOCKER-USER >/dev/null 2>&1 || iptables -w -N DOCKER-USER
    iptables -w -I DOCKER-USER 1 -d "$METADATA_IP/32" -j DROP
    changed "DOCKER-USER drops traffic to $METADATA_IP"
  fi
}

step_host_files() {
  if [[ $HOST_FILES == none ]]; then
    ok "host files skipped (BANKFLOW_HOST_FILES=none)"
    return
  fi
  # Docker daemon defaults (log rotation of every container): validated before it is installed,
  # because a daemon.json that dockerd rejects would keep Docker -- and every service -- down.
  local daemon_json=$HOST_FILES/daemon.json
  dockerd --validate --config-file "$daemon_json" >/dev/null ||
    die "$daemon_json is not a valid Docker daemon configuration"
  sync_file "$daemon_json" "$(target /etc/docker/daemon.json)" 0644
  if ((FILE_CHANGED)); then
    systemctl restart docker.service
    changed "docker daemon.json (docker restarted)"
  else
    ok "docker daemon.json"
  fi

  sync_file "$HOST_FILES/logrotate-bankflow" "$(target /etc/logrotate.d/bankflow)" 0644
  if ((FILE_CHANGED)); then changed "logrotate /etc/logrotate.d/bankflow"; else ok "logrotate /etc/logrotate.d/bankflow"; fi

  sync_file "$HOST_FILES/bankflow-backup.service" "$(target /etc/systemd/system/bankflow-backup.service)" 0644
  local service_changed=$FILE_CHANGED
  sync_file "$HOST_FILES/bankflow-backup.timer" "$(target /etc/systemd/system/bankflow-backup.timer)" 0644
  local timer_changed=$FILE_CHANGED
  if ((service_changed || timer_changed)); then
    systemctl daemon-reload
  fi
  if ((timer_changed)) || ! unit_enabled_and_active bankflow-backup.timer; then
    systemctl enable bankflow-backup.timer >/dev/null 2>&1
    # restart, not start: a changed schedule takes effect now (restarting a timer runs nothing).
    systemctl restart bankflow-backup.timer
    changed "backup timer bankflow-backup.timer (enabled)"
  elif ((service_changed)); then
    changed "backup service bankflow-backup.service"
  else
    ok "backup timer and service"
  fi
}

step_unattended_upgrades() {
  sync_text "$(target /etc/apt/apt.conf.d/20auto-upgrades)" 0644 <<'EOF'
// Installed by BankFlow host-setup.sh: daily package lists and unattended security upgrades.
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
EOF
  local periodic=$FILE_CHANGED
  sync_text "$(target /etc/apt/apt.conf.d/51bankflow-unattended-upgrades)" 0644 <<'EOF'
// Installed by BankFlow host-setup.sh; read after Ubuntu's 50unattended-upgrades (lists append).
// Docker's packages are upgraded deliberately in the weekly maintenance window
// (bankflow-maintenance.timer: live-restore checked first, health gate after), never behind the
// services' back. (Entries are regular expressions matched against the start of a package name,
// so docker-ce also covers docker-ce-rootless-extras.)
Unattended-Upgrade::Package-Blacklist {
    "docker-ce";
    "docker-ce-cli";
    "containerd.io";
    "docker-compose-plugin";
    "docker-buildx-plugin";
};
// A reboot is downtime on a single droplet: kernel updates wait for the maintenance window,
// which reboots when /var/run/reboot-required exists.
Unattended-Upgrade::Automatic-Reboot "false";
EOF
  if ((periodic || FILE_CHANGED)); then
    changed "unattended security upgrades (docker packages held back)"
  else
    ok "unattended security upgrades (docker packages held back)"
  fi
}

step_ssh_dispatcher() {
  # The deploy key's forced command (files/ssh/bankflow-ssh-dispatch), root's and read-only to
  # everyone else, and the digests of the data-volume scripts it may run.
  if [[ ! -f $SSH_DISPATCH ]]; then
    ok "ssh dispatcher (none in payload; left as is)"
    return
  fi
  local did=()
  sync_file "$SSH_DISPATCH" "$(target "$SSH_DISPATCH_BIN")" 0755
  if ((FILE_CHANGED)); then did+=("$SSH_DISPATCH_BIN"); fi
  local digests="$work/ssh-dispatch-scripts.sha256" script
  : >"$digests"
  if [[ -n $VOLUME_SCRIPTS_DIR && -d $VOLUME_SCRIPTS_DIR ]]; then
    for script in "$VOLUME_SCRIPTS_DIR"/*.sh; do
      [[ -f $script ]] || continue
      printf '%s  %s\n' "$(sha256sum <"$script" | cut -d' ' -f1)" "$(basename -- "$script")" >>"$digests"
    done
  fi
  sync_file "$digests" "$(target "$SSH_DISPATCH_DIGESTS")" 0644
  if ((FILE_CHANGED)); then did+=("$SSH_DISPATCH_DIGESTS"); fi
  if ((${#did[@]})); then changed "ssh dispatcher: $(joined "${did[@]}")"; else ok "ssh dispatcher ($SSH_DISPATCH_BIN)"; fi
}

step_authorized_keys() {
  if [[ -z $AUTHORIZED_KEYS || ! -f $AUTHORIZED_KEYS ]]; then
    ok "root authorized_keys (none in payload; left as is)"
    return
  fi
  # Refuse key types the hardened sshd would never accept, instead of shipping a silent lockout.
  # Every key here is a deploy key: sshd admits root only with a forced command
  # (PermitRootLogin forced-commands-only), so each line gets the dispatcher and `restrict`
  # (no pty, no forwarding of any kind, no ~/.ssh/rc). People log in to their own accounts.
  local line count=0 staged="$work/root-authorized_keys"
  : >"$staged"
  while IFS= read -r line || [[ -n $line ]]; do
    [[ -z $line || $line == \#* ]] && continue
    [[ $line =~ $SSH_KEY_LINE_RE ]] ||
      die "$AUTHORIZED_KEYS: a line is not an ed25519, sk-ed25519 or RSA public key (the only types sshd accepts)"
    printf 'restrict,command="%s" %s\n' "$SSH_DISPATCH_BIN" "$line" >>"$staged"
    count=$((count + 1))
  done <"$AUTHORIZED_KEYS"
  ((count > 0)) || die "$AUTHORIZED_KEYS holds no key: installing it would lock everyone out"
  local ssh_dir
  ssh_dir=$(target /root/.ssh)
  mkdir -p -- "$ssh_dir"
  chmod 0700 -- "$ssh_dir"
  sync_file "$staged" "$ssh_dir/authorized_keys" 0600
  local what="root authorized_keys ($count deploy key(s), forced command $SSH_DISPATCH_BIN)"
  if ((FILE_CHANGED)); then changed "$what"; else ok "$what"; fi
}

# operator_lines: the payload's operators file as "NAME KEYLINE" lines, validated; dies on the first
# bad line, before anything is changed.
operator_lines() {
  local line name key seen=" "
  while IFS= read -r line || [[ -n $line ]]; do
    [[ -z $line || $line == \#* ]] && continue
    name=${line%% *}
    key=${line#* }
    [[ $name =~ $OPERATOR_NAME_RE ]] || die "$OPERATORS: '$name' is not an account name (a-z 0-9 _ -, 1-32)"
    [[ $name != root ]] || die "$OPERATORS: root is not an operator account"
    [[ $key =~ $SSH_KEY_LINE_RE ]] ||
      die "$OPERATORS: the key of '$name' is not an ed25519, sk-ed25519 or RSA public key"
    [[ $seen != *" $name "* ]] || die "$OPERATORS: '$name' is listed twice"
    seen+="$name "
    printf '%s %s\n' "$name" "$key"
  done <"$OPERATORS"
}

operator_account() {
  # Create or update one operator: an ordinary account in the operators group, its key in a
  # root-owned authorized_keys (the operator cannot add keys without sudo, which is audited).
  local name=$1 key=$2 did=() entry home uid
  if ! entry=$(getent passwd "$name"); then
    useradd --create-home --shell /bin/bash --groups "$OPERATORS_GROUP" --comment "BankFlow operator" "$name"
    entry=$(getent passwd "$name") || die "useradd did not create the account '$name'"
    did+=("created")
  fi
  IFS=: read -r _ _ uid _ _ home _ <<<"$entry"
  ((uid >= 1000)) || die "'$name' is a system account (uid $uid) on this host: choose another operator name"
  if ! getent group "$OPERATORS_GROUP" | cut -d: -f4 | tr ',' '\n' | grep -qx -- "$name"; then
    usermod --append --groups "$OPERATORS_GROUP" "$name"
    did+=("group $OPERATORS_GROUP")
  fi
  if [[ -n $(getent shadow "$name" | cut -d: -f8) ]]; then
    usermod --expiredate '' "$name" # listed again after a removal: the account works again
    did+=("unexpired")
  fi
  local ssh_dir
  ssh_dir=$(target "$home/.ssh")
  mkdir -p -- "$ssh_dir"
  chmod 0755 -- "$ssh_dir"
  printf '%s\n' "$key" | sync_text "$ssh_dir/authorized_keys" 0644
  if ((FILE_CHANGED)); then did+=("key"); fi
  if [[ $(id -u) -eq 0 ]]; then chown 0:0 -- "$ssh_dir" "$ssh_dir/authorized_keys"; fi
  if ((${#did[@]})); then changed "operator $name: $(joined "${did[@]}")"; else ok "operator $name"; fi
}

retire_operator() {
  # An account no longer in server.operators: expired (sshd's account check refuses it, even with
  # a key), its key removed, out of the sudo group; the home directory stays for the audit.
  local name=$1 home
  home=$(getent passwd "$name" | cut -d: -f6)
  usermod --expiredate 1 "$name"
  gpasswd --delete "$name" "$OPERATORS_GROUP" >/dev/null
  if [[ -n $home ]]; then rm -f -- "$(target "$home/.ssh/authorized_keys")"; fi
  changed "operator $name retired (expired, key removed, not in $OPERATORS_GROUP)"
}

operators_sudoers() {
  # sudo for the group, with the audit trail: every command goes to journald through sudo's syslog
  # (facility authpriv, with the operator's name), and each session's input and output is recorded
  # under SUDO_IO_DIR/<user> (sudoreplay). No password: operators have none (keys only).
  printf '%s\n' \
    "# Installed by BankFlow host-setup.sh: operators (server.operators) may run anything as root," \
    "# audited: sudo logs every command to syslog/journald (authpriv) with the user, and records the" \
    "# input and output of each session under $SUDO_IO_DIR/<user> (sudoreplay -d $SUDO_IO_DIR/<user> -l)." \
    "Defaults:%$OPERATORS_GROUP log_input, log_output, iolog_dir=$SUDO_IO_DIR/%{user}, syslog=authpriv, !lecture" \
    "%$OPERATORS_GROUP ALL=(ALL:ALL) NOPASSWD: ALL"
}

step_operators() {
  if [[ -z $OPERATORS || ! -f $OPERATORS ]]; then
    ok "operator accounts (none in payload; left as is)"
    return
  fi
  local lines name key
  lines=$(operator_lines)
  command -v visudo >/dev/null 2>&1 || die "visudo not found: the sudo package is required for operators"
  local sudoers="$work/sudoers-bankflow" errors
  operators_sudoers >"$sudoers"
  errors=$(visudo -c -q -f "$sudoers" 2>&1) || die "visudo rejected the operators' sudoers file: $errors"
  if ! getent group "$OPERATORS_GROUP" >/dev/null; then
    groupadd --system "$OPERATORS_GROUP"
    changed "group $OPERATORS_GROUP"
  fi
  sync_file "$sudoers" "$(target "$OPERATORS_SUDOERS")" 0440
  if ((FILE_CHANGED)); then changed "sudo for $OPERATORS_GROUP (audited)"; else ok "sudo for $OPERATORS_GROUP (audited)"; fi
  local listed=" "
  while IFS=' ' read -r name key; do
    [[ -n $name ]] || continue
    operator_account "$name" "$key"
    listed+="$name "
  done <<<"$lines"
  local members member
  members=$(getent group "$OPERATORS_GROUP" | cut -d: -f4)
  for member in ${members//,/ }; do
    [[ $listed == *" $member "* ]] || retire_operator "$member"
  done
}

step_sshd_moduli() {
  # diffie-hellman-group-exchange-sha256 (offered by the drop-in, as ssh-audit's policy wants) is
  # only as strong as the groups in /etc/ssh/moduli: keep those of >= 3072 bits.
  local moduli pruned="$work/moduli"
  moduli=$(target "$SSH_MODULI")
  if [[ ! -f $moduli ]]; then
    ok "sshd moduli (no $SSH_MODULI)"
    return
  fi
  awk -v min="$SSH_MODULI_MIN_FIELD" '/^#/ || $5 >= min' "$moduli" >"$pruned"
  grep -qv '^#' "$pruned" || die "$SSH_MODULI holds no group of >= 3072 bits: group exchange would fail"
  if cmp -s -- "$pruned" "$moduli"; then
    ok "sshd moduli (only >= 3072-bit groups)"
    return
  fi
  sync_file "$pruned" "$moduli" 0644
  changed "sshd moduli (groups under 3072 bits removed)"
}

step_sshd_penalties() {
  # PerSourcePenalties exists from OpenSSH 9.8 only; an unknown keyword would make sshd -t fail.
  local dest
  dest=$(target "/etc/ssh/sshd_config.d/$SSHD_PENALTIES_NAME")
  if [[ ! -f $SSHD_PENALTIES ]]; then
    ok "sshd penalties (none in payload)"
    return
  fi
  if ! sshd -T -f "$(target /etc/ssh/sshd_config)" 2>/dev/null | grep -q '^persourcepenalties '; then
    if [[ -f $dest ]]; then
      rm -f -- "$dest"
      changed "sshd penalties drop-in removed (this sshd does not know PerSourcePenalties)"
    else
      ok "sshd penalties (this sshd predates PerSourcePenalties: MaxStartups and the firewalls only)"
    fi
    return
  fi
  sync_file "$SSHD_PENALTIES" "$dest" 0644
  if ((FILE_CHANGED)); then
    changed "sshd penalties drop-in ($SSHD_PENALTIES_NAME)"
  else
    ok "sshd penalties drop-in ($SSHD_PENALTIES_NAME)"
  fi
}

step_sshd() {
  step_sshd_moduli
  step_sshd_penalties
  local dest config previous="$work/sshd-dropin.previous"
  dest=$(target "/etc/ssh/sshd_config.d/$SSHD_DROPIN_NAME")
  config=$(target /etc/ssh/sshd_config)
  rm -f -- "$previous"
  if [[ -f $dest ]]; then
    cp -p -- "$dest" "$previous"
  fi
  sync_file "$SSHD_DROPIN" "$dest" 0644
  if ((FILE_CHANGED)); then
    # Validate the whole configuration with the new drop-in; on failure put the old one back so
    # the running (and any restarted) sshd keeps a configuration that works.
    local errors
    if ! errors=$(sshd -t -f "$config" 2>&1); then
      if [[ -f $previous ]]; then mv -f -- "$previous" "$dest"; else rm -f -- "$dest"; fi
      die "sshd -t rejected $SSHD_DROPIN_NAME (previous configuration restored): $errors"
    fi
    # Reload if running; with Ubuntu's socket activation an idle ssh.service picks it up on start.
    systemctl try-reload-or-restart ssh.service
    changed "sshd hardening drop-in ($SSHD_DROPIN_NAME, sshd reloaded)"
  else
    ok "sshd hardening drop-in ($SSHD_DROPIN_NAME)"
  fi
  # The effective configuration must be the hardened one: an earlier-sorting drop-in could override
  # ours (sshd keeps the first value it reads).
  local effective key want
  effective=$(sshd -T -f "$config" 2>/dev/null) || die "sshd -T failed"
  for want in "passwordauthentication no" "kbdinteractiveauthentication no" \
    "permitrootlogin forced-commands-only" "authenticationmethods publickey" "hostkeyalgorithms ssh-ed25519"; do
    key=${want%% *}
    grep -qx -- "$want" <<<"$effective" ||
      die "effective sshd setting is '$(grep -m1 "^$key " <<<"$effective" || echo "$key unset")', expected '$want': another sshd_config.d file overrides $SSHD_DROPIN_NAME"
  done
}

step_swap() {
  local mem_bytes
  mem_bytes=$(free -b | awk '$1 == "Mem:" { print $2 }')
  [[ $mem_bytes =~ ^[0-9]+$ ]] || die "cannot read the memory size from free -b"
  local mem_mib=$((mem_bytes / 1024 / 1024))
  if ((SWAP_GB == 0)); then
    ok "swap not wanted (BANKFLOW_SWAP_GB=0)"
    return
  fi
  if ((mem_bytes >= SWAP_RAM_THRESHOLD)); then
    ok "swap not needed (${mem_mib} MiB RAM)"
    return
  fi
  local file want_bytes=$((SWAP_GB * 1024 * 1024 * 1024)) did=()
  file=$(target "$SWAP_FILE")
  if [[ ! -f $file ]]; then
    # Built under a temporary name so an interrupted run never leaves a half-made /swapfile.
    local staged="$file.bankflow-new"
    rm -f -- "$staged"
    fallocate -l "${SWAP_GB}G" "$staged"
    chmod 0600 -- "$staged"
    mkswap "$staged" >/dev/null
    mv -f -- "$staged" "$file"
    did+=("created ${SWAP_GB} GiB $SWAP_FILE")
  else
    local have_bytes
    have_bytes=$(stat -c '%s' -- "$file")
    if ((have_bytes != want_bytes)); then
      # Resizing means swapoff, which can OOM a loaded host: never done unattended.
      echo "warning: $SWAP_FILE is $((have_bytes / 1024 / 1024)) MiB, BANKFLOW_SWAP_GB=$SWAP_GB wants $((want_bytes / 1024 / 1024)) MiB; resize it in a maintenance window"
    fi
    if [[ $(stat -c '%a' -- "$file") != 600 ]]; then
      chmod 0600 -- "$file"
      did+=("mode 0600")
    fi
  fi
  if ! swapon --show=NAME --noheadings | grep -qx -- "$SWAP_FILE"; then
    swapon "$file"
    did+=("swapon")
  fi
  local fstab
  fstab=$(target /etc/fstab)
  if ! grep -Eq "^[[:space:]]*${SWAP_FILE}[[:space:]]+none[[:space:]]+swap[[:space:]]" "$fstab" 2>/dev/null; then
    printf '%s none swap sw 0 0\n' "$SWAP_FILE" >>"$fstab"
    did+=("fstab entry")
  fi
  local sysctl_file=/etc/sysctl.d/60-bankflow-swap.conf
  printf '# Installed by BankFlow host-setup.sh: swap is a safety net, not working memory.\nvm.swappiness = 10\n' |
    sync_text "$(target "$sysctl_file")" 0644
  if ((FILE_CHANGED)); then
    sysctl -q -p "$(target "$sysctl_file")"
    did+=("vm.swappiness=10")
  fi
  if ((${#did[@]} == 0)); then
    ok "swap ${SWAP_GB} GiB $SWAP_FILE (${mem_mib} MiB RAM)"
  else
    changed "swap: $(joined "${did[@]}")"
  fi
}

step_time_sync() {
  # TLS, backups and logs need a correct clock: systemd-timesyncd, enabled through timedatectl.
  local ntp synced
  ntp=$(timedatectl show --property=NTP --value 2>/dev/null || true)
  if [[ $ntp == yes ]] && systemctl is-active --quiet systemd-timesyncd.service; then
    synced=$(timedatectl show --property=NTPSynchronized --value 2>/dev/null || true)
    if [[ $synced == yes ]]; then ok "time sync (synchronized)"; else ok "time sync (enabled, not yet synchronized)"; fi
    return
  fi
  timedatectl set-ntp true
  changed "time sync (systemd-timesyncd enabled)"
}

step_agent() {
  if [[ -z $AGENT_DIR || ! -d $AGENT_DIR ]]; then
    ok "host agent (none in payload; left as is)"
    return
  fi
  local relative mode count=0 updated=0
  while IFS= read -r -d '' relative; do
    relative=${relative#./}
    mode=$(stat -c '%a' -- "$AGENT_DIR/$relative")
    sync_file "$AGENT_DIR/$relative" "$(target "$BIN_DIR/$relative")" "0$mode"
    count=$((count + 1))
    updated=$((updated + FILE_CHANGED))
  done < <(cd -- "$AGENT_DIR" && find . -type f -print0 | LC_ALL=C sort -z)
  if ((updated)); then changed "host agent in $BIN_DIR ($updated of $count files)"; else ok "host agent in $BIN_DIR ($count files)"; fi
}

step_backup_client() {
  local missing=() package
  for package in "${BACKUP_PACKAGES[@]}"; do
    installed "$package" || missing+=("$package")
  done
  if ((${#missing[@]} == 0)); then
    ok "backup client (${BACKUP_PACKAGES[*]})"
    return
  fi
  apt_install "${missing[@]}"
  changed "backup client (installed ${missing[*]})"
}

step_uploads_backup_client() {
  local missing=() package
  for package in "${UPLOADS_BACKUP_PACKAGES[@]}"; do
    installed "$package" || missing+=("$package")
  done
  if ((${#missing[@]} == 0)); then
    ok "uploads backup client (${UPLOADS_BACKUP_PACKAGES[*]})"
    return
  fi
  apt_install "${missing[@]}"
  changed "uploads backup client (installed ${missing[*]})"
}

# A service + timer pair from the bundle's host files into /etc/systemd/system, the timer enabled
# and (re)started when either file changed or it is not running. $1: unit base name, $2: what it
# does (for the message), $3: "optional" when a bundle may come without the pair.
install_timer_pair() {
  local base=$1 what=$2 optional=${3:-}
  if [[ $HOST_FILES == none ]]; then
    ok "$base.timer (host files skipped)"
    return
  fi
  if [[ -n $optional && ! -f $HOST_FILES/$base.timer ]]; then
    ok "$base.timer (not in this bundle)"
    return
  fi
  local name any=0
  for name in "$base.service" "$base.timer"; do
    [[ -f $HOST_FILES/$name ]] || die "host file missing: $HOST_FILES/$name (the $base units come as a pair)"
    sync_file "$HOST_FILES/$name" "$(target "/etc/systemd/system/$name")" 0644
    any=$((any + FILE_CHANGED))
  done
  if ((any)); then
    systemctl daemon-reload
  fi
  if ((any)) || ! unit_enabled_and_active "$base.timer"; then
    systemctl enable "$base.timer" >/dev/null 2>&1
    # restart, not start: a changed schedule takes effect now (restarting a timer runs nothing).
    systemctl restart "$base.timer"
    changed "$what timer $base.timer (enabled)"
  else
    ok "$what timer and service"
  fi
}

step_uploads_units() {
  # Optional: a bundle rendered without an uploads repository password has no uploads units.
  install_timer_pair bankflow-uploads-backup "uploads backup (every 5 minutes)" optional
}

step_backup_watch_units() {
  # Every minute: WAL-archive lag, backup age, failed runs -> the stack's alert webhook.
  install_timer_pair bankflow-backup-watch "backup watch (every minute)"
}

step_maintenance_units() {
  # Weekly: every package (Docker's too), health gate, reboot when required; then, at the next
  # boot, the resume unit's health gate (bankflow_infra/host/patching.py). Optional: a bundle
  # rendered before the window has no units.
  install_timer_pair bankflow-maintenance "maintenance window (weekly)" optional
  local resume=bankflow-maintenance-resume.service
  if [[ $HOST_FILES == none || ! -f $HOST_FILES/$resume ]]; then
    ok "$resume (not in this bundle)"
    return
  fi
  sync_file "$HOST_FILES/$resume" "$(target "/etc/systemd/system/$resume")" 0644
  if ((FILE_CHANGED)) || ! systemctl is-enabled --quiet "$resume" 2>/dev/null; then
    systemctl daemon-reload
    # enabled, not started: it runs at boot, and only while the window's reboot marker exists
    systemctl enable "$resume" >/dev/null 2>&1
    changed "maintenance resume unit $resume (enabled)"
  else
    ok "maintenance resume unit"
  fi
}

step_uploads_group() {
  # The apps write uploads as their own uids with group UPLOADS_GID: the tree is root:UPLOADS_GID,
  # directories setgid (new files keep the group) and group-writable, 2770. After step_uploads_on_volume:
  # UPLOADS_DIR may be the symlink to the volume's tree (root's own, in root's 0755 home), so the
  # real directory is resolved once; inside the tree, -P/-h never follow a link a container planted.
  local dir
  dir=$(readlink -f -- "$(target "$UPLOADS_DIR")")
  [[ -d $dir ]] || die "uploads directory $UPLOADS_DIR is missing (step_directories creates it)"
  if [[ $(stat -c '%g %a' -- "$dir") == "$UPLOADS_GID 2770" ]]; then
    ok "uploads tree: group $UPLOADS_GID, 2770"
    return
  fi
  # once, on the first run after the change: the files written by root-run containers before it
  chown -R -h -P ":$UPLOADS_GID" -- "$dir"
  find "$dir" -xdev -type d -exec chmod 2770 {} +
  find "$dir" -xdev -type f -exec chmod g+rw {} +
  changed "uploads tree: group $UPLOADS_GID, directories 2770, files group-writable"
}

step_uploads_on_volume() {
  # Uploads are data: on a stack with a data volume they live on it. The agent moves an existing
  # root-disk tree once (copy, verify every file by size and sha256, switch; resumable, the old
  # copy kept) and makes BANKFLOW_UPLOADS_DIR a symlink to the volume's tree. Without a volume the
  # uploads stay on the root disk (said here and in the release's backup/uploads.json).
  if [[ -n $UPLOADS_NFS_SOURCE ]]; then
    ok "uploads on the shared NFS share ($UPLOADS_NFS_SOURCE at $UPLOADS_DIR; never moved onto a volume)"
    return
  fi
  if [[ -z $DATA_VOLUME_LABEL ]]; then
    ok "uploads on the droplet's root disk ($UPLOADS_DIR; this stack has no data volume)"
    return
  fi
  local agent output
  agent=$(target "$BIN_DIR/bankflow-agent")
  if [[ ! -x $agent ]]; then
    ok "uploads on the data volume: no host agent yet (the next run moves them)"
    return
  fi
  output=$("$agent" --home "$(target "$HOME_DIR")" --actor host-setup uploads-migrate \
    --volume "$(target "$DATA_VOLUME_MOUNT")" 2>&1) || die "moving the uploads onto the data volume: $output"
  if [[ $output == *"nothing to do"* ]]; then
    ok "uploads on the data volume ($DATA_VOLUME_MOUNT/uploads)"
  else
    changed "uploads on the data volume: ${output//$'\n'/; }"
  fi
}

# uploads_share_fstab: /etc/fstab with exactly one line for UPLOADS_DIR, the share's (any other
# line for the same mount point is dropped). FILE_CHANGED as sync_file; call it as a plain command.
uploads_share_fstab() {
  local fstab line staged
  FILE_CHANGED=0
  fstab=$(target /etc/fstab)
  line="$UPLOADS_NFS_SOURCE $UPLOADS_DIR $UPLOADS_NFS_FS $UPLOADS_NFS_OPTIONS 0 0"
  if grep -qxF -- "$line" "$fstab" 2>/dev/null &&
    [[ $(awk -v dir="$UPLOADS_DIR" '$2 == dir' "$fstab" | grep -c .) -eq 1 ]]; then
    return 0
  fi
  staged=$(mktemp -- "$work/fstab.XXXXXX")
  [[ ! -f $fstab ]] || awk -v dir="$UPLOADS_DIR" '$2 == dir { next } { print }' "$fstab" >"$staged"
  printf '%s\n' "$line" >>"$staged"
  sync_file "$staged" "$fstab" 0644
}

step_uploads_share() {
  # Issue 13: several app droplets, one set of uploads: the Network File Storage share, mounted
  # at the uploads path before any container runs. The apps must never write an upload to the
  # droplet's own disk: a failed mount stops this run (so `pulumi up` fails), and Docker requires
  # the mount (RequiresMountsFor): after a reboot without the share Docker stays down, the droplet
  # fails its load-balancer check and the others serve.
  if [[ -z $UPLOADS_NFS_SOURCE ]]; then
    ok "uploads share (none: BANKFLOW_UPLOADS_NFS_SOURCE unset)"
    return
  fi
  local did=() missing=() package dir mounted
  for package in "${UPLOADS_NFS_PACKAGES[@]}"; do installed "$package" || missing+=("$package"); done
  if ((${#missing[@]})); then
    apt_install "${missing[@]}"
    did+=("installed ${missing[*]}")
  fi
  uploads_share_fstab
  if ((FILE_CHANGED)); then did+=("fstab entry"); fi
  sync_text "$(target "$DOCKER_UPLOADS_DROPIN")" 0644 <<EOF
# Installed by BankFlow host-setup.sh: no container before the uploads share is mounted (issue 13).
[Unit]
RequiresMountsFor=$UPLOADS_DIR
EOF
  if ((FILE_CHANGED)); then
    systemctl daemon-reload
    did+=("docker requires the mount")
  fi
  dir=$(target "$UPLOADS_DIR")
  if ! findmnt --mountpoint "$dir" >/dev/null 2>&1; then
    # Files here would vanish under the share (and are on this droplet only): move them first.
    if [[ -n $(find "$dir" -mindepth 1 -maxdepth 1 -print -quit 2>/dev/null) ]]; then
      die "$UPLOADS_DIR holds files on this droplet's own disk: copy them onto the share ($UPLOADS_NFS_SOURCE)" \
        "and empty the directory first (README: moving a stack to the scaled shape); nothing was mounted"
    fi
    mount -- "$dir" || die "cannot mount the uploads share $UPLOADS_NFS_SOURCE at $UPLOADS_DIR: is it" \
      "attached to this droplet's VPC (NfsAttachment)? The apps must not write uploads to the local disk"
    did+=("mounted")
  fi
  mounted=$(findmnt --mountpoint "$dir" -n -o SOURCE 2>/dev/null || true)
  [[ $mounted == "$UPLOADS_NFS_SOURCE" ]] ||
    die "$UPLOADS_DIR has '${mounted:-nothing}' mounted, not the uploads share $UPLOADS_NFS_SOURCE"
  if ((${#did[@]} == 0)); then
    ok "uploads share $UPLOADS_NFS_SOURCE at $UPLOADS_DIR"
  else
    changed "uploads share $UPLOADS_NFS_SOURCE at $UPLOADS_DIR: $(joined "${did[@]}")"
  fi
}

step_data_volume() {
  # Production's PostgreSQL lives on the attached DigitalOcean volume (formatted ext4 with this
  # label by Pulumi), never on the droplet's disk: a replaced droplet gets the same data back.
  if [[ -z $DATA_VOLUME_LABEL ]]; then
    ok "data volume (none: BANKFLOW_DATA_VOLUME_LABEL unset)"
    return
  fi
  local did=() fstab mount_dir line
  fstab=$(target /etc/fstab)
  mount_dir=$(target "$DATA_VOLUME_MOUNT")
  line="LABEL=$DATA_VOLUME_LABEL $DATA_VOLUME_MOUNT $DATA_VOLUME_FS $DATA_VOLUME_OPTIONS 0 2"
  # nofail: a missing volume must not stop the droplet from booting (sshd stays reachable); the
  # compose bind mount of the data dir refuses to start PostgreSQL on the bare disk instead.
  if ! grep -qxF -- "$line" "$fstab" 2>/dev/null; then
    local staged
    staged=$(mktemp -- "$work/fstab.XXXXXX")
    # drop any other line for this label or mount point (an earlier run's, or a hand edit), keep the rest
    if [[ -f $fstab ]]; then
      awk -v label="LABEL=$DATA_VOLUME_LABEL" -v dir="$DATA_VOLUME_MOUNT" \
        '$1 == label || $2 == dir { next } { print }' "$fstab" >"$staged"
    fi
    printf '%s\n' "$line" >>"$staged"
    sync_file "$staged" "$fstab" 0644
    did+=("fstab entry")
  fi
  if [[ ! -d $mount_dir ]]; then
    mkdir -p -- "$mount_dir"
    did+=("mount point")
  fi
  if ! findmnt --mountpoint "$mount_dir" >/dev/null 2>&1; then
    mount -- "$mount_dir" ||
      die "cannot mount the data volume (LABEL=$DATA_VOLUME_LABEL) at $DATA_VOLUME_MOUNT: is it attached and formatted?"
    findmnt --mountpoint "$mount_dir" >/dev/null 2>&1 ||
      die "the data volume is not mounted at $DATA_VOLUME_MOUNT after mount"
    did+=("mounted")
  fi
  # Only now, on the mounted volume: never create the data dir on the droplet's own disk.
  local data="$mount_dir/postgres"
  # (ownership needs root: only a test run in a temporary root filesystem is not root)
  local as_root=0
  [[ $(id -u) -eq 0 ]] && as_root=1
  if [[ ! -d $data ]]; then
    mkdir -- "$data"
    chmod 0700 -- "$data"
    if ((as_root)); then chown "$POSTGRES_UID:$POSTGRES_UID" -- "$data"; fi
    did+=("postgres/ (0700, uid $POSTGRES_UID)")
  else
    if ((as_root)) && [[ $(stat -c '%u:%g' -- "$data") != "$POSTGRES_UID:$POSTGRES_UID" ]]; then
      chown "$POSTGRES_UID:$POSTGRES_UID" -- "$data" # the directory only: the image owns its files
      did+=("postgres/ owner")
    fi
    if [[ $(stat -c '%a' -- "$data") != 700 ]]; then
      chmod 0700 -- "$data"
      did+=("postgres/ mode 0700")
    fi
  fi
  if ((${#did[@]} == 0)); then
    ok "data volume LABEL=$DATA_VOLUME_LABEL at $DATA_VOLUME_MOUNT"
  else
    changed "data volume LABEL=$DATA_VOLUME_LABEL at $DATA_VOLUME_MOUNT: $(joined "${did[@]}")"
  fi
}

# --------------------------------------------------------------------------- issue 12: logs
# uid_known FILE ID: whether the passwd/group FILE has an entry with that numeric id.
uid_known() { awk -F: -v id="$2" '$3 == id { found = 1 } END { exit !found }' "$1" 2>/dev/null; }
name_id() { awk -F: -v name="$2" '$1 == name { print $3; exit }' "$1" 2>/dev/null; }

# service_account ID NAME: the uid and gid ID resolve on this host (logrotate's `su ID ID` refuses
# an id it cannot look up). An id a system account already has is used as it is; otherwise NAME
# is created with that uid and gid, no home, no shell. Prints what it did.
service_account() {
  local id=$1 name=$2 passwd group
  passwd=$(target /etc/passwd)
  group=$(target /etc/group)
  local prefix=() system=()
  [[ -z $ROOTFS ]] || prefix=(--prefix "$ROOTFS")
  ((id >= 1000)) || system=(--system)
  if ! uid_known "$group" "$id"; then
    [[ -z $(name_id "$group" "$name") ]] || die "group $name exists with gid $(name_id "$group" "$name"), wanted $id"
    groupadd "${prefix[@]}" "${system[@]}" --gid "$id" "$name"
    printf 'group %s (%s) ' "$name" "$id"
  fi
  if ! uid_known "$passwd" "$id"; then
    [[ -z $(name_id "$passwd" "$name") ]] || die "user $name exists with uid $(name_id "$passwd" "$name"), wanted $id"
    useradd "${prefix[@]}" "${system[@]}" --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
      --uid "$id" --gid "$id" "$name"
    printf 'user %s (%s) ' "$name" "$id"
  fi
}

step_service_log_dirs() {
  # Each service writes in its own directory only, owned by its uid; the parent stays root's
  # (0755) and is mounted into no container. So nothing root does in the log tree (logrotate,
  # which works in each directory as its owner, the access-log shipper) follows a path a
  # container made. A symlink where a directory belongs (planted while containers could write the
  # parent) is refused, never followed by chown.
  local list=$HOST_FILES/$SERVICE_LOG_DIRS_FILE
  if [[ $HOST_FILES == none || ! -f $list ]]; then
    ok "per-service log directories (not in this bundle)"
    return
  fi
  local logs as_root=0 did=()
  [[ $(id -u) -eq 0 ]] && as_root=1
  logs=$(target "$LOGS_DIR")
  [[ -d $logs && ! -L $logs ]] || die "$LOGS_DIR is not a directory (a symlink?): fix it by hand"
  if ((as_root)) && [[ $(stat -c '%u:%g' -- "$logs") != 0:0 ]]; then
    chown -h 0:0 -- "$logs"
    did+=("$LOGS_DIR owner root")
  fi
  if [[ $(stat -c '%a' -- "$logs") != 755 ]]; then
    chmod 0755 -- "$logs"
    did+=("$LOGS_DIR mode 0755")
  fi
  local service id dir path account
  while read -r service id dir; do
    [[ -z $service || $service == \#* ]] && continue
    [[ $service =~ ^[a-z][a-z0-9-]{0,30}$ && $id =~ ^[0-9]{1,9}$ && $dir == "$LOGS_DIR/$service" ]] ||
      die "$list: bad line '$service $id $dir' (want: <service> <uid> $LOGS_DIR/<service>)"
    # (a test root filesystem without a user database has no accounts to add to)
    if ((as_root)) && [[ -f $(target /etc/passwd) ]]; then
      account=$(service_account "$id" "bankflow-$service")
      [[ -z $account ]] || did+=("${account% }")
    fi
    path=$(target "$dir")
    if [[ -L $path || (-e $path && ! -d $path) ]]; then
      die "$dir is a symlink or not a directory (planted by a container?): move it away by hand, then run again"
    fi
    if [[ ! -d $path ]]; then
      mkdir -m 0750 -- "$path"
      did+=("$dir")
    elif [[ $(stat -c '%a' -- "$path") != 750 ]]; then
      chmod 0750 -- "$path"
      did+=("$dir mode 0750")
    fi
    if ((as_root)) && [[ $(stat -c '%u:%g' -- "$path") != "$id:$id" ]]; then
      chown -h "$id:$id" -- "$path" # the directory only: its files are the service's own
      did+=("$dir owner $id")
    fi
  done <"$list"
  if ((${#did[@]} == 0)); then
    ok "per-service log directories under $LOGS_DIR"
  else
    changed "per-service log directories: $(joined "${did[@]}")"
  fi
}

step_access_log_units() {
  # nginx's access log: rotated hourly by its own logrotate config (outside /etc/logrotate.d, so
  # the daily run never touches it) and shipped to the backups bucket every 15 minutes.
  if [[ $HOST_FILES == none || ! -f $HOST_FILES/$ACCESS_LOGROTATE_FILE ]]; then
    ok "access-log shipping (not in this bundle)"
    return
  fi
  if installed logrotate; then
    ok "logrotate installed"
  else
    apt_install logrotate
    changed "logrotate (installed)"
  fi
  mkdir -p -- "$(target "$(dirname -- "$ACCESS_LOGROTATE_DEST")")"
  sync_file "$HOST_FILES/$ACCESS_LOGROTATE_FILE" "$(target "$ACCESS_LOGROTATE_DEST")" 0644
  if ((FILE_CHANGED)); then changed "logrotate $ACCESS_LOGROTATE_DEST"; else ok "logrotate $ACCESS_LOGROTATE_DEST"; fi
  install_timer_pair bankflow-access-logs "access logs (every 15 minutes)"
}

step_verify_docker() {
  local engine compose
  engine=$(docker info --format '{{.ServerVersion}}') || die "docker engine not answering (docker info)"
  compose=$(docker compose version --short) || die "docker compose plugin not working"
  ok "docker engine $engine, compose $compose"
}

step_os
step_cloud_init
step_base_packages
step_docker_keyring
step_docker_repo
step_docker_packages
step_backup_client
step_uploads_backup_client
step_data_volume
step_directories
step_uploads_share
step_service_log_dirs
step_ufw
step_metadata_block
step_web_ingress
step_host_files
step_uploads_units
step_backup_watch_units
step_access_log_units
step_unattended_upgrades
step_maintenance_units
step_ssh_dispatcher
step_authorized_keys
step_operators
step_sshd
step_swap
step_time_sync
step_agent
step_uploads_on_volume
step_uploads_group
step_verify_docker

if ((changes == 0)); then
  echo "host-setup: no changes"
else
  echo "host-setup: $changes change(s)"
fi
