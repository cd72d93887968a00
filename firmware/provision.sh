#!/usr/bin/env bash
# Provision dermaguard on Raspberry Pi OS (Debian 12 bookworm): venv, system user, config,
# systemd unit, boot configuration (SPI0 on, for the HX711) and hardware watchdog, then a check
# of the SPI device. Idempotent: run it again after an
# update, or twice in a row, and the result is the same. `provision.sh --help` for the options.
set -euo pipefail

PROG=${0##*/}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

UNIT_SRC=$REPO/systemd/dermaguard.service
WEB_UNIT_SRC=$REPO/systemd/dermaguard-web.service
SYSUSERS_SRC=$REPO/systemd/dermaguard.sysusers
FRAGMENT_SRC=$REPO/firmware/config.txt
WATCHDOG_SRC=$REPO/firmware/watchdog.conf
EXAMPLE_SRC=$REPO/src/dermaguard/data/dermaguard.example.yaml
README_SRC=$REPO/README.md

# SPI0's first device: dtparam=spi=on makes spidev0.0 and spidev0.1 alike (one udev rule gives
# both to group spi), so this one stands for whichever hx711.spi.device the config names.
SPI_DEV=/dev/spidev0.0
SERVICE_USER=dermaguard

BEGIN_MARK='# >>> dermaguard >>>'
END_MARK='# <<< dermaguard <<<'
UNIT=dermaguard.service
WEB_UNIT=dermaguard-web.service
# A broker for this Pi alone: the daemon and the dashboard share it over the loopback.
BROKER_CONF=/etc/mosquitto/conf.d/dermaguard.conf
APT_PACKAGES=(python3-venv python3-lgpio)

usage() {
    cat <<EOF
Usage: $PROG [--root DIR] [--source PATH] [--offline DIR] [--no-venv]
       [--local-broker | --no-local-broker]

Provision dermaguard on Raspberry Pi OS (Debian 12 bookworm). Run as root. Idempotent.

  1. apt: ${APT_PACKAGES[*]} (gpiozero's GPIO backend), when missing. python3-lgpio is
     Raspberry Pi OS's package: where the archive has none (plain Debian) it is skipped with
     a warning, and gpiozero has no GPIO backend for real pins there
  2. venv /opt/dermaguard/venv (--system-site-packages, for lgpio), with dermaguard installed
     from the source tree this script lives in, or from --source
  3. system user and group 'dermaguard', member of 'gpio' and 'spi': systemd/dermaguard.sysusers
     installed as /usr/lib/sysusers.d/dermaguard.conf and applied with systemd-sysusers
  4. /etc/dermaguard/dermaguard.yaml from the example config, only if it does not exist
     (a config you edited is never touched), mode 0640 root:dermaguard
  5. /etc/systemd/system/dermaguard.service from systemd/dermaguard.service, and the web
     dashboard's /etc/systemd/system/dermaguard-web.service from systemd/
  6. firmware/config.txt into /boot/firmware/config.txt between
     '$BEGIN_MARK' and '$END_MARK' (an existing block is replaced): outputs low
     from boot, SPI0 on (dtparam=spi=on: the HX711's bus), hardware watchdog
  7. /etc/systemd/system.conf.d/dermaguard-watchdog.conf: systemd feeds the hardware watchdog
  8. a local broker when none is configured (mqtt.host is this machine and no mosquitto is
     installed): offered at a terminal, or with --local-broker: apt mosquitto and
     $BROKER_CONF (listener 1883 on 127.0.0.1 only, shared by the daemon and the dashboard)
  8b. the services enabled and started (systemctl daemon-reload, enable --now)
  9. $SPI_DEV checked: present, and the service user may open it for reading and
     writing (its owner, group and mode against the user's groups). Missing because SPI0
     turns on only at the next boot, it says to reboot; a problem is a warning, not a failure.

Options:
  --root DIR     write everything under DIR (an image or a test directory); nothing on the
                 running system is touched: no apt, no daemon-reload, no start (the unit is
                 enabled offline with systemctl --root). Needs no root when DIR is yours:
                 ownership that cannot be set is reported and skipped. Note: a venv made under
                 DIR has DIR in its paths, so for an image run this script inside a chroot.
  --source PATH  install this wheel, sdist or source directory instead of $REPO
  --offline DIR  no network: Debian packages from DIR/debs/NAME/*.deb (NAME: the package
                 asked for; the directory holds its .deb and those of its dependencies the
                 target lacks) and Python packages from the wheelhouse DIR/wheels only
                 (pip --no-index; it must hold setuptools and wheel to build from source)
  --no-venv      skip the venv and the package (a quick run of everything else)
  --local-broker install the local Mosquitto of step 8 without asking
  --no-local-broker  do not offer it
  -h, --help     show this help

Environment: PYTHON  the interpreter for the venv (default python3, must be 3.11 or newer)
EOF
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

say() { printf '%-9s %s\n' "$1" "$2"; }

warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }

# --- options --------------------------------------------------------------------------------
ROOT=""
SOURCE=$REPO
OFFLINE=""
MAKE_VENV=1
LOCAL_BROKER=ask
while [ $# -gt 0 ]; do
    case $1 in
    --root)
        [ $# -ge 2 ] || die "--root needs a directory"
        ROOT=$2
        shift 2
        ;;
    --root=*)
        ROOT=${1#--root=}
        shift
        ;;
    --source)
        [ $# -ge 2 ] || die "--source needs a path"
        SOURCE=$2
        shift 2
        ;;
    --source=*)
        SOURCE=${1#--source=}
        shift
        ;;
    --offline)
        [ $# -ge 2 ] || die "--offline needs a directory"
        OFFLINE=$2
        shift 2
        ;;
    --offline=*)
        OFFLINE=${1#--offline=}
        shift
        ;;
    --no-venv)
        MAKE_VENV=0
        shift
        ;;
    --local-broker)
        LOCAL_BROKER=yes
        shift
        ;;
    --no-local-broker)
        LOCAL_BROKER=no
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        die "unknown argument: $1"
        ;;
    esac
done

if [ -n "$ROOT" ]; then
    [ -n "${ROOT//\//}" ] || die "--root / is the running system: leave --root out instead"
    mkdir -p -- "$ROOT"
    ROOT=$(cd -- "$ROOT" && pwd)
elif [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0), or give --root DIR to write into a directory"
fi

# --- checks, before anything is changed -----------------------------------------------------
if [ -n "$OFFLINE" ]; then
    [ -d "$OFFLINE" ] || die "--offline $OFFLINE is not a directory"
    OFFLINE=$(cd -- "$OFFLINE" && pwd)
    if [ "$MAKE_VENV" = 1 ] && [ ! -d "$OFFLINE/wheels" ]; then
        die "--offline $OFFLINE has no wheels/ directory (the wheelhouse for the venv)"
    fi
    # pip, and the build of the wheel from source, look at the wheelhouse only.
    export PIP_NO_INDEX=1 PIP_FIND_LINKS=$OFFLINE/wheels
fi
for f in "$UNIT_SRC" "$SYSUSERS_SRC" "$FRAGMENT_SRC" "$WATCHDOG_SRC" "$EXAMPLE_SRC"; do
    [ -f "$f" ] || die "missing $f: is this a complete dermaguard source tree?"
done
for tool in systemd-sysusers systemctl; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found: install systemd (apt-get install -y systemd)"
done

PY=${PYTHON:-python3}
if [ "$MAKE_VENV" = 1 ]; then
    [ -e "$SOURCE" ] || die "--source $SOURCE does not exist"
    if [ -d "$SOURCE" ]; then
        SOURCE=$(cd -- "$SOURCE" && pwd)
        [ -f "$SOURCE/pyproject.toml" ] || die "$SOURCE has no pyproject.toml"
    fi
    command -v "$PY" >/dev/null 2>&1 || die "$PY not found (set PYTHON, or apt-get install python3)"
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "dermaguard needs Python 3.11 or newer; $PY is $("$PY" --version 2>&1)"
fi

BOOT_DIR=$ROOT/boot/firmware
BOOT_CFG=$BOOT_DIR/config.txt
if [ -z "$ROOT" ] && [ ! -d "$BOOT_DIR" ]; then
    die "$BOOT_DIR not found: this is not Raspberry Pi OS bookworm (use --root DIR to stage)"
fi

# The dermaguard block of a boot config must be well formed before it is replaced: every begin
# marker closed by an end marker, none nested. Anything else is left for a person to fix.
check_markers() {
    awk -v b="$BEGIN_MARK" -v e="$END_MARK" '
        $0 == b { if (inside) { print FILENAME ":" NR ": begin marker inside a block"; bad = 1 }
                  inside = 1; next }
        $0 == e { if (!inside) { print FILENAME ":" NR ": end marker without a begin"; bad = 1 }
                  inside = 0; next }
        END { if (inside) { print FILENAME ": begin marker never closed"; bad = 1 }
              exit bad }' "$1"
}
if [ -f "$BOOT_CFG" ] && ! problem=$(check_markers "$BOOT_CFG"); then
    die "the dermaguard block in $BOOT_CFG is damaged ($problem): fix it by hand"
fi

STAGE=""
cleanup() { if [ -n "$STAGE" ]; then rm -rf -- "$STAGE"; fi; }
trap cleanup EXIT

REBOOT=0
CHANGED=0

# install_file SRC DEST MODE: copy SRC to DEST (parents made) unless it is identical already.
install_file() {
    local src=$1 dest=$2 mode=$3
    if [ -f "$dest" ] && cmp -s -- "$src" "$dest"; then
        chmod "$mode" -- "$dest"
        say unchanged "${dest#"$ROOT"}"
        return 1
    fi
    local verb=installed
    [ -e "$dest" ] && verb=updated
    install -D -m "$mode" -- "$src" "$dest"
    say "$verb" "${dest#"$ROOT"}"
    CHANGED=1
    return 0
}

# --- 1. packages ----------------------------------------------------------------------------
APT_UPDATED=0
# debs_of PKG: the .deb files --offline has for PKG (none: returns 1).
debs_of() {
    compgen -G "$OFFLINE/debs/$1/*.deb" >/dev/null || return 1
    printf '%s\n' "$OFFLINE/debs/$1"/*.deb
}
# apt_has PKG: whether PKG can be installed here (offline: its .debs are in DIR/debs/PKG).
apt_has() {
    if [ -n "$OFFLINE" ]; then
        debs_of "$1" >/dev/null
        return
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    local candidate
    candidate=$(apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
    [ -n "$candidate" ] && [ "$candidate" != "(none)" ]
}
# apt_install PKG...: from the archive, or offline from the .debs of each PKG.
apt_install() {
    if [ -n "$OFFLINE" ]; then
        local debs=() pkg
        for pkg; do mapfile -t -O "${#debs[@]}" debs < <(debs_of "$pkg"); done
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
    else
        if [ "$APT_UPDATED" = 0 ]; then
            apt-get update -qq
            APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
}
if [ "$MAKE_VENV" = 1 ]; then
    if [ -n "$ROOT" ]; then
        say skipped "apt (--root): the target needs ${APT_PACKAGES[*]}"
    elif ! command -v apt-get >/dev/null 2>&1; then
        say skipped "apt: no apt-get here; the target needs ${APT_PACKAGES[*]}"
    else
        missing=()
        for pkg in "${APT_PACKAGES[@]}"; do
            status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
            [ "$status" = "install ok installed" ] && continue
            if apt_has "$pkg"; then
                missing+=("$pkg")
            elif [ "$pkg" = python3-lgpio ]; then
                # Raspberry Pi OS's archive has it, Debian's does not: not a Pi OS system.
                warn "python3-lgpio is not available${OFFLINE:+ in $OFFLINE/debs}" \
                    "(it comes from Raspberry Pi OS's archive): installed without it, so" \
                    "gpiozero has no backend for real GPIO pins here; on a Raspberry Pi use" \
                    "Raspberry Pi OS, or add its .debs${OFFLINE:+ to $OFFLINE/debs/python3-lgpio}"
                say skipped "apt: python3-lgpio (not in this system's archive)"
            else
                die "cannot install $pkg: not in ${OFFLINE:+$OFFLINE/debs/$pkg, nor }the archive"
            fi
        done
        if [ ${#missing[@]} -gt 0 ]; then
            apt_install "${missing[@]}"
            say installed "apt: ${missing[*]}${OFFLINE:+ (offline, from $OFFLINE/debs)}"
        else
            say unchanged "apt: nothing to install"
        fi
    fi
fi

# --- 2. venv and package --------------------------------------------------------------------
VENV=$ROOT/opt/dermaguard/venv
if [ "$MAKE_VENV" = 1 ]; then
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c '' 2>/dev/null; then
        say kept "venv /opt/dermaguard/venv"
    else
        mkdir -p -- "$(dirname "$VENV")"
        "$PY" -m venv --clear --system-site-packages "$VENV" ||
            die "could not make a venv with $PY (on Debian: apt-get install python3-venv)"
        say created "venv /opt/dermaguard/venv"
    fi
    pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input --quiet)
    target=$SOURCE
    if [ -d "$SOURCE" ]; then
        # Build a wheel from a copy: pip builds in the tree it is given (build/, *.egg-info),
        # and the checkout may belong to someone else, or be in use.
        STAGE=$(mktemp -d)
        mkdir -- "$STAGE/src" "$STAGE/wheel"
        tar -C "$SOURCE" \
            --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
            --exclude=./.pytest_cache --exclude=./.mypy_cache --exclude=./.ruff_cache \
            --exclude=./.hypothesis --exclude='*.egg-info' --exclude=__pycache__ \
            -cf - . | tar -C "$STAGE/src" -xf -
        "${pip[@]}" wheel --no-deps --wheel-dir "$STAGE/wheel" "$STAGE/src"
        target=$(find "$STAGE/wheel" -name 'dermaguard-*.whl' -print -quit)
        [ -n "$target" ] || die "building a wheel from $SOURCE gave no dermaguard wheel"
    fi
    # The install fetches missing dependencies; the forced reinstall without dependencies then
    # replaces dermaguard itself even when its version number did not change.
    "${pip[@]}" install "$target"
    "${pip[@]}" install --force-reinstall --no-deps "$target"
    [ -x "$VENV/bin/dermaguard" ] || die "pip did not install the dermaguard command into $VENV"
    version=$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("dermaguard"))')
    say installed "dermaguard $version into /opt/dermaguard/venv (from ${SOURCE})"
    CHANGED=1
else
    say skipped "venv and package (--no-venv)"
fi
if [ -f "$README_SRC" ]; then
    install_file "$README_SRC" "$ROOT/opt/dermaguard/README.md" 0644 || true
fi

# --- 3. system user -------------------------------------------------------------------------
# /usr/lib, as a package would put it: a file of the same name in /etc/sysusers.d overrides it.
SYSUSERS_DEST=$ROOT/usr/lib/sysusers.d/dermaguard.conf
install_file "$SYSUSERS_SRC" "$SYSUSERS_DEST" 0644 || true
mkdir -p -- "$ROOT/etc"
root_args=()
if [ -n "$ROOT" ]; then root_args=(--root "$ROOT"); fi
# A bare file name is looked up in the sysusers.d directories (under --root: of DIR), so an
# override in /etc/sysusers.d wins. (An absolute path would be read from the host, even with
# --root: systemd 252.)
sysusers_out=$(systemd-sysusers "${root_args[@]}" dermaguard.conf 2>&1) ||
    die "systemd-sysusers failed: $sysusers_out"
if [ -n "$sysusers_out" ]; then
    while IFS= read -r line; do say user "$line"; done <<<"$sysusers_out"
else
    say unchanged "user dermaguard and its groups exist"
fi

# chown_target USER GROUP FILE: on the running system, or under --root by the numbers in DIR's
# /etc/passwd and /etc/group (the host's names may differ). Under --root a chown that cannot be
# done (not root) is reported and skipped: returns 1.
chown_target() {
    local user=$1 group=$2 file=$3 gid uid
    if [ -z "$ROOT" ]; then
        chown -- "$user:$group" "$file"
        return 0
    fi
    uid=$(awk -F: -v n="$user" '$1 == n { print $3 }' "$ROOT/etc/passwd" 2>/dev/null || true)
    gid=$(awk -F: -v n="$group" '$1 == n { print $3 }' "$ROOT/etc/group" 2>/dev/null || true)
    if [ -z "$uid" ] && [ "$user" = root ]; then uid=0; fi
    if [ -z "$uid" ] || [ -z "$gid" ]; then
        warn "no $user:$group in $ROOT/etc: ${file#"$ROOT"} keeps its owner"
        return 1
    fi
    if ! chown -- "$uid:$gid" "$file" 2>/dev/null; then
        warn "cannot chown ${file#"$ROOT"} to $user:$group ($uid:$gid) as $(id -un): left as is"
        return 1
    fi
}

# --- 4. config ------------------------------------------------------------------------------
CONF=$ROOT/etc/dermaguard/dermaguard.yaml
if [ -e "$CONF" ]; then
    say kept "/etc/dermaguard/dermaguard.yaml (exists: never overwritten)"
else
    mkdir -p -- "$(dirname "$CONF")"
    chmod 0755 -- "$(dirname "$CONF")"
    # Made 0640 before it gets its name: it may come to hold the MQTT password.
    tmp=$(mktemp "$CONF.XXXXXX")
    cp -- "$EXAMPLE_SRC" "$tmp"
    chmod 0640 -- "$tmp"
    mv -- "$tmp" "$CONF"
    owner="root:dermaguard"
    chown_target root dermaguard "$CONF" || owner="owner unchanged"
    say installed "/etc/dermaguard/dermaguard.yaml (the example config, mode 0640, $owner)"
    CHANGED=1
fi

# --- 5. unit --------------------------------------------------------------------------------
install_file "$UNIT_SRC" "$ROOT/etc/systemd/system/$UNIT" 0644 || true
install_file "$WEB_UNIT_SRC" "$ROOT/etc/systemd/system/$WEB_UNIT" 0644 || true

# --- 6. boot configuration ------------------------------------------------------------------
block() {
    printf '%s\n' "$BEGIN_MARK"
    cat -- "$FRAGMENT_SRC"
    printf '%s\n' "$END_MARK"
}
mkdir -p -- "$BOOT_DIR"
new_cfg=$(mktemp "$BOOT_DIR/.config.txt.XXXXXX")
{
    if [ -f "$BOOT_CFG" ]; then
        # The file without any dermaguard block and without trailing blank lines.
        awk -v b="$BEGIN_MARK" -v e="$END_MARK" '
            $0 == b { inside = 1; next }
            $0 == e { inside = 0; next }
            inside { next }
            /^[ \t\r]*$/ { blanks = blanks $0 "\n"; next }
            { printf "%s%s\n", blanks, $0; blanks = ""; seen = 1 }
            END { if (seen) print "" }' "$BOOT_CFG"
    fi
    block
} >"$new_cfg"
if [ -f "$BOOT_CFG" ] && cmp -s -- "$new_cfg" "$BOOT_CFG"; then
    rm -f -- "$new_cfg"
    say unchanged "/boot/firmware/config.txt (dermaguard block up to date)"
else
    if [ -f "$BOOT_CFG" ]; then
        [ -e "$BOOT_CFG.dermaguard-backup" ] || cp -p -- "$BOOT_CFG" "$BOOT_CFG.dermaguard-backup"
        chmod --reference="$BOOT_CFG" -- "$new_cfg" 2>/dev/null || true
        verb=updated
    else
        chmod 0644 -- "$new_cfg" 2>/dev/null || true
        verb=installed
    fi
    mv -- "$new_cfg" "$BOOT_CFG"
    say "$verb" "/boot/firmware/config.txt (dermaguard block between its markers)"
    REBOOT=1
fi

# --- 7. hardware watchdog -------------------------------------------------------------------
if install_file "$WATCHDOG_SRC" "$ROOT/etc/systemd/system.conf.d/dermaguard-watchdog.conf" 0644; then
    REBOOT=1
fi

# --- 8. a local broker, when none is configured ---------------------------------------------
# mqtt.host from the config (the top-level mqtt: section's host:), localhost when not set.
mqtt_host=$(awk '
    /^[^ \t#]/ { section = $1 }
    section == "mqtt:" && $1 == "host:" { print $2; exit }' "$CONF" 2>/dev/null | tr -d "\"'")
mqtt_host=${mqtt_host:-localhost}
broker_installed=0
if [ -z "$ROOT" ] && command -v dpkg-query >/dev/null 2>&1; then
    status=$(dpkg-query -W -f='${Status}' mosquitto 2>/dev/null || true)
    [ "$status" = "install ok installed" ] && broker_installed=1
fi
if [ -e "$ROOT$BROKER_CONF" ]; then
    broker_installed=1
fi
case $mqtt_host in
localhost | 127.0.0.1 | ::1) local_host=1 ;;
*) local_host=0 ;;
esac
if [ "$local_host" = 0 ]; then
    say skipped "local broker: mqtt.host is $mqtt_host (a broker is configured)"
    want_broker=no
elif [ "$LOCAL_BROKER" = ask ] && [ "$broker_installed" = 1 ] && [ ! -e "$ROOT$BROKER_CONF" ]; then
    say unchanged "local broker: mosquitto is installed here (its own configuration is kept)"
    want_broker=no
elif [ "$LOCAL_BROKER" = ask ] && [ ! -e "$ROOT$BROKER_CONF" ]; then
    if [ -t 0 ]; then
        printf 'No MQTT broker is configured (mqtt.host is %s). Install Mosquitto here, on the\n' \
            "$mqtt_host"
        printf 'loopback only, for the daemon and the web dashboard? [Y/n] '
        read -r answer || answer=n
        case $answer in [nN]*) want_broker=no ;; *) want_broker=yes ;; esac
    else
        say offered "local broker: none is configured; run again with --local-broker to install Mosquitto on 127.0.0.1 for the daemon and the dashboard"
        want_broker=no
    fi
else
    want_broker=$LOCAL_BROKER
    [ -e "$ROOT$BROKER_CONF" ] && [ "$LOCAL_BROKER" != no ] && want_broker=yes
fi
if [ "$want_broker" = yes ]; then
    broker_src=$(mktemp)
    cat >"$broker_src" <<'CONF'
# dermaguard (firmware/provision.sh): a broker for this Pi alone, shared by the daemon and the
# web dashboard. Only the loopback: nothing on the network can reach it.
listener 1883 127.0.0.1
allow_anonymous true
CONF
    broker_changed=0
    if install_file "$broker_src" "$ROOT$BROKER_CONF" 0644; then broker_changed=1; fi
    rm -f -- "$broker_src"
    if [ -n "$ROOT" ]; then
        say skipped "apt (--root): the target needs mosquitto for $BROKER_CONF"
    else
        status=$(dpkg-query -W -f='${Status}' mosquitto 2>/dev/null || true)
        if [ "$status" != "install ok installed" ]; then
            if [ -n "$OFFLINE" ] && ! apt_has mosquitto; then
                die "--offline $OFFLINE has no debs/mosquitto/*.deb for the local broker"
            fi
            apt_install mosquitto
            say installed "apt: mosquitto${OFFLINE:+ (offline, from $OFFLINE/debs)}"
        fi
        systemctl --quiet enable --now mosquitto
        if [ "$broker_changed" = 1 ]; then systemctl restart mosquitto; fi
        say started "mosquitto on 127.0.0.1:1883"
    fi
fi

# --- 8b. enable (and start) -----------------------------------------------------------------
for unit in "$UNIT" "$WEB_UNIT"; do
    if [ -n "$ROOT" ]; then
        systemctl --root="$ROOT" --quiet enable "$unit" 2>/dev/null ||
            die "systemctl --root=$ROOT enable $unit failed"
        say enabled "$unit (offline, under --root: not started)"
    else
        [ "$unit" = "$UNIT" ] && systemctl daemon-reload
        was_active=0
        if systemctl --quiet is-active "$unit"; then was_active=1; fi
        systemctl --quiet enable --now "$unit"
        if [ "$was_active" = 1 ] && [ "$CHANGED" = 1 ]; then
            systemctl restart "$unit"
            say restarted "$unit (it was running: now on the new version)"
        else
            say started "$unit (enabled)"
        fi
    fi
done

# --- 9. the SPI device of the HX711 -------------------------------------------------------
SPI_WARNING=0

# user_can_open USER FILE: whether USER may open FILE for reading and writing, going by FILE's
# owner, group and mode and USER's groups in (under --root, DIR's) /etc/passwd and /etc/group.
user_can_open() {
    local user=$1 file=$2 uid gid gids owner group mode bits
    uid=$(awk -F: -v n="$user" '$1 == n { print $3 }' "$ROOT/etc/passwd" 2>/dev/null || true)
    gid=$(awk -F: -v n="$user" '$1 == n { print $4 }' "$ROOT/etc/passwd" 2>/dev/null || true)
    [ -n "$uid" ] || return 1
    gids=" $gid $(awk -F: -v n="$user" '
        { k = split($4, m, ","); for (i = 1; i <= k; i++) if (m[i] == n) printf "%s ", $3 }' \
        "$ROOT/etc/group" 2>/dev/null || true)"
    read -r owner group mode < <(stat -L -c '%u %g %a' -- "$file")
    mode=$((8#$mode))
    if [ "$owner" = "$uid" ]; then
        bits=$((mode >> 6 & 6))
    elif [[ $gids == *" $group "* ]]; then
        bits=$((mode >> 3 & 6))
    else
        bits=$((mode & 6))
    fi
    [ "$bits" = 6 ]
}

# name_of FILE ID: the name of ID in (DIR's) /etc/passwd or /etc/group, else the number.
name_of() {
    local name
    name=$(awk -F: -v id="$2" '$3 == id { print $1; exit }' "$ROOT/etc/$1" 2>/dev/null || true)
    if [ -z "$name" ] && [ "$2" = 0 ]; then name=root; fi
    printf '%s' "${name:-$2}"
}

# Whether the running system booted before the boot configuration last changed (so SPI0 is not
# on yet): this run changed it, or config.txt is newer than the boot.
reboot_pending() {
    [ "$REBOOT" = 1 ] && return 0
    local booted changed
    booted=$(awk '$1 == "btime" { print $2 }' /proc/stat 2>/dev/null || true)
    changed=$(stat -c %Y -- "$BOOT_CFG" 2>/dev/null || true)
    [ -n "$booted" ] && [ -n "$changed" ] && [ "$changed" -gt "$booted" ]
}

spi_dev=$ROOT$SPI_DEV
if [ -e "$spi_dev" ]; then
    if user_can_open "$SERVICE_USER" "$spi_dev"; then
        say checked "$SPI_DEV: user $SERVICE_USER can open it (the HX711's SPI bus)"
    else
        read -r owner group mode < <(stat -L -c '%u %g %a' -- "$spi_dev")
        warn "user $SERVICE_USER cannot open $SPI_DEV for reading and writing" \
            "(owner $(name_of passwd "$owner"):$(name_of group "$group"), mode $mode):" \
            "the HX711 cannot be read with hx711.interface spi. Raspberry Pi OS's udev rules" \
            "give it to group spi, mode 0660, and $SERVICE_USER is a member of spi: check" \
            "/usr/lib/udev/rules.d/99-com.rules and any rule of yours in /etc/udev/rules.d"
        SPI_WARNING=1
    fi
elif [ -n "$ROOT" ]; then
    say later "$SPI_DEV appears when the target boots (dtparam=spi=on): not checked"
elif reboot_pending; then
    say reboot "$SPI_DEV is not there yet: SPI0 turns on at the next boot (dtparam=spi=on)"
else
    warn "no $SPI_DEV although this boot read dtparam=spi=on: a line after the dermaguard" \
        "block in $BOOT_CFG may turn SPI off again (dtparam=spi=off, or an overlay on GPIO" \
        "7-11); the HX711 cannot be read with hx711.interface spi (the default) until it is there"
    SPI_WARNING=1
fi

if [ "$SPI_WARNING" = 1 ]; then
    say finished "provisioned${ROOT:+ $ROOT}, but see the warning about $SPI_DEV above"
elif [ "$REBOOT" = 1 ] || { [ -z "$ROOT" ] && [ ! -e "$SPI_DEV" ]; }; then
    if [ -n "$ROOT" ]; then
        say finished "provisioned $ROOT; the boot configuration applies when the target boots"
    else
        say finished "reboot to apply the boot configuration (GPIO levels, SPI0, watchdog)"
    fi
else
    say finished "provisioned${ROOT:+ $ROOT}"
fi
