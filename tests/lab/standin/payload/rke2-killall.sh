#!/bin/sh
# Stand-in rke2-killall.sh (rke2-manager test lab): stop RKE2 services and processes.
[ "$(id -u)" -eq 0 ] || { echo "[ERROR] must be run as root" >&2; exit 1; }
for service in rke2-server rke2-agent; do
    systemctl stop "$service.service" >/dev/null 2>&1 || true
done
# Whatever still runs (started by hand, or a unit that was already gone).
pkill -KILL -x rke2 2>/dev/null || true
rm -rf /run/k3s
exit 0
