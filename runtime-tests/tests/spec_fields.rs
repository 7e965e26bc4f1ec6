//! runtime-spec 1.3 fields that are applied (each read back from inside the container) or
//! refused by name (and leave nothing behind): linux.personality, linux.memoryPolicy,
//! linux.netDevices, process.scheduler.flags by their spec names, linux.intelRdt,
//! linux.mountLabel, the other platforms' sections.

use std::process::Command;
use std::time::Duration;

use kakuri_runtime_tests::*;
use serde_json::json;

fn run_ok(env: &TestEnv, b: &Bundle) -> String {
    let (_, out) = env.run_container(b, &[]);
    out.ok();
    out.stdout
}

/// `create` fails naming `needle`, and no state, cgroup, mount or process is left.
#[track_caller]
fn refused(env: &TestEnv, b: &Bundle, needle: &str) {
    let id = env.new_id();
    let out = env.create_raw(b, &id, &[]);
    out.fails_with(needle);
    env.assert_no_leaks();
    assert!(
        !env.rt().root().join(&id).exists(),
        "state dir left for {id}"
    );
}

#[test]
fn personality_linux32_in_init_and_exec() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set("/linux/personality", json!({"domain": "LINUX32"}));
    b.set_sh("uname -m; cat /proc/self/personality");
    assert_eq!(run_ok(&env, &b), "i686\n00000008\n");
    // An exec'd process gets it too (as runc).
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    let out = env.run(&["exec", c.id(), "uname", "-m"]);
    out.ok();
    assert_eq!(out.stdout, "i686\n");
    // LINUX is the default persona.
    let mut b = env.bundle();
    b.set("/linux/personality", json!({"domain": "LINUX"}));
    b.set_sh("cat /proc/self/personality");
    assert_eq!(run_ok(&env, &b), "00000000\n");
    env.finish();
}

#[test]
fn personality_flags_and_bad_domain_refused() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set(
        "/linux/personality",
        json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}),
    );
    refused(&env, &b, "linux.personality.flags: ");
    let mut b = env.bundle();
    b.set("/linux/personality", json!({"domain": "LINUX64"}));
    refused(&env, &b, "linux.personality.domain");
    env.finish();
}

#[test]
fn memory_policy_is_the_process_policy() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    if !std::path::Path::new("/proc/self/numa_maps").exists() {
        eprintln!("SKIP memory_policy_is_the_process_policy: kernel without NUMA (no numa_maps)");
        env.finish();
        return;
    }
    // numa_maps shows the task policy for mappings without one of their own.
    b.set(
        "/linux/memoryPolicy",
        json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}),
    );
    b.set_sh("grep -c ' bind=static:0 ' /proc/self/numa_maps >/dev/null && echo bound; grep Mems_allowed_list /proc/self/status");
    let out = run_ok(&env, &b);
    assert!(out.starts_with("bound\nMems_allowed_list:"), "{out}");
    let mut b = env.bundle();
    b.set(
        "/linux/memoryPolicy",
        json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
    );
    b.set_sh("grep -q ' interleave:0 ' /proc/self/numa_maps && echo interleaved");
    assert_eq!(run_ok(&env, &b), "interleaved\n");
    // An exec'd process gets it too (as runc).
    let mut b = env.bundle();
    b.set(
        "/linux/memoryPolicy",
        json!({"mode": "MPOL_PREFERRED", "nodes": "0"}),
    );
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    let out = env.run(&[
        "exec",
        c.id(),
        "grep",
        "-c",
        " prefer:0 ",
        "/proc/self/numa_maps",
    ]);
    out.ok();
    assert_ne!(out.stdout.trim(), "0", "{out}");
    // Without it the policy is the default one.
    let mut b = env.bundle();
    b.set_sh("grep -c ' default ' /proc/self/numa_maps >/dev/null && echo default");
    assert_eq!(run_ok(&env, &b), "default\n");
    env.finish();
}

#[test]
fn memory_policy_errors_name_the_field() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set(
        "/linux/memoryPolicy",
        json!({"mode": "MPOL_BIND", "nodes": "0-x"}),
    );
    refused(
        &env,
        &b,
        "linux.memoryPolicy.nodes: invalid node list \"0-x\"",
    );
    let mut b = env.bundle();
    b.set("/linux/memoryPolicy", json!({"mode": "MPOL_BIND"}));
    refused(
        &env,
        &b,
        "linux.memoryPolicy.nodes: mode MPOL_BIND needs at least one node",
    );
    // A node this host does not have: the kernel's answer, named.
    let mut b = env.bundle();
    b.set(
        "/linux/memoryPolicy",
        json!({"mode": "MPOL_BIND", "nodes": "1000"}),
    );
    refused(&env, &b, "linux.memoryPolicy: set_mempolicy: ");
    env.finish();
}

