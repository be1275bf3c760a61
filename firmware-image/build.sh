#!/bin/sh
# Build a flashable avila-edge gateway image and a signed update bundle.
#
#   firmware-image/build.sh [amd64|arm64]
#
# Output in firmware-image/out/ (OUT=... to move it):
#   avila-edge-<arch>.img              GPT disk: root-a (ext4, read-only at run time), root-b (empty,
#                                      the other slot), data (ext4: /var/lib, the journal, slots)
#   avila-edge-<arch>.vmlinuz, .initrd the kernel and initramfs, for QEMU's direct kernel boot
#   avila-edge-<version>-<arch>.bundle the root filesystem as a signed update bundle
#
# Needs: root, mmdebstrap, e2fsprogs, fdisk (sfdisk); for arm64 on x86 also qemu-user-static and
# binfmt-support. The release key is RELEASE_KEY (default out/release.ed25519, made if missing: a
# development key; production keys never sit in a build tree). SOURCE_DATE_EPOCH fixes every time
# stamp (default: the last commit), so two builds of the same tree and mirror snapshot
# (MIRROR=http://snapshot.debian.org/archive/debian/<date>/) give the same root filesystem.
set -eu

ARCH="${1:-amd64}"
case "$ARCH" in
    amd64) CPU=x86_64; KERNEL=linux-image-amd64; HARDWARE=avila,gw-amd64-qemu ;;
    arm64) CPU=aarch64; KERNEL=linux-image-arm64; HARDWARE=avila,gw-arm64 ;;
    *) echo "usage: $0 [amd64|arm64]" >&2; exit 2 ;;
esac
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
OUT="${OUT:-$HERE/out}"
WORK="$OUT/work-$ARCH"
PY="${PYTHON:-$TOP/.venv/bin/python}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
ROOT_MB="${ROOT_MB:-1536}"
DATA_MB="${DATA_MB:-4096}"   # the journal, and the directory slot store (two slot images)
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$TOP" log -1 --format=%ct 2>/dev/null || echo 1700000000)}"
export SOURCE_DATE_EPOCH E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH"
started=$(date +%s)
step() { echo "[$(( $(date +%s) - started ))s] $*"; }

