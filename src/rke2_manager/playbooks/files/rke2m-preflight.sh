# shellcheck shell=sh
# rke2-manager's preflight checks on a node (docs/preflight.md), run by tasks/preflight.yml as
#
#   sh -c "<this script>" rke2m-preflight ROLE REACH SUPERVISOR_PORT
#
# inside a fenced raw step. ROLE is server or agent; REACH is the address new nodes register
# through, to check that its supervisor and API ports answer from here ("" where no server runs
# yet). Read-only: it changes nothing on the node. Prints one line per check
#
#   rke2m-preflight|<check>|<pass|warn|fail>|<what was found>|<how to fix it>
#
# then "rke2m-preflight-time|<unix time>" last (the manager works out the clock skew from it).
# Exits 0 once every check has reported; a check that cannot look where it must fails the
# script (exit 1, the reason on stderr): nothing is passed unchecked.
set -u

role=${1:?role}
reach=${2-}
supervisor_port=${3:-9345}
GiB=1048576 # KiB

die() {
    printf 'preflight: %s\n' "$*" >&2
    exit 1
}

# report CHECK RESULT MESSAGE FIX: one result line ("|" and newlines cannot occur inside fields)
report() {
    printf 'rke2m-preflight|%s|%s|%s|%s\n' "$1" "$2" \
        "$(printf '%s' "$3" | tr '|\n' '/ ')" "$(printf '%s' "${4-}" | tr '|\n' '/ ')"
}

# gib KIB: KiB as GiB with one decimal
gib() {
    awk -v k="$1" 'BEGIN { printf "%.1f GiB", k / 1048576 }'
}

# running NAME: whether a process whose command name is NAME runs on the node
running() {
    grep -sqx "$1" /proc/[0-9]*/comm
}

# --- SSH and sudo --------------------------------------------------------------------------
user=${SUDO_USER:-$(id -un)}
report ssh pass "connected as $user" ""
uid=$(id -u)
if [ "$uid" != 0 ]; then
    report sudo fail "commands run as $(id -un) (uid $uid), not root" \
        "give the SSH user passwordless sudo, or connect as root"
elif [ -n "${SUDO_USER:-}" ]; then
    report sudo pass "commands run as root through sudo" ""
else
    report sudo pass "commands run as root" ""
fi

# --- OS and architecture -------------------------------------------------------------------
kernel=$(uname -s)
name=$(sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2>/dev/null | tr -d '"')
[ -n "$name" ] || name="$kernel (no /etc/os-release)"
if [ "$kernel" != Linux ]; then
    report os fail "$name: not Linux" "RKE2 servers and Linux agents need Linux"
elif [ ! -d /run/systemd/system ]; then
    report os fail "$name without systemd (/run/systemd/system is missing)" \
        "RKE2 installs systemd units: use a distribution that boots with systemd"
elif [ ! -r /etc/os-release ]; then
    report os warn "$name, systemd" "an OS without /etc/os-release is not one RKE2 was validated on"
else
    report os pass "$name, systemd" ""
fi
machine=$(uname -m)
case $machine in
x86_64 | amd64) report arch pass "$machine (amd64)" "" ;;
aarch64 | arm64) report arch pass "$machine (arm64)" "" ;;
*) report arch fail "$machine" "RKE2 is built for x86_64 (amd64) and aarch64 (arm64) only" ;;
esac

# --- CPU and memory (RKE2's documented minimum: 2 CPUs and 4 GB) ---------------------------
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null) || cpus=$(nproc) || die "cannot count the CPUs"
case $cpus in '' | *[!0-9]*) die "cannot count the CPUs (got '$cpus')" ;; esac
if [ "$cpus" -ge 2 ]; then
    report cpu pass "$cpus CPUs" ""
elif [ "$role" = server ]; then
    report cpu fail "$cpus CPU; a server needs at least 2" "give the machine 2 or more CPUs (4 recommended)"
else
    report cpu warn "$cpus CPU; RKE2 documents 2 as the minimum" "give the machine 2 or more CPUs"
fi
[ -r /proc/meminfo ] || die "cannot read /proc/meminfo"
mem=$(sed -n 's/^MemTotal:[[:space:]]*\([0-9][0-9]*\) kB$/\1/p' /proc/meminfo)
[ -n "$mem" ] || die "no MemTotal in /proc/meminfo"
# What a machine of 4 (2) GB shows as MemTotal after the kernel's own reservations.
if [ "$mem" -ge $((GiB * 7 / 2)) ]; then
    report memory pass "$(gib "$mem") of memory" ""
elif [ "$role" = server ]; then
    report memory fail "$(gib "$mem") of memory; a server needs 4 GB" \
        "give the machine at least 4 GB of memory (8 GB recommended)"
elif [ "$mem" -ge $((GiB * 7 / 4)) ]; then
    report memory warn "$(gib "$mem") of memory; RKE2 documents 4 GB as the minimum" \
        "give the machine 4 GB of memory or more"
else
    report memory fail "$(gib "$mem") of memory; an agent needs at least 2 GB" \
        "give the machine at least 2 GB of memory (4 GB documented)"
fi

# --- ports RKE2 listens on: free, or held by RKE2 itself -------------------------------------
[ -r /proc/net/tcp ] || die "cannot read /proc/net/tcp"
tables=/proc/net/tcp
[ -r /proc/net/tcp6 ] && tables="$tables /proc/net/tcp6"
# shellcheck disable=SC2086 # word splitting of the table list is meant
listening=$(awk 'FNR > 1 && $4 == "0A" { n = split($2, a, ":"); print a[n], $10 }' $tables)
if [ "$role" = server ]; then
    ports="6443 $supervisor_port 10250 2379 2380"
