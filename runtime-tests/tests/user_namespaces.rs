//! User namespaces to the end: joining one by path together with a new pid namespace (the pid
//! namespace must belong to the joined user namespace), mappings given with a joined user
//! namespace, and time namespace offsets in a new user namespace.

use kakuri_runtime_tests::*;
use serde_json::json;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// The inode of the user namespace that owns the pid namespace of `pid` (NS_GET_USERNS).
fn pid_ns_owner_inode(pid: i32) -> u64 {
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    let f = std::fs::File::open(format!("/proc/{pid}/ns/pid")).unwrap();
    // SAFETY: ioctl on a namespace file with no argument; it returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_USERNS) };
    assert!(
        fd >= 0,
        "NS_GET_USERNS: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor the ioctl returned, owned from here on.
    let owner = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    owner.metadata().unwrap().ino()
}

/// A created (not started) container in a new user namespace, whose namespace others join.
fn holder(env: &TestEnv) -> (Container<'_>, std::path::PathBuf) {
    let mut b = env.bundle();
    b.add_user_namespace(231072, 65536);
    b.set_args(&["sleep", "600"]);
    let c = env.create(&b);
    let path = std::path::PathBuf::from(format!("/proc/{}/ns/user", c.pid()));
    (c, path)
}

#[test]
fn joined_user_namespace_owns_the_new_pid_namespace() {
    let env = TestEnv::new();
    let (h, userns) = holder(&env);
    let userns_ino = std::fs::metadata(&userns).unwrap().ino();
    let mut b = env.bundle();
    b.add_namespace("user", Some(&userns));
    b.remove("/linux/uidMappings");
    b.remove("/linux/gidMappings");
    b.set_sh("echo pid=$$; ps -o pid,comm; echo ready; exec sleep 600");
    let c = env.create(&b);
    let pid = c.pid();
    assert_eq!(
        pid_ns_owner_inode(pid),
        userns_ino,
        "the container's pid namespace belongs to the joined user namespace"
    );
    assert_eq!(
        ns_link(&pid.to_string(), "user"),
        ns_link(&h.pid().to_string(), "user")
    );
    assert_ne!(ns_link(&pid.to_string(), "pid"), ns_link("self", "pid"));
    c.start();
    let out = c.wait_stdout("ready");
    assert!(out.starts_with("pid=1\n"), "{out}");
    let ps: Vec<&str> = out.lines().skip(2).take_while(|l| *l != "ready").collect();
    assert_eq!(
        ps.first().map(|l| l.split_whitespace().next()),
        Some(Some("1")),
        "{out}"
    );
    // exec joins the same namespaces: it sees the init as pid 1 and itself in its pid namespace.
    let ex = env.run(&[
        "exec",
        c.id(),
        "sh",
        "-c",
        "cat /proc/1/comm; readlink /proc/self/ns/pid",
    ]);
    ex.ok();
    assert_eq!(
        ex.stdout.lines().collect::<Vec<_>>(),
        ["sleep", ns_link(&pid.to_string(), "pid").as_str()],
        "{ex}"
    );
    c.kill("KILL").ok();
    c.wait_status("stopped");
    c.delete(false).ok();
    drop(c);
    drop(h);
    env.finish();
}

#[test]
fn mappings_with_a_joined_user_namespace() {
    let env = TestEnv::new();
    let (h, userns) = holder(&env);
    // Other mappings than the namespace's: refused with runc's text, nothing left.
    let mut b = env.bundle();
    b.add_namespace("user", Some(&userns));
    b.set(
        "/linux/uidMappings",
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
    );
    b.set(
        "/linux/gidMappings",
        json!([{"containerID": 0, "hostID": 231072, "size": 65536}]),
    );
    let id = env.new_id();
    env.create_raw(&b, &id, &[]).fails_with(
        "linux.uidMappings: user namespaces enabled, but both namespace path and non-matching mapping specified -- you may only provide one",
    );
    // The holder stays; nothing of the refused container does.
    assert!(!env.rt().root().join(&id).exists(), "state of {id} left");
    let left = scan_leaks(&|s: &str| contains_token(s, &id), &[], None);
    assert!(left.is_empty(), "{left:#?}");
    // The namespace's own mappings: accepted with runc's warning (containerd and CRI-O pass
    // both).
    b.set(
        "/linux/uidMappings",
        json!([{"containerID": 0, "hostID": 231072, "size": 65536}]),
    );
    b.set_sh("cat /proc/self/uid_map");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert!(
        out.stderr
            .contains("both a userns path to join and a matching userns mapping"),
        "{out}"
    );
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["0", "231072", "65536"],
        "{out}"
    );
    drop(h);
    env.finish();
}

