#!/bin/sh
# Stand-in RKE2 installer for rke2-manager's end-to-end test lab: the air-gap (artifact) path
# of RKE2's install script. It verifies the tarball, unpacks it under /usr/local and reloads
# systemd; like the real one it neither enables nor starts anything.
set -e

info() { echo "[INFO]  $*"; }
fatal() { echo "[ERROR] $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fatal "You need to be root to perform this install"
ARTIFACT_PATH=${INSTALL_RKE2_ARTIFACT_PATH:-}
[ -n "$ARTIFACT_PATH" ] || fatal "this stand-in installer needs INSTALL_RKE2_ARTIFACT_PATH"
TYPE=${INSTALL_RKE2_TYPE:-server}
case "$TYPE" in
    server|agent) ;;
    *) fatal "Invalid INSTALL_RKE2_TYPE: $TYPE (server or agent)" ;;
esac
METHOD=${INSTALL_RKE2_METHOD:-tar}
[ "$METHOD" = tar ] || fatal "this stand-in installer supports INSTALL_RKE2_METHOD=tar only"
PREFIX=${INSTALL_RKE2_TAR_PREFIX:-/usr/local}
SUMS="$ARTIFACT_PATH/sha256sum-amd64.txt"
TARBALL="$ARTIFACT_PATH/rke2.linux-amd64.tar.gz"

[ -f "$SUMS" ] || fatal "$SUMS does not exist"
[ -f "$TARBALL" ] || fatal "$TARBALL does not exist"
info "staging local checksums from $SUMS"
info "staging tarball from $TARBALL"
expected=$(grep "rke2.linux-amd64.tar.gz" "$SUMS" | awk '{print $1}')
actual=$(sha256sum "$TARBALL" | awk '{print $1}')
info "verifying tarball"
if [ "$expected" != "$actual" ]; then
    fatal "download sha256 does not match ${expected}, got ${actual}"
fi
for images in "$ARTIFACT_PATH"/rke2-images*.tar*; do
    if [ -f "$images" ]; then
        info "staging $images"
        mkdir -p /var/lib/rancher/rke2/agent/images
        cp -f "$images" /var/lib/rancher/rke2/agent/images/
    fi
done
info "installing tarball to $PREFIX"
mkdir -p "$PREFIX"
tar xzf "$TARBALL" -C "$PREFIX"
if [ "$PREFIX" != /usr/local ]; then
    for unit in "$PREFIX"/lib/systemd/system/rke2-*.service; do
        sed "s|/usr/local|$PREFIX|g" "$unit" > "/etc/systemd/system/$(basename "$unit")"
    done
fi
if command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload
fi
info "installed $TYPE (stand-in); enable and start rke2-$TYPE.service to run it"
