//! Async-signal-safe interpretation of filesystem [`Op`]s, plus `lo` up.
//!
//! Runs in the sandbox's pid 1 after `fork`, so only raw syscalls on
//! precomputed C strings. Binds use the new mount API (`open_tree` +
//! `mount_setattr` + `move_mount`, Linux ≥ 5.12): the clone is made
//! read-only/nosuid/nodev *recursively* before it becomes visible, and the
//! target is an fd obtained by walking the staging root one component at a
//! time with `O_NOFOLLOW`, so a symlink planted in an input tree can never
//! redirect a mount point (or a `mkdir`) onto the host.

use std::ffi::CStr;
use std::os::raw::c_int;

use crate::script::{Op, ATTR_RDONLY};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// `struct mount_attr` of linux/mount.h.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

type Sys<T = ()> = Result<T, c_int>;

fn errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn check(ret: libc::c_long) -> Sys<libc::c_long> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// An owned fd, closed on drop (no allocation involved).
struct Fd(c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own this fd and close it exactly once.
        unsafe { libc::close(self.0) };
    }
}

fn open_fd(ret: c_int) -> Sys<Fd> {
    check(ret.into()).map(|_| Fd(ret))
}

/// Requires that `fd` is of file type `kind` (`S_IFDIR`, `S_IFREG`…).
fn require_type(fd: &Fd, kinds: &[libc::mode_t]) -> Sys {
    // SAFETY: `st` is a valid out-pointer; fstat works on O_PATH fds.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd.0, &mut st) }.into())?;
    if kinds.contains(&(st.st_mode & libc::S_IFMT)) {
        Ok(())
    } else {
        Err(libc::ELOOP)
    }
}

/// Opens `root/dirs…`, creating missing directories, never following symlinks.
fn walk(root: c_int, dirs: &[std::ffi::CString]) -> Sys<Fd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: valid C strings and fds throughout; every fd is owned by an `Fd`.
    unsafe {
        let mut fd = open_fd(libc::openat(root, c".".as_ptr(), flags))?;
        for d in dirs {
            if libc::mkdirat(fd.0, d.as_ptr(), 0o755) == -1 && errno() != libc::EEXIST {
                return Err(errno());
            }
            fd = open_fd(libc::openat(fd.0, d.as_ptr(), flags | libc::O_NOFOLLOW))?;
            require_type(&fd, &[libc::S_IFDIR])?;
        }
        Ok(fd)
    }
}

/// Opens (creating it if missing) the mount point `name` in `dir`.
fn mount_point(dir: &Fd, name: &CStr, file: bool) -> Sys<Fd> {
    if !file {
        return walk_one(dir, name);
    }
    let path = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid C strings and fds.
    unsafe {
        let fd = libc::openat(dir.0, name.as_ptr(), path);
        if fd == -1 && errno() == libc::ENOENT {
            let create = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            drop(open_fd(libc::openat(
                dir.0,
                name.as_ptr(),
                create | libc::O_CLOEXEC,
                0o644,
            ))?);
            let fd = open_fd(libc::openat(dir.0, name.as_ptr(), path))?;
            return Ok(fd);
        }
        let fd = open_fd(fd)?;
        // Anything but a symlink or directory may be bound over.
        require_type(
            &fd,
            &[
                libc::S_IFREG,
                libc::S_IFCHR,
                libc::S_IFBLK,
                libc::S_IFIFO,
                libc::S_IFSOCK,
            ],
        )?;
        Ok(fd)
    }
}

fn walk_one(dir: &Fd, name: &CStr) -> Sys<Fd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid C strings and fds.
    unsafe {
        if libc::mkdirat(dir.0, name.as_ptr(), 0o755) == -1 && errno() != libc::EEXIST {
            return Err(errno());
        }
        let fd = open_fd(libc::openat(dir.0, name.as_ptr(), flags))?;
        require_type(&fd, &[libc::S_IFDIR])?;
        Ok(fd)
    }
}

/// Clones the mount tree at host path `source` (recursively) into a
/// detached mount with `attrs` set on every mount of it; returns its fd.
pub(crate) fn clone_source(source: &CStr, attrs: u64) -> Sys<c_int> {
    // SAFETY: `open_tree` with a valid C string; the fd is owned by `Fd`.
    unsafe {
        let tree = libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
        );
        let tree = open_fd(check(tree)? as c_int)?;
        set_attrs(&tree, attrs, AT_RECURSIVE)?;
        let fd = tree.0;
        std::mem::forget(tree);
        Ok(fd)
    }
}