if [ "$ARCH" != "$(dpkg --print-architecture 2>/dev/null || echo amd64)" ] \
        && [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$CPU" ]; then
    # a foreign root filesystem runs its maintainer scripts through qemu-user: register it
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
    update-binfmts --enable "qemu-$CPU" 2>/dev/null || true
    if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$CPU" ]; then
        echo "$0: building $ARCH needs qemu-user-static and binfmt-support (apt-get install qemu-user-static binfmt-support)" >&2
        exit 1
    fi
fi
if grep -q " $WORK/" /proc/mounts; then
    echo "$0: something is still mounted under $WORK (an interrupted build?); unmount it first" >&2
    exit 1
fi
rm -rf "$WORK"
mkdir -p "$WORK/wheels" "$OUT"

step "release key"
RELEASE_KEY="${RELEASE_KEY:-$OUT/release.ed25519}"
[ -e "$RELEASE_KEY" ] || "$PY" -m avila_edge.cli update keygen --out "$RELEASE_KEY" >/dev/null
RELEASE_PUB="$RELEASE_KEY.pub"
VERSION=$("$PY" -c 'import avila_edge; print(avila_edge.__version__)')

# bookworm has glibc 2.36: every manylinux wheel up to that runs there
PLATFORMS="--platform manylinux2014_$CPU"
for glibc in 17 27 28 31 34 35 36; do PLATFORMS="$PLATFORMS --platform manylinux_2_${glibc}_$CPU"; done
step "wheels: avila-edge $VERSION and its dependencies pinned to this environment, for $CPU"
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$WORK/wheels" "$TOP"
"$PY" -m pip freeze --exclude-editable | grep -vi '^avila[-_]edge' > "$WORK/constraints.txt"
"$PY" -m pip download --quiet -d "$WORK/wheels" --only-binary=:all: $PLATFORMS \
    --python-version 3.11 --implementation cp -c "$WORK/constraints.txt" "$WORK"/wheels/avila_edge-*.whl

step "root filesystem (mmdebstrap, bookworm $ARCH)"
export WORK TOP HERE HARDWARE RELEASE_PUB
mmdebstrap --quiet --mode=root --variant=apt --architectures="$ARCH" \
    --include="systemd,systemd-sysv,udev,dbus,libnss-systemd,$KERNEL,initramfs-tools,python3,python3-venv,mosquitto,openssl,ca-certificates,iproute2,e2fsprogs,sqlite3" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook="$HERE/customize.sh \"\$1\"" \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    bookworm "$WORK/rootfs" "$MIRROR"

step "kernel and initramfs"
cp "$WORK"/rootfs/boot/vmlinuz-* "$OUT/avila-edge-$ARCH.vmlinuz"
cp "$WORK"/rootfs/boot/initrd.img-* "$OUT/avila-edge-$ARCH.initrd"

step "data partition: /var/lib moves there, the root keeps an empty mount point"
mkdir -p "$WORK/data"
mv "$WORK/rootfs/var/lib" "$WORK/data/var-lib"
mkdir -p "$WORK/rootfs/var/lib"
uuid() { "$PY" -c "import uuid,sys; print(uuid.uuid5(uuid.NAMESPACE_URL, sys.argv[1]))" "$1"; }
mkfs.ext4 -q -F -L root -U "$(uuid "avila-edge/$VERSION/$ARCH/root")" -E "hash_seed=$(uuid "avila-edge/$VERSION/$ARCH/hash")" \
    -d "$WORK/rootfs" "$WORK/root.ext4" "${ROOT_MB}M"
mkfs.ext4 -q -F -L data -U "$(uuid "avila-edge/$VERSION/$ARCH/data")" -E "hash_seed=$(uuid "avila-edge/$VERSION/$ARCH/dhash")" \
    -d "$WORK/data" "$WORK/data.ext4" "${DATA_MB}M"

step "disk image"
IMG="$OUT/avila-edge-$ARCH.img"
rm -f "$IMG"
truncate -s $(( (1 + ROOT_MB + ROOT_MB + DATA_MB + 1) * 1024 * 1024 )) "$IMG"
sfdisk --quiet "$IMG" <<PARTS
label: gpt
label-id: $(uuid "avila-edge/$VERSION/$ARCH/disk")
start=1MiB, size=${ROOT_MB}MiB, type=linux, name=root-a
size=${ROOT_MB}MiB, type=linux, name=root-b
size=${DATA_MB}MiB, type=linux, name=data
PARTS
dd if="$WORK/root.ext4" of="$IMG" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$WORK/data.ext4" of="$IMG" bs=1M seek=$(( 1 + 2 * ROOT_MB )) conv=notrunc,sparse status=none

step "signed update bundle"
BUNDLE="$OUT/avila-edge-$VERSION-$ARCH.bundle"
# the slot image: the same root file system in an ext4 just big enough for it (installing it into a
# partition grows it with resize2fs; the directory slot store keeps it as it is)
SLOT_MB=$(( $(du -sm "$WORK/rootfs" | cut -f1) * 115 / 100 + 64 ))
mkfs.ext4 -q -F -L root -U "$(uuid "avila-edge/$VERSION/$ARCH/root")" -E "hash_seed=$(uuid "avila-edge/$VERSION/$ARCH/hash")" \
    -d "$WORK/rootfs" "$WORK/slot.ext4" "${SLOT_MB}M"
"$PY" -m avila_edge.cli update sign --key-file "$RELEASE_KEY" --version "$VERSION" --hardware "$HARDWARE" \
    --image "$WORK/slot.ext4" --out "$BUNDLE" >/dev/null
rm -f "$WORK/slot.ext4"

rm -rf "$WORK/rootfs" "$WORK/data" "$WORK/root.ext4" "$WORK/data.ext4"
step "done: $IMG ($(du -h --apparent-size "$IMG" | cut -f1), $(du -h "$IMG" | cut -f1) allocated), $BUNDLE ($(du -h "$BUNDLE" | cut -f1))"
