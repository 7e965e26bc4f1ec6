//! `NOTIFY_SOCKET`: the sd_notify pass-through of runc.
//!
//! When the runtime itself runs with `NOTIFY_SOCKET` in its environment (a systemd service of
//! `Type=notify`, `podman run --sdnotify=container`), the container does not get that socket:
//! `create`/`run` make `<state dir>/notify/` and bind it read-only at `/run/notify` in the
//! container, whose process gets `NOTIFY_SOCKET=/run/notify/notify.sock`. The datagram socket
//! is bound there by `start` (or by `run`), which waits for the container's `READY=` message
//! and relays it to the caller's socket, followed by `MAINPID=<pid>` and a `BARRIER=1`
//! synchronisation (runc main; runc 1.1 sends no barrier). Only the READY line is relayed,
//! once; other messages are dropped, as runc does.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;

/// The directory under the container's state directory that is bound into the container.
pub const DIR: &str = "notify";
/// The socket's name in that directory.
pub const SOCKET: &str = "notify.sock";
/// Where the directory is mounted in the container.
pub const MOUNT_POINT: &str = "/run/notify";
/// The container process's `NOTIFY_SOCKET`.
pub const IN_CONTAINER: &str = "/run/notify/notify.sock";
/// How long the relay waits for the caller to acknowledge `BARRIER=1` (runc's 30 s).
const BARRIER_TIMEOUT: Duration = Duration::from_secs(30);

/// The caller's notify socket (`NOTIFY_SOCKET` of the runtime's environment), as runc reads
/// it: unset or empty means none.
pub fn host_socket_from_env() -> Option<String> {
    std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|s| !s.is_empty())
}

/// The mount of `<state dir>/notify` at `/run/notify`, with runc's options.
pub(crate) fn mount(state_dir: &Path) -> kakuri_spec::oci::Mount {
    kakuri_spec::oci::MountBuilder::default()
        .destination(PathBuf::from(MOUNT_POINT))
        .source(state_dir.join(DIR))
        .options(
            ["bind", "nosuid", "noexec", "nodev", "ro"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .expect("static notify mount")
}

/// `process.env` with `NOTIFY_SOCKET` pointing at the socket in the container (replacing any
/// value the config had: the last one wins in runc).
pub(crate) fn set_env(env: &mut Vec<String>) {
    env.retain(|e| !e.starts_with("NOTIFY_SOCKET="));
    env.push(format!("NOTIFY_SOCKET={IN_CONTAINER}"));
}

/// Make `<state dir>/notify` (mode 0755), as runc does right after creating the state.
pub(crate) fn make_dir(state_dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = state_dir.join(DIR);
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&dir)
        .map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))
}

/// The relay: the socket the container sends to, and the caller's socket.
pub(crate) struct Relay {
    container: UnixDatagram,
    path: PathBuf,
    host: Option<UnixDatagram>,
}

/// Go's text of a socket error ("listen unixgram PATH: bind: ..."), which runc prints.
fn sock_err(op: &str, path: &str, call: &str, e: &io::Error) -> Error {
    Error::msg(format!(
        "{op} unixgram {path}: {call}: {}",
        kakuri_spec::os_error(e)
    ))
}

impl Relay {
    /// Bind `<state dir>/notify/notify.sock` (mode 0777, so that any user of the container can
    /// send) for the container to notify on. A container created without `NOTIFY_SOCKET` has
    /// no such directory: runc's bind error.
    pub(crate) fn bind(state_dir: &Path) -> Result<Relay, Error> {
        use std::os::unix::fs::PermissionsExt;
        let path = state_dir.join(DIR).join(SOCKET);
        let shown = path.display().to_string();
        let container = bind_long(&path).map_err(|e| sock_err("listen", &shown, "bind", &e))?;
        container
            .set_nonblocking(true)
            .map_err(|e| Error::io(format!("listen unixgram {shown}"), e))?;
        let relay = Relay {
            container,
            path,
            host: None,
        };
        std::fs::set_permissions(&relay.path, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| Error::io(format!("chmod {shown}"), e))?;
        Ok(relay)
    }

