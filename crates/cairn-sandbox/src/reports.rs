//! What the sandbox's processes report on the status socket: fixed-size
//! [`Message`]s, and the descriptors of `/out` and `/tmp` pid 1 sends.
//!
//! The parent reads the socket while the step runs, not only once the
//! sandbox is gone: pid 1 reports the step's end only after every other
//! process of the namespace is dead and reaped, so the report is enough to
//! go on with. Tearing the namespaces and the two sandbox processes down
//! (their copies of cairn's memory, the mounts) then happens beside
//! whatever the caller does next, not before it.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use crate::child::{Message, Stage};

/// Everything read from the status socket so far.
#[derive(Debug, Default)]
pub(crate) struct Reports {
    pub messages: Vec<Message>,
    pub fds: Vec<OwnedFd>,
    /// The socket's other end is closed: nothing more will come.
    pub closed: bool,
}

impl Reports {
    /// Reads whatever is waiting; never blocks (a straggler holding the
    /// other end must not hang us).
    pub fn read_from(&mut self, socket: &OwnedFd) {
        loop {
            let mut buf = [0u8; Message::SIZE];
            let mut control = [0u8; 64];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: a zeroed msghdr pointing at live stack buffers; the
            // received descriptors are taken into `OwnedFd`s exactly once.
            unsafe {
                let mut hdr: libc::msghdr = std::mem::zeroed();
                hdr.msg_iov = &mut iov;
                hdr.msg_iovlen = 1;
                hdr.msg_control = control.as_mut_ptr().cast();
                hdr.msg_controllen = control.len();
                let flags = libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
                let n = libc::recvmsg(socket.as_fd().as_raw_fd(), &mut hdr, flags);
                if n == 0 {
                    self.closed = true;
                }
                if n <= 0 {
                    break;
                }
                let mut cmsg = libc::CMSG_FIRSTHDR(&hdr);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_SOCKET
                        && (*cmsg).cmsg_type == libc::SCM_RIGHTS
                    {
                        let data = libc::CMSG_DATA(cmsg) as *const libc::c_int;
                        let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                        for i in 0..len / std::mem::size_of::<libc::c_int>() {
                            let fd = std::ptr::read_unaligned(data.add(i));
                            self.fds.push(OwnedFd::from_raw_fd(fd));
                        }
                    }
                    cmsg = libc::CMSG_NXTHDR(&hdr, cmsg);
                }
                if n as usize == Message::SIZE {
                    self.messages.push(Message::decode(&buf));
                }
            }
        }
    }

    /// Pid 1 reported the step's end (and so that nothing else of the
    /// sandbox runs any more).
    pub fn step_ended(&self) -> bool {
        self.messages
            .iter()
            .any(|m| m.stage == Stage::Exited as u32)
    }
}
