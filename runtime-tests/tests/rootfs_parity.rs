//! What a container process sees of its filesystem and network set-up, where kakuri must match
//! runc: the loopback interface, the working directory, a read-only /dev, tmpfs modes, a mount
//! on "/", `--no-pivot` and the mount table. Every test also passes with
//! `KAKURI_BIN=/usr/sbin/runc`.

use kakuri_runtime_tests::*;
use std::process::{Child, Command, Stdio};

/// A host process holding a namespace made with `unshare(1)`; killed and reaped on drop.
struct NsHolder(Child);

impl NsHolder {
    /// `unshare <flags> sleep 600`, once its namespace exists (polled through /proc).
    fn new(env: &TestEnv, flags: &[&str], kind: &str) -> NsHolder {
        let child = Command::new("unshare")
            .args(flags)
            .args(["sleep", "600"])
            .env(ENV_MARKER, env.id())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare");
        let h = NsHolder(child);
        let pid = h.0.id().to_string();
        let own = ns_link("self", kind);
        wait_for(
            &format!("unshare to make its {kind} namespace"),
            WAIT_TIMEOUT,
            || {
                let l = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
                (l.to_string_lossy() != own).then_some(())
            },
        );
        h
    }

    fn ns_path(&self, kind: &str) -> String {
        format!("/proc/{}/ns/{kind}", self.0.id())
    }
}

impl Drop for NsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// 1. loopback

/// A new network namespace gets `lo` up (runc's "loopback" network): flags, operstate, and a TCP
/// exchange over 127.0.0.1 (busybox httpd and wget; the client retries until the server listens). Also in a new user
/// namespace, which then owns the network namespace.
#[test]
fn loopback_is_up_in_a_new_network_namespace() {
    let env = TestEnv::new();
    for userns in [false, true] {
        let mut b = env.bundle();
        if userns {
            b.add_user_namespace(231072, 65536);
        }
        b.set_sh(
            "cat /sys/class/net/lo/flags /sys/class/net/lo/operstate
             mkdir /tmp/www; echo hello-lo > /tmp/www/f
             httpd -f -p 127.0.0.1:5555 -h /tmp/www & l=$!
             i=0
             until got=$(wget -q -O - http://127.0.0.1:5555/f 2>/dev/null); do
                 i=$((i+1)); [ $i -gt 300 ] && break; usleep 10000
             done
             kill $l
             echo got=$got",
        );
        let (_, out) = env.run_container(&b, &[]);
        out.ok();
        let mut lines = out.stdout.lines();
        let flags = lines.next().unwrap_or_default();
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16)
            .unwrap_or_else(|e| panic!("lo flags {flags:?}: {e}: {out}"));
        assert_eq!(
            flags & 0x1,
            0x1,
            "IFF_UP not set on lo (userns {userns}): {out}"
        );
        // A loopback device that is up reports "unknown" (it has no carrier of its own).
        assert_eq!(lines.next(), Some("unknown"), "userns {userns}: {out}");
        assert!(
            out.stdout.contains("got=hello-lo"),
            "no exchange over lo (userns {userns}): {out}"
        );
    }
    env.finish();
}

/// A joined network namespace is left as it is: its `lo`, down, stays down (runc brings up
/// `lo` only in a namespace it makes).
#[test]
fn loopback_of_a_joined_network_namespace_is_left_alone() {
    let env = TestEnv::new();
    let holder = NsHolder::new(&env, &["--net"], "net");
    let mut b = env.bundle();
    b.add_namespace(
        "network",
        Some(std::path::Path::new(&holder.ns_path("net"))),
    );
    b.set_sh("cat /sys/class/net/lo/flags");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    let flags = out.stdout.trim();
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("lo flags {flags:?}: {e}: {out}"));
    assert_eq!(
        flags & 0x1,
        0,
        "lo of the joined namespace was brought up: {out}"
    );
    drop(holder);
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// 2. working directory and privileges

/// runc enters `process.cwd` before it drops to the process user: a cwd only root may enter
/// (/root, mode 0700) works for uid 42, for the init and for `exec`. A missing cwd is created.
#[test]
fn cwd_is_entered_before_the_user_changes() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    std::fs::set_permissions(
        b.rootfs().join("root"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod rootfs/root");
    b.set_user(42, 42, &[]);
    b.set_cwd("/root");
    b.set_sh("echo uid=$(id -u) pwd=$(pwd); ls . >/dev/null 2>&1 || echo cannot-list; sleep 60");
    let c = env.create(&b);
    c.start();
    let out = c.wait_stdout("pwd=");
    assert!(out.contains("uid=42 pwd=/root"), "{out}");
    // The directory itself stays closed to the user: only entering it went through as root.
    assert!(out.contains("cannot-list"), "{out}");
    let exec = env.run(&["exec", "--user", "42:42", "--cwd", "/root", c.id(), "pwd"]);
    exec.ok();
    assert_eq!(exec.stdout.trim(), "/root", "{exec}");
    drop(c);

    let mut b = env.bundle();
    b.set_user(42, 42, &[]);
    b.set_cwd("/new/dir");
    b.set_sh("pwd; stat -c %u:%a /new/dir");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout, "/new/dir\n0:755\n", "{out}");
    env.finish();
}
