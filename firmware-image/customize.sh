#!/bin/sh
# mmdebstrap customize hook: install the gateway into the root filesystem at "$1".
# Called by build.sh with WORK, TOP, HERE, HARDWARE and RELEASE_PUB in the environment.
set -eu
R="$1"

# the gateway and its pinned dependencies, from the wheels build.sh collected (no network here)
mkdir -p "$R/tmp/wheels"
cp "$WORK"/wheels/*.whl "$R/tmp/wheels/"
chroot "$R" python3 -m venv /opt/avila-edge/venv
chroot "$R" /opt/avila-edge/venv/bin/pip install --quiet --no-index --no-compile --no-cache-dir \
    --find-links /tmp/wheels avila-edge
# the root is read-only: compile now, with hashes instead of timestamps so the bytes are reproducible
chroot "$R" /opt/avila-edge/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
    /opt/avila-edge/venv/lib >/dev/null
rm -rf "$R/tmp/wheels"
mkdir -p "$R/opt/avila-edge/docs"
cp "$TOP"/docs/*.md "$R/opt/avila-edge/docs/"

# units, broker configuration, site, provisioning, mounts
cp "$TOP"/systemd/*.service "$R/etc/systemd/system/"
# the generator gives avila-edge.service the serial ports the site names (and no other device)
install -D -m 0755 "$TOP/systemd/avila-edge-devices-generator" \
    "$R/usr/lib/systemd/system-generators/avila-edge-devices-generator"
mkdir -p "$R/etc/avila-edge/credentials"
cp "$TOP/systemd/avila-edge-mosquitto.conf" "$R/etc/avila-edge/mosquitto.conf"
cp -R "$HERE"/rootfs/. "$R/"
: > "$R/etc/avila-edge/credentials/uplink-password"   # LoadCredential= needs the file; empty = no uplink
: > "$R/etc/avila-edge/mosquitto.passwd"               # no broker users until the site is configured
chmod 0700 "$R/etc/avila-edge/credentials"
chmod 0600 "$R/etc/avila-edge/credentials/uplink-password"
echo "$HARDWARE" > "$R/etc/avila-edge/hardware"
cp "$RELEASE_PUB" "$R/etc/avila-edge/update-keys"
chmod 0644 "$R/etc/avila-edge/site.yaml" "$R/etc/avila-edge/mosquitto.conf" "$R/etc/avila-edge/hardware" \
    "$R/etc/avila-edge/update-keys" "$R/etc/avila-edge/mosquitto.passwd"

chroot "$R" systemctl enable systemd-networkd.service avila-edge-provision.service avila-edge-mosquitto.service \
    avila-edge.service avila-edge-update-boot.service avila-edge-update-commit.service
chroot "$R" systemctl mask mosquitto.service   # Debian's own broker: avila-edge-mosquitto replaces it
chroot "$R" systemctl set-default multi-user.target
mkdir -p "$R/data"

# machine-id is made at every boot on a read-only root; no root password: the console is the web UI
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
