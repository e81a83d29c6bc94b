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

use crate::script::Op;

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
fn walk(root: &CStr, dirs: &[std::ffi::CString]) -> Sys<Fd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: valid C strings and fds throughout; every fd is owned by an `Fd`.
    unsafe {
        let mut fd = open_fd(libc::open(root.as_ptr(), flags))?;
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

/// Recursively binds `source` onto the mount point `target` with `attrs`.
fn bind(source: &CStr, target: &Fd, attrs: u64) -> Sys {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: raw mount-API syscalls with valid C strings, fds and a
    // correctly sized `mount_attr`.
    unsafe {
        let tree = libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
        );
        let tree = open_fd(check(tree)? as c_int)?;
        check(libc::syscall(
            libc::SYS_mount_setattr,
            tree.0,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ))?;
        check(libc::syscall(
            libc::SYS_move_mount,
            tree.0,
            c"".as_ptr(),
            target.0,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        ))?;
    }
    Ok(())
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

/// Applies one operation; returns the errno on failure.
pub(crate) fn apply(op: &Op) -> Sys {
    match op {
        Op::MakePrivate => mount(c"none", c"/", c"", libc::MS_REC | libc::MS_PRIVATE, c""),
        Op::Tmpfs { at, flags, data } => mount(c"tmpfs", at, c"tmpfs", *flags, data),
        Op::Proc { at } => {
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            mount(c"proc", at, c"proc", flags, c"")
        }
        Op::MakeDirs { root, dirs } => walk(root, dirs).map(drop),
        Op::Bind {
            source,
            root,
            dirs,
            name,
            file,
            attrs,
        } => {
            let dir = walk(root, dirs)?;
            let target = mount_point(&dir, name, *file)?;
            bind(source, &target, *attrs)
        }
        Op::Symlink {
            root,
            dirs,
            name,
            target,
        } => {
            let dir = walk(root, dirs)?;
            // SAFETY: valid C strings and fd.
            let r = unsafe { libc::symlinkat(target.as_ptr(), dir.0, name.as_ptr()) };
            check(r.into()).map(drop)
        }
        Op::PivotRoot { new_root } => {
            // SAFETY: the `pivot_root(".", ".")` idiom: the old root ends up
            // stacked on "." and is detached at once.
            unsafe {
                check(libc::chdir(new_root.as_ptr()).into())?;
                check(libc::syscall(
                    libc::SYS_pivot_root,
                    c".".as_ptr(),
                    c".".as_ptr(),
                ))?;
                check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH).into())?;
                check(libc::chdir(c"/".as_ptr()).into()).map(drop)
            }
        }
        Op::RemountReadOnly { at, flags } => {
            let flags = libc::MS_REMOUNT | libc::MS_RDONLY | *flags;
            mount(c"none", at, c"", flags, c"")
        }
    }
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