    /// Connect to the caller's socket (`@name` is an abstract address, as for sd_notify).
    pub(crate) fn connect(&mut self, host: &str) -> Result<(), Error> {
        let sock = UnixDatagram::unbound().map_err(|e| sock_err("dial", host, "socket", &e))?;
        let r = match host.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .and_then(|a| sock.connect_addr(&a))
            }
            None => sock.connect(host),
        };
        r.map_err(|e| sock_err("dial", host, "connect", &e))?;
        self.host = Some(sock);
        Ok(())
    }

    /// Forget the socket file (a `start` that fails before the container runs: a retry must
    /// be able to bind it again).
    pub(crate) fn unlink(self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// The descriptor to poll for the container's messages.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.container.as_fd()
    }

    /// Read the pending datagrams (without waiting) up to the first with a READY line, and
    /// return that line.
    pub(crate) fn read_ready(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 4096];
        loop {
            let n = match self.container.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            };
            // runc relays the first line of a datagram that starts with READY=; a READY line
            // after other lines ("STATUS=...\nREADY=1") counts as well here.
            if let Some(l) = buf[..n]
                .split(|b| *b == b'\n')
                .find(|l| l.starts_with(b"READY="))
            {
                return Some(l.to_vec());
            }
        }
    }

    /// Wait for the container's READY (or the end of the process `pid`) and relay it with
    /// `MAINPID=<mainpid>`. Without a caller socket there is nothing to do.
    pub(crate) fn wait_and_relay(&self, pid: i32, mainpid: i32) -> Result<(), Error> {
        if self.host.is_none() {
            return Ok(());
        }
        let pidfd = match kakuri_isolate::sys::pidfd_open(pid) {
            Ok(fd) => fd,
            // Gone already: nothing will be ready.
            Err(_) => return Ok(()),
        };
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let mut fds = [
                PollFd::new(self.container.as_fd(), PollFlags::POLLIN),
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::msg(format!("poll the notify socket: {e}"))),
            }
            let msg = fds[0].revents().is_some_and(|r| !r.is_empty());
            let gone = fds[1].revents().is_some_and(|r| !r.is_empty());
            if msg || gone {
                // A READY sent just before the process exited still counts.
                if let Some(line) = self.read_ready() {
                    return self.relay(&line, mainpid);
                }
            }
            if gone {
                log::debug!("notify: the container process {pid} exited before READY");
                return Ok(());
            }
        }
    }

    /// Send `line` and `MAINPID=<mainpid>` to the caller, then wait for it to take them in
    /// (sd_notify_barrier).
    pub(crate) fn relay(&self, line: &[u8], mainpid: i32) -> Result<(), Error> {
        let Some(host) = &self.host else {
            return Ok(());
        };
        let send = |b: &[u8]| {
            host.send(b)
                .map(drop)
                .map_err(|e| Error::io("relay to NOTIFY_SOCKET", e))
        };
        let mut ready = line.to_vec();
        ready.push(b'\n');
        send(&ready)?;
        send(format!("MAINPID={mainpid}\n").as_bytes())?;
        barrier(host)
    }
}

/// Bind a datagram socket at `path`; a path longer than `sun_path` holds is bound through
/// its directory's `/proc/self/fd` link.
fn bind_long(path: &Path) -> io::Result<UnixDatagram> {
    if path.as_os_str().len() < 108 {
        return UnixDatagram::bind(path);
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().unwrap_or_default();
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    let via = Path::new("/proc/self/fd")
        .join(d.as_raw_fd().to_string())
        .join(name);
    UnixDatagram::bind(via)
}

use std::os::unix::fs::OpenOptionsExt;

/// `BARRIER=1` with the write end of a pipe: the caller closes it once it has processed the
/// messages before. Waits for that up to 30 s (then warns, as runc, and goes on).
fn barrier(host: &UnixDatagram) -> Result<(), Error> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("pipe", e.into()))?;
    let fds = [w.as_raw_fd()];
    let iov = [io::IoSlice::new(b"BARRIER=1")];
    sendmsg::<()>(
        host.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| Error::io("relay BARRIER=1 to NOTIFY_SOCKET", e.into()))?;
    drop(w);
    wait_closed(r)
}

fn wait_closed(r: OwnedFd) -> Result<(), Error> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = std::time::Instant::now() + BARRIER_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            log::warn!("Timeout after waiting 30s for barrier. Ignored.");
            return Ok(());
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::msg(format!("wait for the notify barrier: {e}"))),
        }
    }
    let mut b = [0u8; 1];
    match nix::unistd::read(r.as_raw_fd(), &mut b) {
        Ok(0) => Ok(()),
        Ok(_) => Err(Error::msg(
            "unexpected read from synchronization pipe".to_string(),
        )),
        Err(e) => Err(Error::io("read the notify barrier", e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_replaced() {
        let mut env = vec![
            "PATH=/bin".to_string(),
            "NOTIFY_SOCKET=/x".to_string(),
            "A=b".to_string(),
        ];
        set_env(&mut env);
        assert_eq!(
            env,
            ["PATH=/bin", "A=b", "NOTIFY_SOCKET=/run/notify/notify.sock"]
        );
    }

    #[test]
    fn ready_line() {
        let dir = std::env::temp_dir().join(format!("kakuri-notify-ut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(DIR)).unwrap();
        let relay = Relay::bind(&dir).unwrap();
        let tx = UnixDatagram::unbound().unwrap();
        let to = dir.join(DIR).join(SOCKET);
        tx.send_to(b"STATUS=x", &to).unwrap();
        assert_eq!(relay.read_ready(), None);
        tx.send_to(b"STATUS=x\nREADY=1\nFOO=1", &to).unwrap();
        assert_eq!(relay.read_ready().as_deref(), Some(&b"READY=1"[..]));
        relay.unlink();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
