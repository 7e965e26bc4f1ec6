//! linux.seccomp in real containers: podman's default profile enforced on the init and on exec'd
//! processes, the ERRNO/KILL/TRAP/LOG actions observed, and SCMP_ACT_NOTIFY with the test as
//! the seccomp agent (listener fd and containerProcessState received, notifications answered).
//!
//! Docker's default profile is compiled into dockerd (docker.io 20.10 ships no JSON of it), so
//! podman's (containers-common, derived from moby's) is the default profile tested here.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kakuri_runtime_tests::seccomp_profile::{podman_seccomp, strings, PODMAN_CAPS};
use kakuri_runtime_tests::*;
use serde_json::{json, Value};

/// A static program that makes raw syscalls given as `nr:a0:a1:a2` (decimal or 0x hex) and
/// prints `ok` or the errno name number for each, one per line.
const PROBE_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        unsigned long v[4] = {0, 0, 0, 0};
        char *p = argv[i];
        for (int k = 0; k < 4 && *p; k++) {
            v[k] = strtoul(p, &p, 0);
            if (*p == ':') p++;
        }
        errno = 0;
        long r = syscall((long)v[0], v[1], v[2], v[3]);
        if (r < 0) printf("%ld=errno%d\n", (long)v[0], errno);
        else printf("%ld=ok\n", (long)v[0]);
        fflush(stdout);
    }
    return 0;
}
"#;

/// Compile the probe into `rootfs/probe` (gcc is part of the test host's setup).
fn install_probe(env: &TestEnv, b: &Bundle) {
    let src = env.dir().join("probe.c");
    std::fs::write(&src, PROBE_C).expect("write probe.c");
    let out = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(b.rootfs().join("probe"))
        .arg(&src)
        .output()
        .expect("run cc (install gcc)");
    assert!(
        out.status.success(),
        "cc -static probe.c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_podman_caps(b: &mut Bundle) {
    for set in ["bounding", "effective", "permitted"] {
        b.set_caps(set, &PODMAN_CAPS);
    }
    b.set_caps("inheritable", &[]);
    b.set_caps("ambient", &[]);
}

/// Probe calls (amd64 numbers) whose outcome podman's profile changes: add_key is not listed
/// (default action, ENOSYS); socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT) is refused with EINVAL
/// without CAP_AUDIT_WRITE; personality(READ_IMPLIES_EXEC) is not an allowed persona (ENOSYS);
/// getpid is allowed.
const PROBE_ARGS: [&str; 4] = ["248:0:0:0", "41:16:3:9", "135:0x400000", "39"];

#[test]
fn podman_default_profile_enforced_in_init_and_exec() {
    let env = TestEnv::new();
    // Control: without the profile the same calls reach the kernel and succeed or fail
    // differently (add_key: EINVAL for a NULL type).
    let mut plain = env.bundle();
    install_probe(&env, &plain);
    set_podman_caps(&mut plain);
    plain.set_args(&["/probe"]);
    plain.config_mut()["process"]["args"]
        .as_array_mut()
        .expect("args")
        .extend(PROBE_ARGS.iter().map(|a| json!(a)));
    let (_, out) = env.run_container(&plain, &[]);
    out.ok();
    assert_eq!(
        out.stdout, "248=errno22\n41=ok\n135=ok\n39=ok\n",
        "control run without seccomp"
    );

    let mut b = env.bundle();
    install_probe(&env, &b);
    set_podman_caps(&mut b);
    b.set("/linux/seccomp", podman_seccomp());
    b.set_args(&["/probe"]);
    b.config_mut()["process"]["args"]
        .as_array_mut()
        .expect("args")
        .extend(PROBE_ARGS.iter().map(|a| json!(a)));
    let expected = "248=errno38\n41=errno22\n135=errno38\n39=ok\n";
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout, expected, "init under podman's profile");

    // busybox's own tools see the same filter: chroot is allowed (CAP_SYS_CHROOT), sethostname
    // is refused with EPERM by the profile (no CAP_SYS_ADMIN).
    let mut sh = env.bundle();
    set_podman_caps(&mut sh);
    sh.set("/linux/seccomp", podman_seccomp());
    sh.set_sh("hostname kakuri-x 2>&1; chroot / true && echo chroot-ok");
    let (_, out) = env.run_container(&sh, &[]);
    out.ok();
    assert!(
        out.stdout.contains("Operation not permitted") && out.stdout.contains("chroot-ok"),
        "{out}"
    );

    // exec'd processes get the container's filter too, with and without noNewPrivileges.
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    c.start();
    for extra in [&[][..], &["--no-new-privs"][..]] {
        let mut args = vec!["exec"];
        args.extend_from_slice(extra);
        args.push(c.id());
        args.push("/probe");
        args.extend_from_slice(&PROBE_ARGS);
        let out = env.run(&args);
        out.ok();
        assert_eq!(
            out.stdout, expected,
            "exec {extra:?} under podman's profile"
        );
    }
    drop(c);
    env.finish();
}

