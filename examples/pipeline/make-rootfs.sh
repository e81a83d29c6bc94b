#!/bin/sh
# Builds ./rootfs: Debian's static busybox as /bin/busybox plus one symlink
# per applet (/bin/sh -> busybox, ...), then adds it to the store and prints
# its tree digest. The tree is a function of the busybox binary only, so the
# same Debian package gives the same digest on every machine.
#
#   ./make-rootfs.sh            # uses /bin/busybox (apt-get install busybox-static)
#   BUSYBOX=/path/to/busybox CAIRN=/path/to/cairn ./make-rootfs.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
busybox=${BUSYBOX:-/bin/busybox}
cairn=${CAIRN:-cairn}
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
    if ! "$busybox" --list >/dev/null 2>&1; then
        echo "make-rootfs.sh: $busybox not found; apt-get install busybox-static" >&2
        exit 1
    fi
fi
rootfs="$here/rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs/bin"
cp "$busybox" "$rootfs/bin/busybox"
chmod 755 "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
"$cairn" store add "$rootfs"
