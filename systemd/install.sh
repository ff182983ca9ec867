#!/usr/bin/env bash
# Installs udigate as a systemd service on Raspberry Pi OS 64-bit or Debian 12, as root, from
# this checkout:
#
#   sudo systemd/install.sh [--dry-run] [--with-mosquitto] [--wheel FILE] [--prefix DIR] [--config FILE]
#
#   --dry-run          print what would be done, change nothing
#   --with-mosquitto   also install mosquitto, a local MQTT broker for the MES records
#   --wheel FILE       install this udigate wheel instead of the checkout
#   --prefix DIR       where the virtual environment goes: DIR/venv (default /opt/udigate)
#   --config FILE      the line's configuration (default config/line-example.toml)
#
# Idempotent: what is in place is skipped, so running it again after `git pull` updates udigate
# (and restarts the service). /etc/udigate/line.toml is created from the configuration when
# absent and never overwritten. docs/deployment.md describes the result.
set -euo pipefail
umask 022  # the service's user reads what root installs here, whatever root's own umask is
REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)

SERVICE=udigate
CONFIG_DIR=/etc/udigate
CONFIG=$CONFIG_DIR/line.toml
DATA_DIR=/var/lib/udigate
UNIT=/etc/systemd/system/$SERVICE.service
# Written when the line serves a port below 1024 (Modbus TCP's 502): the unit grants no
# capabilities itself.
PORT_DROP_IN=/etc/systemd/system/$SERVICE.service.d/privileged-port.conf
# Groups of the devices the line uses: cameras, the GPIO photo-eye, serial ports.
DEVICE_GROUPS=(video gpio dialout)
# python3-venv for the virtual environment, libdmtx0b for pylibdmtx, Pango and fonts (CJK
# included, for Chinese product names) for the PDF reports.
PACKAGES=(python3 python3-venv libdmtx0b libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core fonts-wqy-microhei)
# Debian's Python: the one python3-picamera2 is built for, and outside /root, which the
# service's user may not read (a python3 earlier in root's PATH may be elsewhere).
PYTHON=/usr/bin/python3
# Only ./dev installs pysparkplug this way too: it declares paho-mqtt<2 although the code
# udigate uses runs on paho 2 (upstream issue #28).
SPARKPLUG=pysparkplug==0.6.1

DRY_RUN=0
WHEEL=
PREFIX=/opt/udigate
CONFIG_SOURCE=$REPO/config/line-example.toml

say() { printf '\033[1m[install]\033[0m %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

# Runs a command, or with --dry-run prints it (shell-quoted) instead.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# Writes standard input to a file with the given mode, or with --dry-run prints it (or what
# it is, when a third argument says).
write_file() {
    local path=$1 mode=$2 what=${3:-}
    if [ "$DRY_RUN" = 1 ]; then
        if [ -n "$what" ]; then
            printf '+ write %s (mode %s): %s\n' "$path" "$mode" "$what"
            cat >/dev/null
        else
            printf '+ write %s (mode %s):\n' "$path" "$mode"
            sed 's/^/    /'
        fi
    else
        install -d -m 0755 "$(dirname "$path")"
        install -m "$mode" /dev/stdin "$path"
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --with-mosquitto) PACKAGES+=(mosquitto) ;;
        --wheel) [ $# -ge 2 ] || usage; WHEEL=$(readlink -f "$2"); shift ;;
        --prefix) [ $# -ge 2 ] || usage; PREFIX=$2; shift ;;
        --config) [ $# -ge 2 ] || usage; CONFIG_SOURCE=$(readlink -f "$2"); shift ;;
        *) usage ;;
    esac
    shift
done
VENV=$PREFIX/venv
UDIGATE=$VENV/bin/udigate