fn rule(names: &[&str], action: &str) -> Value {
    json!({"names": names, "action": action})
}

#[test]
fn errno_kill_trap_and_log_actions() {
    let env = TestEnv::new();
    // ERRNO with errnoRet: mkdir fails with EXDEV.
    let mut b = env.bundle();
    let mut errno_rule = rule(&["mkdir", "mkdirat"], "SCMP_ACT_ERRNO");
    errno_rule["errnoRet"] = json!(libc::EXDEV);
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [errno_rule]}),
    );
    b.set_sh("mkdir /tmp/kakuri-d 2>&1; echo rc=$?");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert!(
        out.stdout.contains("Invalid cross-device link") && out.stdout.contains("rc=1"),
        "{out}"
    );

    // TRACE without a tracer: the call fails with ENOSYS.
    let mut b = env.bundle();
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule(&["mkdir", "mkdirat"], "SCMP_ACT_TRACE")]}),
    );
    b.set_sh("mkdir /tmp/kakuri-t 2>&1; echo rc=$?");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert!(
        out.stdout.contains("Function not implemented") && out.stdout.contains("rc=1"),
        "{out}"
    );

    // KILL_PROCESS and KILL (thread) on umask: the shell dies of SIGSYS before printing.
    for action in ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL"] {
        let mut b = env.bundle();
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule(&["umask"], action)]}),
        );
        b.set_sh("echo before; sh -c 'umask 022; echo survived'; echo rc=$?");
        let (_, out) = env.run_container(&b, &[]);
        out.ok();
        assert_eq!(out.stdout, "before\nrc=159\n", "{action}: {out}");
    }

    // TRAP: SIGSYS is delivered and can be handled: the shell's trap runs and it goes on.
    let mut b = env.bundle();
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule(&["umask"], "SCMP_ACT_TRAP")]}),
    );
    b.set_sh("trap 'echo caught-sigsys' SYS; umask 022; echo after");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert!(
        out.stdout.contains("caught-sigsys") && out.stdout.contains("after"),
        "{out}"
    );

    // LOG: the call succeeds and the kernel logs it (audit type 1326, SECCOMP_RET_LOG).
    let logged = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_logged")
        .expect("read actions_logged");
    assert!(logged.contains("log"), "kernel does not log SCMP_ACT_LOG");
    let mut b = env.bundle();
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule(&["umask"], "SCMP_ACT_LOG")]}),
    );
    b.set_sh("umask 027; umask; sleep 1000");
    let c = env.create(&b);
    let pid = c.pid();
    c.start();
    c.wait_stdout("0027");
    let needle = format!(" pid={pid} ");
    wait_for(
        "the kernel log to show the logged umask",
        WAIT_TIMEOUT,
        || {
            let out = Command::new("dmesg").output().ok()?;
            let log = String::from_utf8_lossy(&out.stdout).into_owned();
            log.lines()
                .any(|l| {
                    l.contains("type=1326")
                        && l.contains(&needle)
                        && l.contains(" syscall=95 ")
                        && l.contains("code=0x7ffc0000")
                })
                .then_some(())
        },
    );
    drop(c);
    env.finish();
}

/// `struct seccomp_notif` and `struct seccomp_notif_resp` of <linux/seccomp.h>.
#[repr(C)]
#[derive(Default, Debug)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;

/// What the agent got on one connection.
struct Received {
    state: Value,
    syscalls: Vec<i32>,
}

/// Serve one agent connection: take the state JSON and the listener fd, then answer every
/// notification with ETXTBSY until the filter's last user is gone.
fn serve(conn: std::os::unix::net::UnixStream) -> Received {
    let mut buf = vec![0u8; 65536];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let (n, fd) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        let mut fds = Vec::new();
        for c in msg.cmsgs().expect("cmsgs") {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(f) = c {
                fds.extend(f);
            }
        }
        assert_eq!(fds.len(), 1, "exactly one fd: {fds:?}");
        // SAFETY: the kernel installed this descriptor for us.
        (msg.bytes, unsafe { OwnedFd::from_raw_fd(fds[0]) })
    };
    let mut text = buf[..n].to_vec();
    // The rest of the JSON, if it came in parts; the sender closes the connection.
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut &conn, &mut rest).expect("read state");
    text.extend(rest);
    let state: Value = serde_json::from_slice(&text).expect("containerProcessState JSON");
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    assert_eq!(link.to_string_lossy(), "anon_inode:seccomp notify");
    let mut syscalls = Vec::new();
    loop {
        let mut pfd = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&fd),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(20_000u16)).expect("poll");
        let ev = pfd[0].revents().unwrap_or(nix::poll::PollFlags::empty());
        if ev.contains(nix::poll::PollFlags::POLLHUP) || ev.is_empty() {
            break;
        }
        let mut req = Notif::default();
        // SAFETY: NOTIF_RECV fills a seccomp_notif, which `req` is.
        if unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_RECV, &mut req) } != 0 {
            continue;
        }
        syscalls.push(req.nr);
        let resp = NotifResp {
            id: req.id,
            val: 0,
            error: -libc::ETXTBSY,
            flags: 0,
        };
        // SAFETY: NOTIF_SEND reads a seccomp_notif_resp, which `resp` is.
        unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_SEND, &resp) };
    }
    Received { state, syscalls }
}

