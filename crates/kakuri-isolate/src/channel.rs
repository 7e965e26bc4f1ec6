//! The sync channel between the runtime (parent) and the container's init (child).
//!
//! A `SOCK_SEQPACKET` socket pair, close-on-exec on both ends: each message is one packet, so no
//! framing is needed, and a peer that dies shows up as end-of-file instead of a hang.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};

/// One message on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// parent → child: id mappings are in place, go on.
    Go,
    /// parent → child: the child is in its cgroups (sent after Go: placement, whose first
    /// cgroup v1 migration waits an RCU grace period, overlaps the child's own setup).
    Placed,
    /// child → parent: namespaces and mounts are set up; run the createRuntime/prestart hooks.
    RunHooks,
    /// parent → child: the hooks ran.
    HooksDone,
    /// child → parent: fully set up, about to wait for `start` (the pid is the init's own).
    Ready,
    /// child → parent: the seccomp notify listener is attached to this message (SCM_RIGHTS).
    SeccompFd,
    /// parent → child: the listener was handed to the seccomp agent.
    SeccompDone,
    /// intermediate → parent: the pid of the init it cloned (in the parent's pid namespace);
    /// only when a user namespace is joined by path and a new pid namespace is asked.
    Pid(i32),
    /// child → parent: the child's timeline so far, raw `CLOCK_MONOTONIC` stamps (only with
    /// timings on; see `kakuri_timings::unsent`).
    Timeline(Vec<u8>),
    /// either way: the sender failed; the text is the error.
    Error(String),
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Go => vec![b'G'],
            Msg::Placed => vec![b'C'],
            Msg::RunHooks => vec![b'H'],
            Msg::HooksDone => vec![b'D'],
            Msg::Ready => vec![b'R'],
            Msg::SeccompFd => vec![b'S'],
            Msg::SeccompDone => vec![b's'],
            Msg::Pid(pid) => {
                let mut v = vec![b'P'];
                v.extend_from_slice(&pid.to_le_bytes());
                v
            }
            Msg::Timeline(t) => {
                let mut v = vec![b'T'];
                v.extend_from_slice(t);
                v
            }
            Msg::Error(e) => {
                let mut v = vec![b'E'];
                v.extend_from_slice(e.as_bytes());
                v
            }
        }
    }

    fn decode(b: &[u8]) -> io::Result<Msg> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad sync message");
        Ok(match b.first().ok_or_else(bad)? {
            b'G' => Msg::Go,
            b'C' => Msg::Placed,
            b'H' => Msg::RunHooks,
            b'D' => Msg::HooksDone,
            b'R' => Msg::Ready,
            b'S' => Msg::SeccompFd,
            b's' => Msg::SeccompDone,
            b'P' => Msg::Pid(i32::from_le_bytes(
                b.get(1..5)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(bad)?,
            )),
            b'T' => Msg::Timeline(b[1..].to_vec()),
            b'E' => Msg::Error(String::from_utf8_lossy(&b[1..]).into_owned()),
            _ => return Err(bad()),
        })
    }
}

/// One end of the sync channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl Channel {
    /// A connected pair: (parent end, child end).
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel(a), Channel(b)))
    }

    pub fn send(&self, m: &Msg) -> io::Result<()> {
        let buf = m.encode();
        socket::send(self.0.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL)?;
        Ok(())
    }

    /// Send a message with one descriptor attached (SCM_RIGHTS).
    pub fn send_with_fd(&self, m: &Msg, fd: BorrowedFd) -> io::Result<()> {
        let buf = m.encode();
        let iov = [io::IoSlice::new(&buf)];
        let fds = [fd.as_raw_fd()];
        let cmsg = [socket::ControlMessage::ScmRights(&fds)];
        socket::sendmsg::<()>(
            self.0.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }

    /// Receive one message; `Ok(None)` when the peer closed its end (it exited).
    pub fn recv(&self) -> io::Result<Option<Msg>> {
        Ok(self.recv_with_fd()?.map(|(m, _)| m))
    }

    /// Receive one message and the descriptor attached to it, if any (made close-on-exec).
    pub fn recv_with_fd(&self) -> io::Result<Option<(Msg, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; 65536];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut reset_seen = false;
        loop {
            let (n, fd) = {
                let mut iov = [io::IoSliceMut::new(&mut buf)];
                let r = socket::recvmsg::<()>(
                    self.0.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                );
                let msg = match r {
                    Ok(m) => m,
                    Err(nix::errno::Errno::EINTR) => continue,
                    // The peer closed its end with a message of ours unread (a child that
                    // failed before it read `Placed`): the kernel reports that once, ahead of
                    // what the peer sent before it went (its error); read on.
                    Err(nix::errno::Errno::ECONNRESET) if !reset_seen => {
                        reset_seen = true;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let mut fd = None;
                for c in msg.cmsgs()? {
                    if let socket::ControlMessageOwned::ScmRights(fds) = c {
                        for raw in fds {
                            // SAFETY: the kernel installed this descriptor for us; nothing
                            // else owns it. Extra descriptors are closed by dropping them.
                            let owned =
                                unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
                            if fd.is_none() {
                                fd = Some(owned);
                            }
                        }
                    }
                }
                (msg.bytes, fd)
            };
            if n == 0 {
                return Ok(None);
            }
            return Msg::decode(&buf[..n]).map(|m| Some((m, fd)));
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for m in [
            Msg::Go,
            Msg::Placed,
            Msg::RunHooks,
            Msg::HooksDone,
            Msg::Ready,
            Msg::SeccompFd,
            Msg::SeccompDone,
            Msg::Pid(4242),
            Msg::Timeline(vec![0, 1, 2, 255]),
            Msg::Timeline(Vec::new()),
            Msg::Error("boom".into()),
        ] {
            assert_eq!(Msg::decode(&m.encode()).unwrap(), m);
        }
        assert!(Msg::decode(b"").is_err());
        assert!(Msg::decode(b"?").is_err());
    }
}
