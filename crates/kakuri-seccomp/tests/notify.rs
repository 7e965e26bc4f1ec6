//! SCMP_ACT_NOTIFY end to end: the container process loads the filter and passes the
//! listener to the runtime parent, which hands it to a seccomp agent with
//! `send_listener_fd`; the agent receives the notification and answers it.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{
    recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(20);
/// What the agent answers to the notified getppid.
const AGENT_ANSWER: i64 = 4242;

/// A private directory under /tmp, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("kakuri-seccomp-{tag}-{}", std::process::id()));
        std::fs::create_dir(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Wait until `fd` is readable, or fail after TIMEOUT.
fn wait_readable(fd: RawFd, what: &str) {
    // SAFETY: the caller keeps `fd` open for the duration of the call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(TIMEOUT.as_millis() as i32).unwrap();
    let n = poll(&mut fds, ms).expect("poll");
    assert!(n > 0, "timed out waiting for {what}");
}

/// Receive one message and the fds that came with it.
fn recv_with_fds(sock: RawFd) -> (Vec<u8>, Vec<OwnedFd>, bool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .expect("recvmsg");
    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    let mut fds = Vec::new();
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(list) = c {
            // SAFETY: SCM_RIGHTS installed these descriptors in this process for us.
            fds.extend(
                list.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let n = msg.bytes;
    buf.truncate(n);
    (buf, fds, truncated)
}

/// What the agent saw.
struct AgentReport {
    payload: serde_json::Value,
    fds: usize,
    notified_nr: i64,
    notified_pid: u32,
}

/// The seccomp agent: accept one connection, take the listener, answer one notification.
fn agent(listener: UnixListener) -> AgentReport {
    wait_readable(listener.as_raw_fd(), "the runtime to connect");
    let (mut conn, _) = listener.accept().expect("accept");
    let (mut payload, fds, truncated) = recv_with_fds(conn.as_raw_fd());
    assert!(!truncated, "control data truncated");
    // The runtime closes the connection after one state: read to EOF.
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    conn.read_to_end(&mut payload)
        .expect("read rest of payload");
    let payload: serde_json::Value = serde_json::from_slice(&payload).expect("payload is JSON");
    assert_eq!(fds.len(), 1, "exactly one fd");
    let notify_fd = fds[0].as_raw_fd();

    wait_readable(notify_fd, "a seccomp notification");
    // SAFETY: seccomp_notif is plain data; the kernel wants it zeroed before RECV.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: `req` is a valid seccomp_notif the kernel fills in.
    let rc = unsafe { libc::ioctl(notify_fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) };
    assert_eq!(rc, 0, "NOTIF_RECV: {}", std::io::Error::last_os_error());
    let mut resp = libc::seccomp_notif_resp {
        id: req.id,
        val: AGENT_ANSWER,
        error: 0,
        flags: 0,
    };
    // SAFETY: `resp` is a valid seccomp_notif_resp for the notification just received.
    let rc = unsafe { libc::ioctl(notify_fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
    assert_eq!(rc, 0, "NOTIF_SEND: {}", std::io::Error::last_os_error());
    AgentReport {
        payload,
        fds: fds.len(),
        notified_nr: i64::from(req.data.nr),
        notified_pid: req.pid,
    }
}

/// In the child: send `fd` over `sock` with one data byte, without allocating.
fn child_send_fd(sock: RawFd, fd: RawFd) -> bool {
    // Room for one cmsghdr carrying one int, 8-byte aligned.
    let mut control = [0u64; 4];
    let mut byte = [b'F'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure computations.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize,
            libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize,
        )
    };
    assert!(space <= std::mem::size_of_val(&control));
    // SAFETY: msghdr is plain data; every pointer set below refers to live stack buffers of
    // the stated sizes, and CMSG_FIRSTHDR points inside `control`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = len as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        libc::sendmsg(sock, &msg, 0) == 1
    }
}

fn state_json(pid: Pid, path: &Path) -> Vec<u8> {
    json!({
        "ociVersion": "1.3.0",
        "fds": ["seccompFd"],
        "pid": pid.as_raw(),
        "metadata": "kakuri-test-metadata",
        "state": {
            "ociVersion": "1.3.0",
            "id": format!("kakuri-seccomp-test-{}", std::process::id()),
            "status": "creating",
            "pid": pid.as_raw(),
            "bundle": path.display().to_string(),
        }
    })
    .to_string()
    .into_bytes()
}

#[test]
fn notify_listener_is_handed_to_the_agent_which_answers() {
    let dir = TempDir::new("notify");
    let agent_path = dir.0.join("agent.sock");
    let listener = UnixListener::bind(&agent_path).expect("bind agent socket");
    let filter = common::compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": agent_path,
        "listenerMetadata": "kakuri-test-metadata",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert!(filter.needs_notify());
    let flags = filter.kernel_flags();
    for bit in [
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
        libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        libc::SECCOMP_FILTER_FLAG_TSYNC,
        libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH,
    ] {
        assert_ne!(flags & bit, 0, "flag {bit:#x} missing from {flags:#x}");
    }

    let agent = std::thread::spawn(move || agent(listener));
    let (parent_sock, child_sock) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");

    // SAFETY: the child makes raw syscalls only (load, sendmsg, close, getppid, write, _exit).
    let child = match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(parent_sock);
            let code = match filter.load() {
                Ok(Some(fd)) => {
                    if child_send_fd(child_sock.as_raw_fd(), fd.as_raw_fd()) {
                        drop(fd);
                        // Blocks until the agent answers.
                        let ppid = common::raw(libc::SYS_getppid, [0; 3]);
                        if ppid == common::Sys::Ok(AGENT_ANSWER) {
                            0
                        } else {
                            3
                        }
                    } else {
                        2
                    }
                }
                Ok(None) => 4,
                Err(_) => 1,
            };
            // SAFETY: _exit ends the child without unwinding into the harness.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_sock);

    let result = std::panic::catch_unwind(|| {
        wait_readable(parent_sock.as_raw_fd(), "the listener fd from the child");
        let (data, mut fds, _) = recv_with_fds(parent_sock.as_raw_fd());
        assert_eq!(data, b"F", "child failed before sending the listener");
        assert_eq!(fds.len(), 1);
        let notify_fd = fds.pop().unwrap();
        kakuri_seccomp::send_listener_fd(
            &agent_path,
            &state_json(child, &dir.0),
            notify_fd.as_fd(),
        )
        .expect("send_listener_fd");
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).expect("waitpid") {
            WaitStatus::StillAlive if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            WaitStatus::StillAlive => {
                let _ = kill(child, Signal::SIGKILL);
                break waitpid(child, None).expect("waitpid");
            }
            status => break status,
        }
    };
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert_eq!(
        status,
        WaitStatus::Exited(child, 0),
        "child status (3 = wrong getppid answer)"
    );

    let report = agent.join().expect("agent thread");
    assert_eq!(report.fds, 1);
    assert_eq!(report.notified_nr, libc::SYS_getppid);
    assert_eq!(report.notified_pid, child.as_raw() as u32);
    assert_eq!(report.payload["fds"], json!(["seccompFd"]));
    assert_eq!(report.payload["pid"], json!(child.as_raw()));
    assert_eq!(report.payload["metadata"], json!("kakuri-test-metadata"));
    assert_eq!(report.payload["state"]["status"], json!("creating"));
}

#[test]
fn send_listener_fd_passes_one_fd_and_the_whole_payload() {
    let dir = TempDir::new("send");
    let path = dir.0.join("agent.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    // A payload far larger than one socket buffer, so the data goes in several parts.
    let payload: Vec<u8> = json!({"fds": ["seccompFd"], "pad": "k".repeat(512 * 1024)})
        .to_string()
        .into_bytes();
    let expected = payload.clone();

    let receiver = std::thread::spawn(move || {
        wait_readable(listener.as_raw_fd(), "connection");
        let (mut conn, _) = listener.accept().expect("accept");
        let (mut data, fds, truncated) = recv_with_fds(conn.as_raw_fd());
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        conn.read_to_end(&mut data).expect("read to EOF");
        (data, fds, truncated)
    });

    let (pipe_rd, pipe_wr) = nix::unistd::pipe().expect("pipe");
    kakuri_seccomp::send_listener_fd(&path, &payload, pipe_wr.as_fd()).expect("send");
    drop(pipe_wr);
    let (data, fds, truncated) = receiver.join().expect("receiver");
    assert!(!truncated);
    assert_eq!(fds.len(), 1, "exactly one fd");
    assert_eq!(data.len(), expected.len());
    assert!(data == expected, "payload differs");

    // The received fd is our pipe's write end.
    nix::unistd::write(&fds[0], b"through-the-agent").expect("write via received fd");
    drop(fds);
    let mut got = String::new();
    File::from(pipe_rd).read_to_string(&mut got).unwrap();
    assert_eq!(got, "through-the-agent");
}

#[test]
fn send_listener_fd_errors_name_the_socket() {
    let dir = TempDir::new("senderr");
    let path = dir.0.join("nobody-listens.sock");
    let (_rd, wr) = nix::unistd::pipe().expect("pipe");
    let err = kakuri_seccomp::send_listener_fd(&path, b"{}", wr.as_fd()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("connect to the seccomp agent"), "{msg}");

    // A stream socket would drop an fd sent with no data: refused before connecting.
    let err = kakuri_seccomp::send_listener_fd(&path, b"", wr.as_fd()).unwrap_err();
    assert!(
        err.to_string().contains("empty container process state"),
        "{err}"
    );
}
