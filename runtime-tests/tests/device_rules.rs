//! `linux.devices` makes device nodes; only `linux.resources.devices` (plus runc's default
//! allow list) decides which of them the container may open. A node listed in `linux.devices`
//! under a deny-all device cgroup is there, and opening it fails with EPERM, as with runc.

use kakuri_runtime_tests::*;
use serde_json::{json, Value};

/// Opens /dev/kmsg for writing without writing anything (`true >`), so the host's kernel log is
/// not touched either way; prints whether it is a char device and the open's outcome.
const OPEN_KMSG: &str =
    "test -c /dev/kmsg && echo node=c; true > /dev/kmsg; echo kmsg-rc=$?; true > /dev/null; echo null-rc=$?";

/// A container listing /dev/kmsg (c 1:11) in `linux.devices`, with these device cgroup rules
/// (after a deny-all rule); run in the foreground, its output returned.
fn run_with(env: &TestEnv, devices: Value, rules: &[Value]) -> CmdOutput {
    let mut b = env.bundle();
    b.set_sh(OPEN_KMSG);
    b.set("/linux/devices", devices);
    let mut all = vec![json!({"allow": false, "access": "rwm"})];
    all.extend_from_slice(rules);
    b.set("/linux/resources/devices", json!(all));
    let (_, out) = env.run_container(&b, &[]);
    out
}

fn kmsg() -> Value {
    json!({"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o600, "uid": 0, "gid": 0})
}

/// The attack: /dev/kmsg in linux.devices under deny-all. The node is made but cannot be
/// opened. Positive control: the same container with a rule allowing writes to c 1:11 opens
/// it, so the EPERM above is the device cgroup's doing.
///
/// Checked without the defence (linux.devices entries turned into allow rules again, as
/// before): the first container opened /dev/kmsg (kmsg-rc=0).
#[test]
fn listed_device_is_not_allowed_by_the_device_cgroup() {
    let env = TestEnv::new();
    let out = run_with(&env, json!([kmsg()]), &[]);
    out.ok();
    assert!(out.stdout.contains("node=c\n"), "{out}");
    assert!(out.stdout.contains("kmsg-rc=1\n"), "{out}");
    assert!(out.stdout.contains("null-rc=0\n"), "{out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");

    let allow = json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"});
    let out = run_with(&env, json!([kmsg()]), &[allow]);
    out.ok();
    assert!(out.stdout.contains("kmsg-rc=0\n"), "{out}");
    env.finish();
}

/// runc leaves out a default rule whose device the config lists itself (specconv's
/// createDevices): /dev/null in linux.devices under deny-all is not openable either; with a
/// rule allowing it, it is.
#[test]
fn listed_default_device_loses_its_default_rule() {
    let env = TestEnv::new();
    let dev_null = json!({"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666, "uid": 0, "gid": 0});
    // The init then fails to reopen its stdin (/dev/null) as the container's own /dev/null,
    // and so does the container: runc and kakuri alike (a shell that got that far could not
    // open /dev/null either).
    let out = run_with(&env, json!([kmsg(), dev_null]), &[]);
    assert!(
        out.stdout.contains("null-rc=1\n")
            || out
                .stderr
                .contains("open /dev/null: operation not permitted"),
        "{out}"
    );
    let allow = json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"});
    let out = run_with(&env, json!([kmsg(), dev_null]), &[allow]);
    out.ok();
    assert!(out.stdout.contains("null-rc=0\n"), "{out}");
    env.finish();
}

/// Access strings as runc takes them: letters other than r, w and m are ignored and repeats do
/// not matter ("wwa" allows writes); one with none of r, w, m is refused, naming the rule,
/// before anything is made.
#[test]
fn device_access_strings_like_runc() {
    let env = TestEnv::new();
    let allow = json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "wwa"});
    let out = run_with(&env, json!([kmsg()]), &[allow]);
    out.ok();
    assert!(out.stdout.contains("kmsg-rc=0\n"), "{out}");
    let bad = json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "x"});
    let out = run_with(&env, json!([kmsg()]), &[bad]);
    if runtime_bin().ends_with("runc") {
        assert!(!out.success(), "{out}");
    } else {
        out.fails_with("linux.resources.devices[1]");
    }
    env.finish();
}
