//! Regression tests for bugs found by running the OCI runtime-tools validation suite against
//! kakuri (docs/conformance.md). Each test reproduces, with the suite's own configuration
//! shape, the case one validation program caught.

use kakuri_runtime_tests::*;
use serde_json::json;

/// runtime-tools' default config carries a seccomp profile older than close_range(2), with
/// `noNewPrivileges` false, so the filter is loaded before the init drops its credentials.
/// The init must still mark inherited descriptors close-on-exec (it did so with close_range
/// after loading the filter, and every container failed with "close_range: EPERM").
#[test]
fn seccomp_profile_denying_close_range_still_starts() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set("/process/noNewPrivileges", json!(false));
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["close_range"], "action": "SCMP_ACT_ERRNO"}]
        }),
    );
    // Only 0, 1, 2 and ls's own directory descriptor may be open in the container process.
    b.set_sh("ls /proc/self/fd | sort -n | tr '\\n' ' '");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout, "0 1 2 3 ", "{out}");
    env.finish();
}

/// linux_rootfs_propagation's "unbindable" case: the rootfs could not be bind-mounted onto
/// itself once `/` was made unbindable ("bind rootfs: invalid argument"). The container must
/// start and its `/` must end up unbindable.
#[test]
fn rootfs_propagation_unbindable() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set("/linux/rootfsPropagation", json!("unbindable"));
    b.set_sh("awk '$5 == \"/\" { print $7 }' /proc/self/mountinfo");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout, "unbindable\n", "{out}");
    env.finish();
}

/// linux_cgroups_devices: on cgroup v1, devices.list keeps the order in which exceptions were
/// written, and the spec says the entries are applied in the listed order. kakuri wrote them
/// sorted (block devices first), so the configured rules did not come first.
#[test]
fn v1_device_rules_are_written_in_listed_order() {
    let env = TestEnv::new();
    let v1_devices = std::path::Path::new("/sys/fs/cgroup/devices");
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        || !v1_devices.join("devices.list").exists()
    {
        println!("skipped: no cgroup v1 devices hierarchy at /sys/fs/cgroup/devices");
        env.finish();
        return;
    }
    let mut b = env.bundle();
    let cg = format!("kakuri-conformance-{}", env.new_id());
    b.set("/linux/cgroupsPath", json!(format!("/{cg}")));
    b.set(
        "/linux/resources/devices",
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            {"allow": true, "type": "b", "major": 8, "minor": 20, "access": "rw"},
            {"allow": true, "type": "b", "major": 10, "minor": 200, "access": "r"}
        ]),
    );
    b.set_args(&["sleep", "60"]);
    let c = env.create(&b);
    let list_path = v1_devices.join(&cg).join("devices.list");
    let list = std::fs::read_to_string(&list_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", list_path.display()));
    let first: Vec<&str> = list.lines().take(3).collect();
    assert_eq!(
        first,
        ["c 10:229 rwm", "b 8:20 rw", "b 10:200 r"],
        "{}:\n{list}",
        list_path.display()
    );
    // The runtime's default rules follow the configured ones.
    assert!(list.lines().any(|l| l == "c 1:3 rwm"), "{list}");
    c.delete(true).ok();
    drop(c);
    assert!(!v1_devices.join(&cg).exists(), "{cg} left behind");
    env.finish();
}

/// poststop_fail: when a poststop hook fails the runtime logs a warning and the remaining hooks
/// still run (kakuri stopped at the first failing one). poststart_fail follows the pre-1.3 text;
/// runtime-spec 1.3 makes a failing poststart hook an error of `start` that stops the container
/// (procstart.rs checks that).
#[test]
fn failing_poststop_hook_does_not_stop_the_others() {
    let env = TestEnv::new();
    let out = env.dir().join("hooks.out");
    let hook = |line: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {line} >> {}", out.display())]});
    let failing = json!({"path": "/bin/false", "args": ["false"]});
    let mut b = env.bundle();
    b.set(
        "/hooks",
        json!({ "poststop": [failing, hook("poststop-2")] }),
    );
    b.set_args(&["sleep", "30"]);
    let c = env.create(&b);
    c.start();
    c.delete(true).ok();
    drop(c);
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(text, "poststop-2\n");
    env.finish();
}
