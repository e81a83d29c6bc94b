#!/usr/bin/env python3
"""How should a local store create 20,000 small blobs? A file-system
micro-benchmark for bench/RESULTS.md ("what we learned"), independent of
cairn's code: it writes the same bytes under the same names as cairn's
`blobs/ab/abcd…` layout, three ways, then syncfs(2)s.

  current   write tmp/<n>, rename into blobs/ab/<hex>      (cairn today)
  samedir   write blobs/ab/.tmp-<n>, rename within the shard
  tmpfile   O_TMPFILE in blobs/ab/, linkat into place       (no temp name)

Usage: python3 bench/blob_create.py TREE SCRATCH [ROUNDS]
Each round runs the three variants (order rotated) into fresh directories;
nothing is deleted until the end, so no variant allocates inodes right after
another's deletion (on ext4 without a journal, freshly freed inodes are
skipped one by one: see recently_deleted() in fs/ext4/ialloc.c).
Input files are read (and hashed) before timing starts.
"""
import ctypes, hashlib, os, shutil, sys, time

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, AT_SYMLINK_FOLLOW = -100, 0x400


def load(tree):
    blobs = {}
    for d, _, files in os.walk(tree):
        for f in files:
            data = open(os.path.join(d, f), "rb").read()
            blobs[hashlib.sha256(data).hexdigest()] = data
    return list(blobs.items())


def store_dirs(root):
    for b in range(256):
        os.makedirs(f"{root}/blobs/{b:02x}")
    os.makedirs(f"{root}/tmp")


def current(root, blobs):
    for n, (hexd, data) in enumerate(blobs):
        tmp = f"{root}/tmp/{n}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        os.write(fd, data)
        os.close(fd)
        os.rename(tmp, f"{root}/blobs/{hexd[:2]}/{hexd}")


def samedir(root, blobs):
    for n, (hexd, data) in enumerate(blobs):
        shard = f"{root}/blobs/{hexd[:2]}"
        tmp = f"{shard}/.tmp-{n}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        os.write(fd, data)
        os.close(fd)
        os.rename(tmp, f"{shard}/{hexd}")


def tmpfile(root, blobs):
    for hexd, data in blobs:
        shard = f"{root}/blobs/{hexd[:2]}"
        fd = os.open(shard, os.O_WRONLY | os.O_TMPFILE, 0o444)
        os.write(fd, data)
        if libc.linkat(AT_FDCWD, f"/proc/self/fd/{fd}".encode(), AT_FDCWD,
                       f"{shard}/{hexd}".encode(), AT_SYMLINK_FOLLOW) != 0:
            raise OSError(ctypes.get_errno(), "linkat")
        os.close(fd)


def main():
    tree, scratch = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    blobs = load(tree)
    variants = [current, samedir, tmpfile]
    times = {v.__name__: [] for v in variants}
    os.makedirs(scratch, exist_ok=True)
    for r in range(rounds):
        order = variants[r % 3:] + variants[:r % 3]
        for v in order:
            root = f"{scratch}/{v.__name__}-{r}"
            store_dirs(root)
            os.sync()
            t0 = time.perf_counter()
            v(root, blobs)
            t1 = time.perf_counter()
            dfd = os.open(root, os.O_RDONLY)
            libc.syncfs(dfd)
            os.close(dfd)
            t2 = time.perf_counter()
            times[v.__name__].append((t1 - t0, t2 - t1))
            print(f"round {r} {v.__name__:8} create {t1 - t0:.2f} s  syncfs {t2 - t1:.2f} s"
                  f"  load {os.getloadavg()[0]:.2f}", flush=True)
    for name, ts in times.items():
        c = sorted(t[0] for t in ts)
        s = sorted(t[1] for t in ts)
        print(f"{name:8} create median {c[len(c) // 2]:.2f} s, syncfs median {s[len(s) // 2]:.2f} s"
              f" ({len(blobs)} blobs)")
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
