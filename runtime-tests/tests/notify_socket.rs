//! `NOTIFY_SOCKET`: the sd_notify pass-through runc offers. The test owns a datagram socket
//! (the "caller", as systemd or podman would be) and runs the runtime with `NOTIFY_SOCKET`
//! naming it; the container sends on the socket the runtime gives it with a small static
//! helper compiled here. The container's READY waits for a file the test creates (in a bind
//! mount), so "before" is observed without timing guesses: nothing reaches the caller, and
//! `start` (or `run -d`) does not return, until the test opens the gate.
//!
//! runc 1.1.5 passes the same tests (`KAKURI_BIN=/usr/sbin/runc`), with two differences it
//! is allowed: it sends no `BARRIER=1` after MAINPID (runc main does, as kakuri), and when
//! the caller's socket cannot be reached `start` fails after starting the container (kakuri
//! checks before, leaving it created).

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use kakuri_runtime_tests::*;

fn is_runc() -> bool {
    runtime_bin().ends_with("runc")
}

/// Compile the helper into `rootfs/sdnotify`.
fn install_sdnotify(env: &TestEnv, b: &Bundle) {
    build_sdnotify(&b.rootfs().join("sdnotify"), env.dir());
}

/// The caller's notify socket: a thread receives every datagram (closing the descriptors of
/// a BARRIER=1 at once, as systemd does) and hands the texts over.
struct Caller {
    addr: String,
    rx: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Caller {
    fn bind(path: &Path) -> Caller {
        let sock = UnixDatagram::bind(path).expect("bind the caller's socket");
        Self::with(sock, path.to_str().expect("utf-8 path").to_string())
    }

    fn bind_abstract(name: &str) -> Caller {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind the abstract socket");
        Self::with(sock, format!("@{name}"))
    }

    fn with(sock: UnixDatagram, addr: String) -> Caller {
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
            while !stop2.load(Ordering::SeqCst) {
                let mut buf = [0u8; 4096];
                let mut iov = [IoSliceMut::new(&mut buf)];
                let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
                let Ok(msg) = recvmsg::<()>(
                    sock.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                ) else {
                    continue;
                };
                let n = msg.bytes;
                let mut fds = 0;
                for c in msg.cmsgs().into_iter().flatten() {
                    if let ControlMessageOwned::ScmRights(list) = c {
                        for fd in list {
                            // SAFETY: the kernel just installed this descriptor for us; it is
                            // closed right here (what acknowledges a barrier).
                            drop(unsafe { OwnedFd::from_raw_fd(fd) });
                            fds += 1;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let _ = tx.send(if fds > 0 {
                    format!("{text} (+{fds} fd)")
                } else {
                    text
                });
            }
        });
        Caller {
            addr,
            rx,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything received so far.
    fn pending(&self) -> Vec<String> {
        self.rx.try_iter().collect()
    }

    /// The next message, waiting up to `timeout`.
    fn next(&self, timeout: Duration) -> Option<String> {
        self.rx.recv_timeout(timeout).ok()
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The container: records what it sees into the gate dir, says something that is not READY,
/// waits for the gate, then notifies READY and sleeps.
const SCRIPT: &str = "echo \"$NOTIFY_SOCKET\" > /gate/env; \
    grep ' /run/notify ' /proc/self/mountinfo > /gate/mnt; \
    ls -l /run/notify > /gate/ls; \
    /sdnotify STATUS=waiting || exit 3; touch /gate/up; \
    while [ ! -e /gate/go ]; do usleep 10000; done; \
    /sdnotify READY=1 || exit 4; touch /gate/sent";

/// `kakuri VERB... <bundle> <id>` with the caller's socket as `NOTIFY_SOCKET`.
fn spawn_with_socket(
    env: &TestEnv,
    caller: &Caller,
    verb: &[&str],
    b: &Bundle,
    id: &str,
) -> Spawned {
    let mut cmd = env.rt().cmd(verb);
    cmd.arg(b.dir()).arg(id).env("NOTIFY_SOCKET", &caller.addr);
    env.rt().spawn_in(cmd, b.dir())
}

fn notify_bundle(env: &TestEnv, then: &str) -> (Bundle, PathBuf) {
    let gate = env.dir().join(format!("gate-{}", unique_id()));
    std::fs::create_dir(&gate).expect("mkdir gate");
    let mut b = env.bundle();
    install_sdnotify(env, &b);
    b.add_bind(&gate, "/gate", false, false);
    b.set_sh(&format!("{SCRIPT}; {then}"));
    (b, gate)
}

/// Nothing reaches the caller while the gate is closed, and `cmd` (start / run -d) keeps
/// waiting: checked for a while after the container said it is up.
fn assert_held(caller: &Caller, gate: &Path, cmd: &mut Spawned) {
    wait_file(&gate.join("up"), "");
    let deadline = std::time::Instant::now() + Duration::from_millis(500);
    while std::time::Instant::now() < deadline {
        assert!(
            caller.pending().is_empty(),
            "a message reached the caller before READY"
        );
        assert!(
            cmd.try_done().is_none(),
            "the runtime returned before the container was READY"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// READY=1 then MAINPID=<pid> (then BARRIER=1 with a descriptor, from runc main and kakuri).
#[track_caller]
fn assert_relayed(caller: &Caller, mainpid: i32) {
    let t = Duration::from_secs(10);
    assert_eq!(caller.next(t).as_deref(), Some("READY=1\n"));
    assert_eq!(
        caller.next(t).as_deref(),
        Some(format!("MAINPID={mainpid}\n").as_str())
    );
    if is_runc() {
        // runc 1.1.5 sends no barrier (runc main does).
        return;
    }
    assert_eq!(
        caller.next(t).as_deref(),
        Some("BARRIER=1 (+1 fd)"),
        "after MAINPID"
    );
    assert!(caller.pending().is_empty(), "more after the barrier");
}

trait TryDone {
    fn try_done(&mut self) -> Option<()>;
}

impl TryDone for Spawned {
    fn try_done(&mut self) -> Option<()> {
        // A process that has exited is a zombie (or gone) until waited for.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        let state = stat.rsplit_once(") ")?.1.chars().next()?;
        (state == 'Z' || state == 'X').then_some(())
    }
}

fn state_dir(env: &TestEnv, id: &str) -> PathBuf {
    env.rt().root().join(id)
}

#[test]
fn create_start_relays_ready_only_after_the_container_sends_it() {
    let env = TestEnv::new();
    let caller = Caller::bind(&env.dir().join("caller.sock"));
    let (b, gate) = notify_bundle(&env, "exec sleep 1000");
    let id = env.new_id();
    b.write();
    let out = spawn_with_socket(&env, &caller, &["create", "--bundle"], &b, &id).wait(CMD_TIMEOUT);
    out.ok();
    let c = env.container(&id, &out);
    // The directory exists from create on; the socket is bound by start.
    let dir = state_dir(&env, &id).join("notify");
    assert!(dir.is_dir(), "{} after create", dir.display());
    assert!(!dir.join("notify.sock").exists(), "socket before start");

    let mut start = env.rt().cmd(&["start", &id]);
    start.env("NOTIFY_SOCKET", &caller.addr);
    let mut start = env.rt().spawn(start);
    assert_held(&caller, &gate, &mut start);
    assert!(dir.join("notify.sock").exists(), "socket while started");

    std::fs::write(gate.join("go"), "").expect("open the gate");
    start.wait(CMD_TIMEOUT).ok();
    assert_relayed(&caller, c.pid());
    wait_file(&gate.join("sent"), "");

    // What the container saw: its own socket, in a read-only, nosuid, nodev, noexec bind.
    let env_seen = std::fs::read_to_string(gate.join("env")).expect("env");
    assert_eq!(env_seen.trim(), "/run/notify/notify.sock");
    let mnt = std::fs::read_to_string(gate.join("mnt")).expect("mountinfo line");
    let opts = mnt.split(' ').nth(5).unwrap_or_default();
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(opts.split(',').any(|x| x == o), "{o} missing: {mnt}");
    }
    // An exec'd process is not given the socket (runc builds it from config.json).
    let out = env.run(&["exec", &id, "sh", "-c", "echo \"[$NOTIFY_SOCKET]\""]);
    out.ok();
    assert_eq!(out.stdout.trim(), "[]");

    c.delete(true).ok();
    assert!(!state_dir(&env, &id).exists(), "state left after delete");
    drop(c);
    env.finish();
}

#[test]
fn run_detached_returns_after_ready_with_the_init_as_mainpid() {
    let env = TestEnv::new();
    let caller = Caller::bind(&env.dir().join("caller.sock"));
    let (b, gate) = notify_bundle(&env, "exec sleep 1000");
    let id = env.new_id();
    b.write();
    let mut run = spawn_with_socket(&env, &caller, &["run", "-d", "--bundle"], &b, &id);
    assert_held(&caller, &gate, &mut run);
    std::fs::write(gate.join("go"), "").expect("open the gate");
    let out = run.wait(CMD_TIMEOUT);
    out.ok();
    let c = env.container(&id, &out);
    assert_eq!(c.status(), "running");
    assert_relayed(&caller, c.pid());
    c.delete(true).ok();
    assert!(!state_dir(&env, &id).exists(), "state left after delete");
    drop(c);
    env.finish();
}

#[test]
fn run_in_the_foreground_relays_ready_with_itself_as_mainpid() {
    let env = TestEnv::new();
    let caller = Caller::bind(&env.dir().join("caller.sock"));
    let (b, gate) = notify_bundle(&env, "exit 0");
    let id = env.new_id();
    b.write();
    let mut run = spawn_with_socket(&env, &caller, &["run", "--bundle"], &b, &id);
    let run_pid = run.pid() as i32;
    wait_file(&gate.join("up"), "");
    assert!(run.try_done().is_none());
    assert!(caller.pending().is_empty(), "a message before READY");
    std::fs::write(gate.join("go"), "").expect("open the gate");
    assert_relayed(&caller, run_pid);
    run.wait(CMD_TIMEOUT).ok();
    assert!(!state_dir(&env, &id).exists(), "state left after run");
    env.finish();
}

#[test]
fn start_returns_when_the_container_exits_without_ready() {
    let env = TestEnv::new();
    let caller = Caller::bind(&env.dir().join("caller.sock"));
    let mut b = env.bundle();
    b.set_args(&["true"]);
    let id = env.new_id();
    b.write();
    let out = spawn_with_socket(&env, &caller, &["create", "--bundle"], &b, &id).wait(CMD_TIMEOUT);
    out.ok();
    let c = env.container(&id, &out);
    let mut start = env.rt().cmd(&["start", &id]);
    start.env("NOTIFY_SOCKET", &caller.addr);
    env.rt().output(start).ok();
    c.wait_status("stopped");
    assert!(caller.pending().is_empty(), "nothing was ready");
    c.delete(false).ok();
    drop(c);
    env.finish();
}

#[test]
fn abstract_caller_socket() {
    let env = TestEnv::new();
    let caller = Caller::bind_abstract(&format!("kakuri-notify-{}", env.id()));
    let (b, gate) = notify_bundle(&env, "exec sleep 1000");
    std::fs::write(gate.join("go"), "").expect("gate open from the start");
    let id = env.new_id();
    b.write();
    let out =
        spawn_with_socket(&env, &caller, &["run", "-d", "--bundle"], &b, &id).wait(CMD_TIMEOUT);
    out.ok();
    let c = env.container(&id, &out);
    assert_relayed(&caller, c.pid());
    drop(c);
    env.finish();
}

#[test]
fn failed_create_leaves_no_notify_state() {
    let env = TestEnv::new();
    let caller = Caller::bind(&env.dir().join("caller.sock"));
    let mut b = env.bundle();
    b.set_args(&["sleep", "1000"]);
    // Fails once the state directory (and its notify directory) exist.
    b.add_hook("createRuntime", "/bin/false", &["false"], &[], None);
    let id = env.new_id();
    b.write();
    let out = spawn_with_socket(&env, &caller, &["create", "--bundle"], &b, &id).wait(CMD_TIMEOUT);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(!state_dir(&env, &id).exists(), "state left: {out}");
    assert!(caller.pending().is_empty());
    env.finish();
}

#[test]
fn unreachable_caller_socket_fails_start() {
    let env = TestEnv::new();
    let missing = env.dir().join("no-such.sock");
    let mut b = env.bundle();
    b.set_args(&["sleep", "1000"]);
    let id = env.new_id();
    b.write();
    let mut cmd = env.rt().cmd(&["create", "--bundle"]);
    cmd.arg(b.dir()).arg(&id).env("NOTIFY_SOCKET", &missing);
    let out = env.rt().spawn_in(cmd, b.dir()).wait(CMD_TIMEOUT);
    out.ok();
    let c = env.container(&id, &out);
    let mut start = env.rt().cmd(&["start", &id]);
    start.env("NOTIFY_SOCKET", &missing);
    let out = env.rt().output(start);
    out.fails_with(&format!(
        "dial unixgram {}: connect: no such file or directory",
        missing.display()
    ));
    // runc 1.1.5 dials after starting the container; kakuri before.
    let expected = if is_runc() { "running" } else { "created" };
    assert_eq!(c.status(), expected);
    drop(c);
    env.finish();
}

#[test]
fn start_without_notify_dir_fails_as_runc() {
    // Created without NOTIFY_SOCKET, started with it: there is no directory to bind in.
    let env = TestEnv::new();
    let caller = Caller::bind(&env.dir().join("caller.sock"));
    let mut b = env.bundle();
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    let mut start = env.rt().cmd(&["start", c.id()]);
    start.env("NOTIFY_SOCKET", &caller.addr);
    let out = env.rt().output(start);
    let sock = state_dir(&env, c.id()).join("notify/notify.sock");
    out.fails_with(&format!(
        "listen unixgram {}: bind: no such file or directory",
        sock.display()
    ));
    assert_eq!(c.status(), "created");
    drop(c);
    env.finish();
}

#[test]
fn rootless_run_detached_relays_ready() {
    // The unprivileged user of rootless.rs (made by runtime-tests/setup-rootless-user).
    let env = TestEnv::new().as_user("kakuri-rl");
    let u = env.rt().user().expect("a rootless env").clone();
    let sock = env.dir().join("caller.sock");
    let caller = Caller::bind(&sock);
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    // A bundle from `spec --rootless` run as the user, with the gate and the helper.
    let spec_dir = env.dir().join("spec");
    std::fs::create_dir(&spec_dir).expect("mkdir spec");
    std::os::unix::fs::chown(&spec_dir, Some(u.uid), Some(u.gid)).expect("chown");
    let mut cmd = Command::new(runtime_bin());
    cmd.args(["spec", "--rootless", "--bundle"]).arg(&spec_dir);
    u.apply(&mut cmd);
    let out = cmd.output().expect("spec --rootless");
    assert!(out.status.success(), "{out:?}");
    let (mut b, gate) = notify_bundle(&env, "exec sleep 1000");
    std::os::unix::fs::chown(&gate, Some(u.uid), Some(u.gid)).expect("chown gate");
    let mut cfg = read_json(&spec_dir.join("config.json"));
    cfg["process"] = b.config()["process"].clone();
    cfg["process"]["user"] = serde_json::json!({"uid": 0, "gid": 0});
    cfg["root"] = serde_json::json!({"path": "rootfs", "readonly": false});
    let gate_mount = b.config()["mounts"]
        .as_array()
        .and_then(|m| m.last().cloned())
        .expect("the gate mount");
    cfg["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(gate_mount);
    *b.config_mut() = cfg;
    std::fs::write(gate.join("go"), "").expect("gate open from the start");
    let id = env.new_id();
    b.write();
    let out =
        spawn_with_socket(&env, &caller, &["run", "-d", "--bundle"], &b, &id).wait(CMD_TIMEOUT);
    out.ok();
    let c = env.container(&id, &out);
    assert_relayed(&caller, c.pid());
    wait_file(&gate.join("sent"), "");
    assert_eq!(
        std::fs::read_to_string(gate.join("env"))
            .expect("env")
            .trim(),
        "/run/notify/notify.sock"
    );
    c.delete(true).ok();
    assert!(!state_dir(&env, &id).exists(), "state left after delete");
    drop(c);
    env.finish();
}

#[test]
fn container_without_mount_namespace_leaves_no_mount() {
    // The /run/notify bind is then made in the runtime's mount namespace, under the rootfs.
    if is_runc() {
        eprintln!(
            "SKIP container_without_mount_namespace_leaves_no_mount: runc refuses such a \
             container (\"unable to restrict sys entries without a private MNT namespace\")"
        );
        return;
    }
    let env = TestEnv::new();
    let caller = Caller::bind(&env.dir().join("caller.sock"));
    let (mut b, gate) = notify_bundle(&env, "exec sleep 1000");
    b.remove_namespace("mount");
    std::fs::write(gate.join("go"), "").expect("gate open from the start");
    let id = env.new_id();
    b.write();
    let out =
        spawn_with_socket(&env, &caller, &["run", "-d", "--bundle"], &b, &id).wait(CMD_TIMEOUT);
    out.ok();
    let c = env.container(&id, &out);
    assert_relayed(&caller, c.pid());
    c.delete(true).ok();
    drop(c);
    env.finish();
}