#[test]
fn notify_listener_gets_the_fd_for_create_and_exec() {
    let env = TestEnv::new();
    let sock = env.dir().join("agent.sock");
    let listener = UnixListener::bind(&sock).expect("bind agent socket");
    // One thread per connection: the init's listener is still in use when exec sends its own.
    let agent = std::thread::spawn(move || {
        let mut served = Vec::new();
        for _ in 0..2 {
            let (conn, _) = listener.accept().expect("accept");
            served.push(std::thread::spawn(move || serve(conn)));
        }
        let mut it = served
            .into_iter()
            .map(|t| t.join().expect("agent connection"));
        (it.next().expect("first"), it.next().expect("second"))
    });
    let mut b = env.bundle();
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "listenerMetadata": "kakuri-meta",
            "syscalls": [rule(&["mkdir", "mkdirat"], "SCMP_ACT_NOTIFY")]
        }),
    );
    b.set_annotation("org.kakuri.test", "notify");
    b.set_sh("mkdir /tmp/kakuri-n 2>&1; echo rc=$?; sleep 1000");
    let c = env.create(&b);
    let init_pid = c.pid();
    c.start();
    let out = c.wait_stdout("rc=");
    assert!(
        out.contains("Text file busy") && out.contains("rc=1"),
        "agent's answer seen by mkdir: {out}"
    );
    let ex = env.run(&[
        "exec",
        c.id(),
        "sh",
        "-c",
        "mkdir /tmp/kakuri-e 2>&1; echo rc=$?",
    ]);
    ex.ok();
    assert!(ex.stdout.contains("Text file busy"), "{ex}");
    c.kill("KILL").ok();
    c.wait_status("stopped");
    let (first, second) = agent.join().expect("agent thread");
    let s = &first.state;
    assert_eq!(s["fds"], json!(["seccompFd"]), "{s}");
    assert_eq!(s["metadata"], "kakuri-meta", "{s}");
    assert_eq!(s["pid"], json!(init_pid), "{s}");
    assert_eq!(s["state"]["id"], c.id(), "{s}");
    assert_eq!(s["state"]["status"], "creating", "{s}");
    assert_eq!(s["state"]["pid"], json!(init_pid), "{s}");
    assert_eq!(
        s["state"]["annotations"]["org.kakuri.test"], "notify",
        "{s}"
    );
    assert!(s["ociVersion"].is_string(), "{s}");
    assert!(
        first.syscalls.contains(&83) || first.syscalls.contains(&258),
        "mkdir/mkdirat notified: {:?}",
        first.syscalls
    );
    let s = &second.state;
    assert_eq!(s["state"]["status"], "running", "{s}");
    assert_eq!(s["state"]["pid"], json!(init_pid), "{s}");
    assert_ne!(s["pid"], json!(init_pid), "exec'd process pid: {s}");
    assert!(!second.syscalls.is_empty());
    drop(c);
    let _ = std::fs::remove_file(&sock);
    env.finish();
}

#[test]
fn notify_without_agent_fails_create_cleanly() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let missing: PathBuf = env.dir().join("no-agent.sock");
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": missing,
            "syscalls": [rule(&["mkdir"], "SCMP_ACT_NOTIFY")]
        }),
    );
    let id = env.new_id();
    let started = Instant::now();
    let out = env.create_raw(&b, &id, &[]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr_has("connect to the seccomp agent") && out.stderr_has("no-agent.sock"),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!Path::new(&env.rt().root().join(&id)).exists());
    env.finish();
}

#[test]
fn features_list_notify() {
    let env = TestEnv::new();
    let out = env.run(&["features"]);
    out.ok();
    let f: Value = serde_json::from_str(&out.stdout).expect("features JSON");
    let actions = strings(&f["linux"]["seccomp"]["actions"]);
    assert!(actions.contains(&"SCMP_ACT_NOTIFY"), "{actions:?}");
    env.finish();
}