/// `mount_setattr` on the mount `fd` is the root of (`AT_RECURSIVE`: and
/// every mount below it).
fn set_attrs(fd: &Fd, attrs: u64, recursive: libc::c_uint) -> Sys {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid fd, empty path and a correctly sized `mount_attr`.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.0,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | recursive,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// Moves the detached mount `tree` onto the mount point `target`.
fn attach(tree: c_int, target: &Fd) -> Sys {
    // SAFETY: two valid fds and empty paths.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            target.0,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// `/proc/self/fd/<fd>` in `buf`, NUL-terminated (no allocation): a path
/// `mount(2)` resolves to what `fd` refers to.
fn fd_path(fd: c_int, buf: &mut [u8; 32]) -> &CStr {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    let mut digits = [0u8; 12];
    let mut i = digits.len();
    let mut n = fd as u32;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = PREFIX.len() + digits.len() - i;
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    buf[PREFIX.len()..len].copy_from_slice(&digits[i..]);
    buf[len] = 0;
    CStr::from_bytes_with_nul(&buf[..=len]).expect("one NUL at the end")
}

/// Mounts the root tmpfs on host directory `staging` and opens it.
pub(crate) fn mount_root(staging: &CStr, data: &CStr) -> Sys<c_int> {
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    mount(c"tmpfs", staging, c"tmpfs", flags, data)?;
    // SAFETY: a valid C string.
    let fd = unsafe {
        libc::open(
            staging.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    check(fd.into()).map(|_| fd)
}

/// Makes every mount private, so nothing propagates back to the host.
pub(crate) fn make_private() -> Sys {
    mount(c"none", c"/", c"", libc::MS_REC | libc::MS_PRIVATE, c"")
}

/// `pivot_root` into the mount `root` and detach the old root.
pub(crate) fn pivot(root: c_int) -> Sys {
    // SAFETY: the `pivot_root(".", ".")` idiom: the old root ends up
    // stacked on "." and is detached at once.
    unsafe {
        check(libc::fchdir(root).into())?;
        check(libc::syscall(
            libc::SYS_pivot_root,
            c".".as_ptr(),
            c".".as_ptr(),
        ))?;
        check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH).into())?;
        check(libc::chdir(c"/".as_ptr()).into()).map(drop)
    }
}

fn mount(src: &CStr, at: &CStr, fstype: &CStr, flags: libc::c_ulong, data: &CStr) -> Sys {
    // SAFETY: valid C strings; `data` is a NUL-terminated option string.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            at.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    check(r.into()).map(drop)
}

/// Applies one operation below the root `root`; `clones` are the
/// detached mounts of [`crate::script::Script::clones`].
pub(crate) fn apply(op: &Op, root: c_int, clones: &[c_int]) -> Sys {
    let mut buf = [0u8; 32];
    match op {
        Op::MakeDirs { dirs } => walk(root, dirs).map(drop),
        Op::Attach {
            clone,
            dirs,
            name,
            file,
            ..
        } => {
            let dir = walk(root, dirs)?;
            let target = mount_point(&dir, name, *file)?;
            attach(clones[*clone], &target)
        }
        Op::Symlink { dirs, name, target } => {
            let dir = walk(root, dirs)?;
            // SAFETY: valid C strings and fd.
            let r = unsafe { libc::symlinkat(target.as_ptr(), dir.0, name.as_ptr()) };
            check(r.into()).map(drop)
        }
        Op::Tmpfs { dirs, flags, data } => {
            let dir = walk(root, dirs)?;
            mount(c"tmpfs", fd_path(dir.0, &mut buf), c"tmpfs", *flags, data)
        }
        Op::Proc { dirs } => {
            let dir = walk(root, dirs)?;
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            mount(c"proc", fd_path(dir.0, &mut buf), c"proc", flags, c"")
        }
        Op::ReadOnly { dirs } => {
            let dir = walk(root, dirs)?;
            set_attrs(&dir, ATTR_RDONLY, 0)
        }
    }
}

/// Registers an emulator (`line`, see `script::binfmt_line`) with the
/// binfmt_misc of the sandbox's own user namespace, mounted on
/// `/proc/sys/fs/binfmt_misc` (run after the pivot, so the interpreter's
/// path is the sandbox's). The registration lasts as long as that mount,
/// so it stays, where the step, without capabilities, can read it and
/// change nothing. `Ok(false)` if the kernel has no binfmt_misc per user
/// namespace (before Linux 6.7): then only the step's own program runs
/// emulated, as its command line names the emulator.
pub(crate) fn register_emulator(line: &[u8]) -> Sys<bool> {
    let dir = c"/proc/sys/fs/binfmt_misc";
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    match mount(c"binfmt_misc", dir, c"binfmt_misc", flags, c"") {
        Ok(()) => {}
        Err(libc::EPERM | libc::ENODEV | libc::ENOENT | libc::EINVAL) => return Ok(false),
        Err(e) => return Err(e),
    }
    // SAFETY: a valid C string; the fd is owned by `Fd`.
    let register = open_fd(unsafe {
        libc::open(
            c"/proc/sys/fs/binfmt_misc/register".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: pointer and length of a live buffer.
    let n = unsafe { libc::write(register.0, line.as_ptr().cast(), line.len()) };
    check(n as libc::c_long).map(|_| true)
}

/// Brings the new network namespace's loopback interface up.
pub(crate) fn loopback_up() -> Sys {
    // SAFETY: a socket we own (closed by `Fd`), and a zeroed `ifreq` whose
    // name field gets "lo"; both ioctls read/write that struct only.
    unsafe {
        let sock = open_fd(libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        check(libc::ioctl(sock.0, libc::SIOCGIFFLAGS, &mut ifr).into())?;
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        check(libc::ioctl(sock.0, libc::SIOCSIFFLAGS, &ifr).into())?;
    }
    Ok(())
}
