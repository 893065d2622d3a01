#!/bin/sh
# Stand-in rke2-uninstall.sh (rke2-manager test lab): killall, then remove units, binaries,
# /etc/rancher/rke2 and /var/lib/rancher/rke2, as RKE2's uninstall script does.
set -e
[ "$(id -u)" -eq 0 ] || { echo "[ERROR] must be run as root" >&2; exit 1; }
PREFIX=$(cd "$(dirname "$0")/.." && pwd)

"$PREFIX/bin/rke2-killall.sh" || true
for service in rke2-server rke2-agent; do
    systemctl disable "$service.service" >/dev/null 2>&1 || true
    systemctl reset-failed "$service.service" >/dev/null 2>&1 || true
done
rm -f "$PREFIX"/lib/systemd/system/rke2-*.service "$PREFIX"/lib/systemd/system/rke2-*.env
rm -f /etc/systemd/system/rke2-*.service
systemctl daemon-reload >/dev/null 2>&1 || true
rm -f "$PREFIX/bin/rke2" "$PREFIX/bin/rke2-killall.sh"
rm -rf "$PREFIX/share/rke2"
rm -rf /etc/rancher/rke2 /etc/rancher/node
rmdir /etc/rancher 2>/dev/null || true
rm -rf /var/lib/rancher/rke2 /var/lib/kubelet
rmdir /var/lib/rancher 2>/dev/null || true
rm -f "$PREFIX/bin/rke2-uninstall.sh"