#[test]
fn time_offsets_in_a_new_user_namespace() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.add_user_namespace(231072, 65536);
    b.add_namespace("time", None);
    b.set(
        "/linux/timeOffsets",
        json!({"monotonic": {"secs": 86400, "nanosecs": 0},
               "boottime": {"secs": 172800, "nanosecs": 0}}),
    );
    b.set_sh("cat /proc/self/timens_offsets; cat /proc/uptime; echo ready; exec sleep 600");
    let c = env.create(&b);
    let pid = c.pid();
    assert_ne!(ns_link(&pid.to_string(), "time"), ns_link("self", "time"));
    assert_ne!(ns_link(&pid.to_string(), "user"), ns_link("self", "user"));
    c.start();
    let out = c.wait_stdout("ready");
    let host_uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    let offsets: Vec<Vec<&str>> = lines[..2]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(offsets.contains(&vec!["monotonic", "86400", "0"]), "{out}");
    assert!(offsets.contains(&vec!["boottime", "172800", "0"]), "{out}");
    let uptime: f64 = lines[2].split_whitespace().next().unwrap().parse().unwrap();
    // /proc/uptime is CLOCK_BOOTTIME in the container's time namespace: the host's plus the
    // offset (read after the container's, so it is not smaller than the container's base).
    assert!(
        uptime >= 172800.0 && uptime <= host_uptime + 172800.0,
        "container uptime {uptime}, host {host_uptime}: {out}"
    );
    assert!(uptime - 172800.0 > host_uptime - 60.0, "{out}");
    drop(c);
    env.finish();
}

#[test]
fn time_offsets_with_a_joined_user_namespace_and_new_pid_namespace() {
    // The intermediate process path: the time namespace entered by the runtime for its
    // children reaches the init cloned by the intermediate.
    let env = TestEnv::new();
    let (h, userns) = holder(&env);
    let mut b = env.bundle();
    b.add_namespace("user", Some(&userns));
    b.remove("/linux/uidMappings");
    b.remove("/linux/gidMappings");
    b.add_namespace("time", None);
    b.set(
        "/linux/timeOffsets",
        json!({"boottime": {"secs": 172800, "nanosecs": 0}}),
    );
    b.set_sh("echo pid=$$; cat /proc/uptime");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    let host_uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "pid=1", "{out}");
    let uptime: f64 = lines[1].split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        uptime <= host_uptime + 172800.0 && uptime - 172800.0 > host_uptime - 60.0,
        "container uptime {uptime}, host {host_uptime}: {out}"
    );
    drop(h);
    env.finish();
}

#[test]
fn idmap_without_mappings_takes_the_joined_user_namespace() {
    let env = TestEnv::new();
    let (h, userns) = holder(&env);
    let src = env.dir().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("host0"), "x").unwrap();
    let mut b = env.bundle();
    b.add_namespace("user", Some(&userns));
    b.remove("/linux/uidMappings");
    b.remove("/linux/gidMappings");
    // The rootfs belongs to the host's root: the mount point must exist already.
    std::fs::create_dir(b.rootfs().join("data")).unwrap();
    b.add_mount(json!({
        "destination": "/data", "type": "bind", "source": src, "options": ["bind", "idmap"]
    }));
    // The joined namespace maps 0 to 231072: on-disk 0 is root inside, and root's new file is
    // stored as 0.
    b.set_sh("stat -c %u:%g /data/host0; touch /data/new; grep -c idmapped /proc/self/mountinfo");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["0:0", "1"],
        "{out}"
    );
    let m = std::fs::metadata(src.join("new")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
    drop(h);
    env.finish();
}
