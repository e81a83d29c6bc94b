#!/bin/sh
# Builds ./toolchain: a minimal C toolchain copied from the host (Debian 12's
# gcc, binutils and libc6-dev): the compiler driver, cc1, as, ld, collect2,
# the shared libraries they load (found with ldd), gcc's own headers and
# runtime objects, libc's headers and its static libc.a. Symlinks are
# resolved while copying, so the tree is self-contained. Then it adds the
# tree to the store and prints its digest.
#
#   ./make-toolchain.sh        # needs gcc and libc6-dev (apt-get install gcc libc6-dev)
#   CAIRN=/path/to/cairn ./make-toolchain.sh
#   ./make-toolchain.sh DIR    # into DIR instead of ./toolchain
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cairn=${CAIRN:-cairn}
command -v gcc >/dev/null || { echo "make-toolchain.sh: gcc not found; apt-get install gcc libc6-dev" >&2; exit 1; }
tc=${1:-"$here/toolchain"}
rm -rf "$tc"
mkdir -p "$tc"

# copy FILE...: each to the same path under $tc, following symlinks.
copy() {
    for f in "$@"; do
        mkdir -p "$tc$(dirname "$f")"
        cp -L "$f" "$tc$f"
    done
}

gcc_dir=$(dirname "$(gcc -print-prog-name=cc1)")
multiarch=$(gcc -print-multiarch)
tools="/usr/bin/gcc /usr/bin/as /usr/bin/ld $gcc_dir/cc1 $gcc_dir/collect2 $gcc_dir/lto-wrapper"
copy $tools "$gcc_dir/liblto_plugin.so" "$gcc_dir"/crt*.o "$gcc_dir/libgcc.a" "$gcc_dir/libgcc_eh.a"
copy $(ldd $tools | awk '/=>/ { print $3 } /^\t\// { print $1 }' | sort -u)
mkdir -p "$tc$gcc_dir"
cp -rL "$gcc_dir/include" "$tc$gcc_dir/include"
libdir=/usr/lib/$multiarch
copy "$libdir/crt1.o" "$libdir/crti.o" "$libdir/crtn.o" "$libdir/libc.a" "$libdir/libm.a"
copy $(dpkg -L libc6-dev linux-libc-dev | grep '^/usr/include/.*\.h$' | sort -u)

"$cairn" store add "$tc"
