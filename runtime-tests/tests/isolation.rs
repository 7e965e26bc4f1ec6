//! Namespaces: new ones of every type, and joining an existing one by path.

use kakuri_runtime_tests::*;
use std::path::Path;

#[test]
fn every_namespace_is_new() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.add_namespace("cgroup", None);
    b.set_args(&["sleep", "60"]);
    let c = env.create(&b);
    let pid = c.pid().to_string();
    for kind in ["pid", "net", "ipc", "uts", "mnt", "cgroup"] {
        let host = ns_link("self", kind);
        let inner = ns_link(&pid, kind);
        assert_ne!(host, inner, "{kind} namespace of the container must be new");
    }
    // Namespaces not requested are shared with the host.
    assert_eq!(ns_link("self", "user"), ns_link(&pid, "user"));
    drop(c);
    env.finish();
}

#[test]
fn pid_namespace_container_is_pid_1() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("echo self=$$; tr '\\0' ' ' < /proc/1/cmdline; echo; ls /proc | grep -c '^[0-9]'");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("self=1"), "{out}");
    let cmdline = lines.next().unwrap_or_default();
    assert!(cmdline.starts_with("sh -c echo self=$$"), "{out}");
    let nprocs: u32 = lines.next().unwrap_or("x").trim().parse().expect("count");
    assert!(
        nprocs <= 3,
        "only the container's processes are visible: {out}"
    );
    env.finish();
}

#[test]
fn uts_namespace_hostname() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_hostname("kakuri-host");
    b.set_sh("hostname; cat /proc/sys/kernel/hostname");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout, "kakuri-host\nkakuri-host\n", "{out}");
    env.finish();
}

#[test]
fn uts_namespace_domainname() {
    // runc 1.1.5 ignores the `domainname` field (supported from runc 1.2): it fails this test.
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_hostname("kakuri-host");
    b.set("/domainname", serde_json::json!("kakuri.example"));
    b.set_sh("cat /proc/sys/kernel/domainname");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout.trim(), "kakuri.example", "{out}");
    env.finish();
}

#[test]
fn network_namespace_has_only_lo() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("ls /sys/class/net; tail -n +3 /proc/net/dev | cut -d: -f1");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(line_set(&out.stdout), line_set("lo"), "{out}");
    env.finish();
}

#[test]
fn ipc_namespace_is_private() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("readlink /proc/self/ns/ipc");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert!(out.stdout.starts_with("ipc:["), "{out}");
    assert_ne!(out.stdout.trim(), ns_link("self", "ipc"), "{out}");
    env.finish();
}

#[test]
fn cgroup_namespace_root_is_slash() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.add_namespace("cgroup", None);
    b.set_sh("cat /proc/self/cgroup");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert!(!out.stdout.trim().is_empty(), "{out}");
    for line in out.stdout.lines() {
        assert!(
            line.ends_with(":/"),
            "cgroup path must be / inside a cgroup ns: {out}"
        );
    }
    env.finish();
}

#[test]
fn user_namespace_with_mappings() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.add_user_namespace(231072, 65536);
    b.set_sh("id -u; id -g; cat /proc/self/uid_map; echo ready; sleep 60");
    let c = env.create(&b);
    let pid = c.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(
        status_field(&status, "Uid")
            .unwrap()
            .split_whitespace()
            .next(),
        Some("231072"),
        "host sees the mapped uid: {status}"
    );
    assert_eq!(
        status_field(&status, "Gid")
            .unwrap()
            .split_whitespace()
            .next(),
        Some("231072"),
        "host sees the mapped gid: {status}"
    );
    assert_ne!(ns_link("self", "user"), ns_link(&pid.to_string(), "user"));
    c.start();
    let out = c.wait_stdout("ready");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["0", "0"], "{out}");
    let map: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(map, ["0", "231072", "65536"], "{out}");
    drop(c);
    env.finish();
}

#[test]
fn time_namespace_when_kernel_has_it() {
    // runc 1.1.5 does not know the "time" namespace type: it fails this test.
    if !Path::new("/proc/self/ns/time").exists() {
        println!("SKIP: this kernel has no time namespaces (/proc/self/ns/time missing)");
        return;
    }
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.add_namespace("time", None);
    b.set_sh("readlink /proc/self/ns/time; sleep 60");
    let c = env.create(&b);
    c.start();
    let out = c.wait_stdout("time:[");
    let host = ns_link("self", "time");
    assert_ne!(out.trim(), host, "container's time ns must be new");
    assert_ne!(ns_link(&c.pid().to_string(), "time_for_children"), host);
    drop(c);
    env.finish();
}

#[test]
fn join_network_namespace_by_path() {
    let env = TestEnv::new();
    let mut b1 = env.bundle();
    b1.set_args(&["sleep", "60"]);
    let first = env.create(&b1);
    let first_pid = first.pid();
    let netns = format!("/proc/{first_pid}/ns/net");

    let mut b2 = env.bundle();
    b2.add_namespace("network", Some(Path::new(&netns)));
    b2.set_sh("readlink /proc/self/ns/net; sleep 60");
    let second = env.create(&b2);
    let expected = ns_link(&first_pid.to_string(), "net");
    assert_eq!(ns_link(&second.pid().to_string(), "net"), expected);
    assert_ne!(expected, ns_link("self", "net"));
    second.start();
    let out = second.wait_stdout("net:[");
    assert_eq!(out.trim(), expected, "inside view of the joined netns");
    // Other namespaces of the second container are still its own.
    assert_ne!(
        ns_link(&second.pid().to_string(), "uts"),
        ns_link(&first_pid.to_string(), "uts")
    );
    drop(second);
    drop(first);
    env.finish();
}