#[test]
fn scheduler_flags_by_their_spec_names() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    // Reset-on-fork: the program keeps nice -5, what it forks starts at 0.
    b.set(
        "/process/scheduler",
        json!({"policy": "SCHED_OTHER", "nice": -5, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}),
    );
    b.set_sh("cut -d' ' -f19 /proc/$$/stat; cat /proc/self/stat | cut -d' ' -f19");
    assert_eq!(run_ok(&env, &b), "-5\n0\n");
    let mut b = env.bundle();
    b.set(
        "/process/scheduler",
        json!({"policy": "SCHED_OTHER", "nice": -5}),
    );
    b.set_sh("cut -d' ' -f19 /proc/$$/stat; cat /proc/self/stat | cut -d' ' -f19");
    assert_eq!(run_ok(&env, &b), "-5\n-5\n");
    env.finish();
}

/// A veth pair on the host (this kernel has no dummy driver): `.0` is the end the tests move,
/// `.1` its peer. Deleted when dropped if still there (deleting one end deletes both).
struct HostLink(String, String);

impl HostLink {
    fn new(tag: &str) -> HostLink {
        let n = std::process::id() % 100_000;
        let (name, peer) = (format!("kk{tag}{n}"), format!("kk{tag}{n}p"));
        let st = Command::new("ip")
            .args(["link", "add", &name, "type", "veth", "peer", "name", &peer])
            .status()
            .expect("ip link add");
        assert!(
            st.success(),
            "ip link add {name} type veth peer name {peer}"
        );
        HostLink(name, peer)
    }

    fn exists(&self) -> bool {
        std::path::Path::new("/sys/class/net")
            .join(&self.0)
            .exists()
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        if self.exists() {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
}

#[test]
fn net_devices_moved_and_renamed() {
    let env = TestEnv::new();
    let link = HostLink::new("a");
    let kept = HostLink::new("b");
    // A permanent global address goes along (runc main re-adds it after the move).
    let st = Command::new("ip")
        .args(["addr", "add", "10.213.7.2/24", "dev", &link.0])
        .status()
        .expect("ip addr add");
    assert!(st.success());
    let mut b = env.bundle();
    b.add_namespace("network", None);
    b.set(
        "/linux/netDevices",
        json!({ link.0.clone(): {"name": "ctr0"}, kept.0.clone(): {} }),
    );
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    assert!(!link.exists() && !kept.exists(), "links still on the host");
    let out = env.run(&["exec", c.id(), "ip", "-o", "link"]);
    out.ok();
    // "8: ctr0@if7: <...>": the names, without the peer's index.
    let names: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    assert!(names.contains(&"ctr0"), "{}", out.stdout);
    assert!(names.contains(&kept.0.as_str()), "{}", out.stdout);
    assert!(!names.contains(&link.0.as_str()), "{}", out.stdout);
    // Set up inside (as runc main), with its address.
    let ctr0 = out.stdout.lines().find(|l| l.contains(": ctr0@")).unwrap();
    assert!(ctr0.contains(",UP,") || ctr0.contains(",UP>"), "{ctr0}");
    let out = env.run(&[
        "exec",
        c.id(),
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "dev",
        "ctr0",
    ]);
    out.ok();
    assert!(
        out.stdout.contains("inet 10.213.7.2/24 brd 10.213.7.255 "),
        "{}",
        out.stdout
    );
    // The peers stayed on the host.
    let peer = |n: &str| std::path::Path::new("/sys/class/net").join(n).exists();
    assert!(peer(&link.1) && peer(&kept.1));
    // On delete the namespace goes, and a virtual device with it (runtime-spec, as runc): a
    // veth's peer on the host goes too.
    c.delete(true).ok();
    wait_for(
        "the moved veth links to be gone",
        Duration::from_secs(10),
        || (!peer(&link.1) && !peer(&kept.1)).then_some(()),
    );
    let st = Command::new("ip")
        .args(["-o", "link", "show", "ctr0"])
        .output()
        .expect("ip link show");
    assert!(!st.status.success(), "ctr0 appeared on the host");
    env.finish();
}

#[test]
fn net_devices_refused_by_name() {
    let env = TestEnv::new();
    let link = HostLink::new("c");
    // Without a network namespace of its own.
    let mut b = env.bundle();
    b.remove_namespace("network");
    b.set("/linux/netDevices", json!({ link.0.clone(): {} }));
    refused(
        &env,
        &b,
        "linux.netDevices: unable to move network devices without a network namespace",
    );
    assert!(link.exists());
    // A device the host does not have.
    let mut b = env.bundle();
    b.add_namespace("network", None);
    b.set("/linux/netDevices", json!({"kknosuchdev0": {}}));
    refused(
        &env,
        &b,
        "linux.netDevices[\"kknosuchdev0\"]: no device \"kknosuchdev0\" on the host",
    );
    // A bad name.
    let mut b = env.bundle();
    b.add_namespace("network", None);
    b.set(
        "/linux/netDevices",
        json!({ link.0.clone(): {"name": "a/b"}}),
    );
    refused(&env, &b, ".name: invalid network device name \"a/b\"");
    assert!(link.exists());
    env.finish();
}

#[test]
fn intel_rdt_refused_without_resctrl() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set(
        "/linux/intelRdt",
        json!({"closID": "x", "l3CacheSchema": "L3:0=f"}),
    );
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(2) == Some("resctrl"));
    if mounted {
        eprintln!("SKIP intel_rdt_refused_without_resctrl: resctrl is mounted on this host");
    } else {
        refused(
            &env,
            &b,
            "linux.intelRdt: resctrl is not mounted (Intel RDT needs",
        );
        // With a closID and no schemata too (the group check comes after the mount check).
        let mut b = env.bundle();
        b.set("/linux/intelRdt", json!({"closID": "x"}));
        refused(&env, &b, "linux.intelRdt: resctrl is not mounted");
    }
    env.finish();
}