else
    ports=10250
fi
taken="" own=""
for port in $ports; do
    hex=$(printf '%04X' "$port")
    inode=$(printf '%s\n' "$listening" | awk -v p="$hex" '$1 == p { print $2; exit }')
    [ -n "$inode" ] || continue
    fd=$(find /proc/[0-9]*/fd -lname "socket:\[$inode\]" 2>/dev/null | head -n 1)
    pid=${fd#/proc/}
    pid=${pid%%/*}
    comm=""
    [ -n "$fd" ] && comm=$(cat "/proc/$pid/comm" 2>/dev/null)
    case $comm in
    rke2 | kube-apiserver | etcd | kubelet) own="$own${own:+, }$port ($comm)" ;;
    "") taken="$taken${taken:+, }$port (by a process not found)" ;;
    *) taken="$taken${taken:+, }$port (by $comm, pid $pid)" ;;
    esac
done
need=$(printf '%s' "$ports" | sed 's/ /, /g')
if [ -n "$taken" ]; then
    report ports fail "in use: $taken" \
        "stop what listens there (ss -ltnp shows it): a $role needs TCP $need free for RKE2"
elif [ -n "$own" ]; then
    report ports pass "TCP $need free or held by RKE2 itself: $own" ""
else
    report ports pass "TCP $need free" ""
fi

# --- the servers' supervisor and API ports, reached from here -------------------------------
if [ -z "$reach" ]; then
    report reach pass "not checked: no server runs yet to reach" ""
else
    python=$(cat /var/lib/rke2-manager/python 2>/dev/null)
    [ -x "$python" ] || die "no Python recorded in /var/lib/rke2-manager/python (the fence's raise finds it)"
    failed=""
    for port in "$supervisor_port" 6443; do
        why=$("$python" -c 'import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), 5).close()
except OSError as exc:
    print(exc.strerror or exc or "no answer")
    sys.exit(1)' "$reach" "$port" 2>&1) || failed="$failed${failed:+; }$reach:$port ($why)"
    done
    if [ -n "$failed" ]; then
        report reach fail "cannot reach $failed" \
            "allow TCP $supervisor_port and 6443 from this node to $reach (the servers' supervisor and API) in every firewall between them"
    else
        report reach pass "$reach answers on TCP $supervisor_port and 6443" ""
    fi
fi

# --- swap ----------------------------------------------------------------------------------
[ -r /proc/swaps ] || die "cannot read /proc/swaps"
swaps=$(awk 'NR > 1 { printf "%s%s (%.1f GiB)", sep, $1, $3 / 1048576; sep = ", " }' /proc/swaps)
if [ -n "$swaps" ]; then
    report swap warn "swap is on: $swaps" \
        "turn it off (swapoff -a) and remove its entries from /etc/fstab: the kubelet's memory limits and evictions assume no swap"
else
    report swap pass "no swap" ""
fi

# --- NetworkManager and firewalld ----------------------------------------------------------
cloud_setup=""
for unit in /etc/systemd/system/*.wants/nm-cloud-setup.*; do
    [ -e "$unit" ] && cloud_setup=$unit
done
if [ -n "$cloud_setup" ]; then
    report networkmanager fail "nm-cloud-setup is enabled ($cloud_setup): RKE2's units refuse to start while it is" \
        "systemctl disable --now nm-cloud-setup.service nm-cloud-setup.timer, then reboot"
elif ! running NetworkManager; then
    report networkmanager pass "NetworkManager is not running" ""
elif grep -rhs '^[[:space:]]*unmanaged-devices[[:space:]]*=' /etc/NetworkManager/NetworkManager.conf \
    /etc/NetworkManager/conf.d | grep 'cali' | grep -q 'flannel'; then
    report networkmanager pass "NetworkManager runs and leaves the CNI's interfaces alone" ""
else
    report networkmanager warn "NetworkManager runs and may take over the CNI's interfaces (cali*, flannel*)" \
        "write /etc/NetworkManager/conf.d/rke2-canal.conf: [keyfile] unmanaged-devices=interface-name:flannel*;interface-name:cali*;interface-name:tunl*;interface-name:vxlan.calico;interface-name:vxlan-v6.calico;interface-name:wireguard.cali;interface-name:wg-v6.cali, then systemctl reload NetworkManager"
fi
if running firewalld; then
    report firewalld warn "firewalld runs: it conflicts with RKE2's default networking (Canal)" \
        "systemctl disable --now firewalld (Canal keeps its own iptables rules)"
else
    report firewalld pass "firewalld is not running" ""
fi

# --- free disk where RKE2 keeps its data ---------------------------------------------------
dir=/var/lib/rancher/rke2
while [ ! -d "$dir" ]; do dir=$(dirname "$dir"); done
free=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
case $free in '' | *[!0-9]*) die "cannot read the free space of $dir (df said '$free')" ;; esac
if [ "$free" -lt $((GiB * 5)) ]; then
    report disk fail "$(gib "$free") free on $dir" \
        "free at least 5 GiB there (20 GiB recommended): images and etcd data live under /var/lib/rancher/rke2"
elif [ "$free" -lt $((GiB * 20)) ]; then
    report disk warn "$(gib "$free") free on $dir" "free 20 GiB or more: images and etcd data grow"
else
    report disk pass "$(gib "$free") free on $dir" ""
fi

printf 'rke2m-preflight-time|%s\n' "$(date +%s)"
