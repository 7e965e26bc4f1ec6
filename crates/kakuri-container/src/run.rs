//! `run`: create and start in one go, then (unless detached) wait for the container process,
//! forwarding signals to it and proxying its terminal, and return its exit code.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::{CreateOptions, Error, Runtime};

/// Signals `run` forwards to the container process (SIGCHLD and SIGWINCH it handles itself).
const FORWARDED: [Signal; 11] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGALRM,
];

impl Runtime {
    /// `run [--detach] [--keep]`: returns the container process's exit code (128+signal when it
    /// was killed), or 0 when detached.
    pub fn run(&self, o: &CreateOptions, detach: bool, keep: bool) -> Result<i32, Error> {
        let created = self.create_inner(o, !detach)?;
        let (pid, console) = (created.pid, created.console);
        // sd_notify pass-through: bound before the container starts, as runc does for `run`.
        // A caller socket that cannot be reached only means nothing is relayed (runc ignores
        // that error for `run`).
        let relay = match &self.notify_socket {
            None => None,
            Some(host) => match crate::notify::Relay::bind(&created.dir.path) {
                Ok(mut r) => {
                    if let Err(e) = r.connect(host) {
                        log::warn!("NOTIFY_SOCKET: {e}: READY will not be relayed");
                    }
                    Some(r)
                }
                Err(e) => {
                    drop(created.dir);
                    let _ = self.delete(&o.id, true);
                    return Err(e);
                }
            },
        };
        // Started under the lock create took, from the state it wrote.
        let started = crate::start_created(&created.dir.path, &created.state);
        drop(created.dir);
        if let Err(e) = started {
            let _ = self.delete(&o.id, true);
            return Err(e);
        }
        if detach {
            // As runc: `run -d` returns once the container is READY (or gone), with the
            // container's init as MAINPID.
            if let Some(Err(e)) = relay.as_ref().map(|r| r.wait_and_relay(pid, pid)) {
                log::warn!("NOTIFY_SOCKET: {e}");
            }
            return Ok(0);
        }
        let master = match console {
            Some(sock) => Some(recv_fd(&sock).map_err(|e| Error::io("receive the console", e))?),
            None => None,
        };
        let code = wait_forwarding(pid, master.as_ref(), relay.as_ref());
        kakuri_timings::mark("wait: the container exits");
        let code = match code {
            Ok(c) => c,
            Err(e) => {
                let _ = self.delete(&o.id, true);
                return Err(e);
            }
        };
        if !keep {
            self.delete(&o.id, true)?;
        }
        Ok(code)
    }
}

pub(crate) fn recv_fd(sock: &UnixStream) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "no file descriptor in the console message",
    ))
}

fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Restores the terminal mode of stdin when dropped.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enable() -> RawMode {
        use nix::sys::termios;
        let stdin = std::io::stdin();
        match termios::tcgetattr(stdin.as_fd()) {
            Ok(orig) => {
                let mut raw = orig.clone();
                termios::cfmakeraw(&mut raw);
                let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
                RawMode(Some(orig))
            }
            Err(_) => RawMode(None),
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

fn copy_winsize(master: &OwnedFd) {
    if let Ok((rows, cols)) = kakuri_isolate::sys::get_winsize(std::io::stdin().as_fd()) {
        let _ = kakuri_isolate::sys::set_winsize(master.as_fd(), rows, cols);
    }
}

/// Relay the container's READY, if one is pending, with this process as MAINPID; whether
/// one was.
fn relay_ready(notify: Option<&crate::notify::Relay>) -> bool {
    let Some(r) = notify else { return false };
    let Some(line) = r.read_ready() else {
        return false;
    };
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    if let Err(e) = r.relay(&line, me) {
        log::warn!("NOTIFY_SOCKET: {e}");
    }
    true
}

/// Wait for the process `pid`, forwarding signals and proxying the terminal `master`; with
/// `notify`, the container's READY is relayed (once) with this process as MAINPID, as runc's
/// foreground `run` does: it is the process the caller supervises.
pub(crate) fn wait_forwarding(
    pid: i32,
    master: Option<&OwnedFd>,
    notify: Option<&crate::notify::Relay>,
) -> Result<i32, Error> {
    let child = Pid::from_raw(pid);
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGWINCH);
    for s in FORWARDED {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| Error::msg(format!("block signals: {e}")))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::msg(format!("signalfd: {e}")))?;
    let _raw = master.map(|m| {
        copy_winsize(m);
        RawMode::enable()
    });
    let mut stdin_open = master.is_some();
    let mut notified = false;
    let mut code = None;
    let mut buf = vec![0u8; 32 * 1024];
    let mut master_file = match master {
        Some(m) => Some(std::fs::File::from(
            m.try_clone()
                .map_err(|e| Error::io("duplicate the console", e))?,
        )),
        None => None,
    };
    let mut stdout = std::io::stdout();
    loop {
        if code.is_none() {
            if let Ok(ws) = waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                code = exit_code(ws);
            }
        }
        if code.is_some() && master_file.is_none() {
            break;
        }
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let stdin = std::io::stdin();
        let poll_master = master_file.is_some();
        let poll_stdin = stdin_open && code.is_none() && poll_master;
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if poll_master {
            if let Some(m) = master {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
        }
        if poll_stdin {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        let poll_notify = notify.filter(|_| !notified && code.is_none());
        if let Some(r) = poll_notify {
            fds.push(PollFd::new(r.fd(), PollFlags::POLLIN));
        }
        // Once the process is gone, drain what is left of its output and stop.
        let timeout = if code.is_some() {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::msg(format!("poll: {e}"))),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let master_ready = poll_master && ready[1];
        let stdin_ready = poll_stdin && ready[2];
        if poll_notify.is_some() && ready.last() == Some(&true) {
            notified = relay_ready(notify);
        }
        if ready[0] {
            while let Ok(Some(si)) = sfd.read_signal() {
                let signo = si.ssi_signo as i32;
                if signo == libc::SIGCHLD {
                    continue;
                }
                if signo == libc::SIGWINCH {
                    if let Some(m) = master {
                        copy_winsize(m);
                    }
                    continue;
                }
                // SAFETY: kill with integer arguments.
                unsafe { libc::kill(pid, signo) };
            }
        }
        if master_ready {
            if let Some(mf) = master_file.as_mut() {
                match mf.read(&mut buf) {
                    Ok(0) | Err(_) => master_file = None,
                    Ok(n) => {
                        let _ = stdout.write_all(&buf[..n]);
                        let _ = stdout.flush();
                    }
                }
            }
        }
        if stdin_ready {
            match std::io::stdin().lock().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if let Some(mf) = master_file.as_mut() {
                        let _ = mf.write_all(&buf[..n]);
                    }
                }
            }
        }
    }
    // A READY the container sent just before it exited is still relayed.
    if !notified {
        relay_ready(notify);
    }
    let code = match code {
        Some(c) => c,
        None => loop {
            match waitpid(child, None) {
                Ok(ws) => {
                    if let Some(c) = exit_code(ws) {
                        break c;
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::msg(format!("wait for the container process: {e}"))),
            }
        },
    };
    let _ = mask.thread_unblock();
    Ok(code)
}
