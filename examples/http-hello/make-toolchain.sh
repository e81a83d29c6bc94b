#!/bin/sh
# Builds ./toolchain, the same minimal C toolchain as examples/c-hello (see
# its make-toolchain.sh), adds it to the store and prints its digest.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/../c-hello/make-toolchain.sh" "$here/toolchain"