[ "$DRY_RUN" = 1 ] || [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"
[ -z "$WHEEL" ] || [ -f "$WHEEL" ] || die "no such wheel: $WHEEL"
[ -f "$CONFIG_SOURCE" ] || die "no such configuration: $CONFIG_SOURCE"
[ "$DRY_RUN" = 0 ] || say "dry run: printing what would be done, changing nothing"

is_raspberry_pi() {
    grep -qas '^Raspberry Pi' /proc/device-tree/model
}

install_packages() {
    # The Raspberry Pi camera stack (libcamera) comes as a Debian package only; the virtual
    # environment sees it through --system-site-packages.
    if is_raspberry_pi; then PACKAGES+=(python3-picamera2); fi
    local missing=() package
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
    done
    say "Debian packages: ${PACKAGES[*]}"
    if [ ${#missing[@]} -eq 0 ]; then
        say "  all installed"
        return
    fi
    run env DEBIAN_FRONTEND=noninteractive apt-get update -q
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

create_user() {
    local group
    for group in "${DEVICE_GROUPS[@]}"; do
        # gpio exists on Raspberry Pi OS only; elsewhere an empty group keeps the unit's
        # SupplementaryGroups= valid
        getent group "$group" >/dev/null || run groupadd --system "$group"
    done
    if ! getent passwd "$SERVICE" >/dev/null; then
        run useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "udigate gateway" "$SERVICE"
    fi
    local groups
    groups=" $(id -nG "$SERVICE" 2>/dev/null || true) "  # no such user yet in a dry run
    for group in "${DEVICE_GROUPS[@]}"; do
        [[ $groups == *" $group "* ]] || run usermod --append --groups "$group" "$SERVICE"
    done
}

install_udigate() {
    if ! grep -qs '^include-system-site-packages = true' "$VENV/pyvenv.cfg" ||
        ! grep -qs "^home = $(dirname "$PYTHON")\$" "$VENV/pyvenv.cfg"; then
        say "creating the virtual environment $VENV"
        run install -d -m 0755 "$PREFIX"
        run "$PYTHON" -m venv --system-site-packages "$VENV"
    fi
    if [ -n "$WHEEL" ]; then
        say "installing $WHEEL"
        run "$VENV/bin/python" -m pip install -q "$WHEEL"
    else
        # Built from a copy: pip builds in the source tree, and as root it would leave root-owned
        # build/ and udigate.egg-info behind in the checkout (and stale files from them in the wheel).
        say "installing udigate from $REPO"
        local source=$PREFIX/source
        run rm -rf "$source"
        run install -d -m 0755 "$source"
        if [ "$DRY_RUN" = 1 ]; then
            printf '+ copy %s to %s without .git, .venv, build and *.egg-info\n' "$REPO" "$source"
        else
            tar -C "$REPO" --exclude-vcs --exclude=./.venv --exclude=./build --exclude='./*.egg-info' -cf - . |
                tar -C "$source" -xf -
        fi
        run "$VENV/bin/python" -m pip install -q "$source"
        run rm -rf "$source"
    fi
    run "$VENV/bin/python" -m pip install -q --no-deps "$SPARKPLUG"
}

install_config() {
    run install -d -m 0750 -o root -g "$SERVICE" "$CONFIG_DIR"
    if [ -e "$CONFIG" ]; then
        say "keeping $CONFIG"
    else
        say "creating $CONFIG from $CONFIG_SOURCE: edit it for the line"
        run install -m 0640 -o root -g "$SERVICE" "$CONFIG_SOURCE" "$CONFIG"
    fi
    run install -d -m 0700 -o "$SERVICE" -g "$SERVICE" "$DATA_DIR"
}

# The configuration as the service reads it: checked as the service's user (so a file it may
# not read fails here), printed resolved. Without udigate installed yet (a dry run on a new
# machine), nothing.
resolved_config() {
    local file=$CONFIG
    [ -e "$file" ] || file=$CONFIG_SOURCE  # what install_config would create
    [ -x "$UDIGATE" ] || return 0
    if [ "$DRY_RUN" = 0 ]; then
        runuser -u "$SERVICE" -- "$UDIGATE" check-config "$file"
    else
        "$UDIGATE" check-config "$file"
    fi
}

# Ports below 1024 the configuration serves (Modbus TCP server, review UI), from the resolved
# configuration on standard input.
privileged_ports() {
    "$PYTHON" -c '
import sys, tomllib
config = tomllib.load(sys.stdin.buffer)
modbus, web = config["plc"]["modbus"], config["web"]
served = []
if modbus["enabled"] and modbus["mode"] == "server" and modbus["transport"] == "tcp":
    served.append(modbus["port"])
if web["enabled"]:
    served.append(web["port"])
print(*(port for port in served if 0 < port < 1024))
'
}

install_unit() {
    local resolved ports
    say "checking $CONFIG"
    resolved=$(resolved_config) || die "checking $CONFIG failed (above): fix it and run this again"
    if [ -z "$resolved" ]; then
        say "  (dry run: udigate is not installed yet; the check and the port drop-in wait for it)"
    else
        ports=$(privileged_ports <<<"$resolved")
        if [ -n "$ports" ]; then
            say "the line serves port(s) $ports: granting CAP_NET_BIND_SERVICE in $PORT_DROP_IN"
            write_file "$PORT_DROP_IN" 0644 <<EOF
# Written by systemd/install.sh: $CONFIG serves port(s) $ports, below 1024.
[Service]
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
AmbientCapabilities=CAP_NET_BIND_SERVICE
EOF
        elif [ -e "$PORT_DROP_IN" ]; then
            run rm -f "$PORT_DROP_IN"
        fi
    fi
    sed "s|/opt/udigate/venv/|$VENV/|" "$REPO/systemd/udigate.service" |
        write_file "$UNIT" 0644 "systemd/udigate.service, running $UDIGATE"
    if [ ! -d /run/systemd/system ]; then
        say "systemd is not running (a container or an image build): enable $SERVICE at first boot"
        say "  with: systemctl enable --now $SERVICE"
        return
    fi
    local was_active=0
    systemctl is-active --quiet "$SERVICE" && was_active=1
    run systemctl daemon-reload
    run systemctl enable --now "$SERVICE"
    if [ "$was_active" = 1 ]; then
        say "restarting $SERVICE: it runs the version just installed"
        run systemctl restart "$SERVICE"
    fi
}

install_packages
create_user
install_udigate
install_config
install_unit
say "done: journalctl -u $SERVICE -f follows the line; systemctl status $SERVICE shows its counters"