#[test]
fn mount_label_refused_without_selinux() {
    let env = TestEnv::new();
    if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        eprintln!("SKIP mount_label_refused_without_selinux: SELinux is enabled on this host");
        env.finish();
        return;
    }
    let mut b = env.bundle();
    b.set(
        "/linux/mountLabel",
        json!("system_u:object_r:container_file_t:s0"),
    );
    refused(&env, &b, "linux.mountLabel: SELinux is disabled");
    let mut b = env.bundle();
    b.set(
        "/process/selinuxLabel",
        json!("system_u:system_r:container_t:s0"),
    );
    refused(
        &env,
        &b,
        "selinux is disabled or not supported (process.selinuxLabel",
    );
    env.finish();
}

#[test]
fn other_platforms_and_windows_fields_refused() {
    let env = TestEnv::new();
    for (ptr, val, needle) in [
        (
            "/windows",
            json!({"layerFolders": []}),
            "windows: a section for another platform",
        ),
        (
            "/solaris",
            json!({}),
            "solaris: a section for another platform",
        ),
        (
            "/vm",
            json!({"kernel": {"path": "/k"}}),
            "vm: a section for another platform",
        ),
        (
            "/freebsd",
            json!({}),
            "freebsd: a section for another platform",
        ),
        (
            "/process/user/username",
            json!("bob"),
            "process.user.username: Windows only",
        ),
        (
            "/process/commandLine",
            json!("sh"),
            "process.commandLine: Windows only",
        ),
    ] {
        let mut b = env.bundle();
        b.set(ptr, val);
        refused(&env, &b, needle);
    }
    env.finish();
}

#[test]
fn tmpcopyup_copies_the_covered_directory() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let data = b.rootfs().join("opt/data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(data.join("sub/b.txt"), "beta\n").unwrap();
    std::os::unix::fs::symlink("a.txt", data.join("link")).unwrap();
    std::os::unix::fs::chown(data.join("sub/b.txt"), Some(1234), Some(5678)).unwrap();
    std::fs::set_permissions(
        data.join("sub"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    b.add_mount(
        json!({"destination": "/opt/data", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "tmpcopyup"]}),
    );
    b.set_sh(
        "grep -c ' /opt/data tmpfs ' /proc/mounts; cat /opt/data/a.txt /opt/data/sub/b.txt; \
         readlink /opt/data/link; stat -c '%u:%g' /opt/data/sub/b.txt; stat -c '%a' /opt/data/sub; \
         echo new > /opt/data/new.txt",
    );
    assert_eq!(run_ok(&env, &b), "1\nalpha\nbeta\na.txt\n1234:5678\n750\n");
    // The copy was written to the tmpfs, not the rootfs.
    assert!(!data.join("new.txt").exists());
    // Without tmpcopyup the tmpfs starts empty.
    let mut b = env.bundle();
    std::fs::create_dir_all(b.rootfs().join("opt/data")).unwrap();
    std::fs::write(b.rootfs().join("opt/data/a.txt"), "alpha\n").unwrap();
    b.add_mount(
        json!({"destination": "/opt/data", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev"]}),
    );
    b.set_sh("ls -A /opt/data | wc -l");
    assert_eq!(run_ok(&env, &b).trim(), "0");
    env.finish();
}
