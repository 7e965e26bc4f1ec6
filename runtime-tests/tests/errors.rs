//! Failing commands: each exits 1 with a precise message and leaves no mount, cgroup,
//! process or state behind.

use kakuri_runtime_tests::*;
use serde_json::json;
use std::fs;

/// Runs `create` on `b` with a fresh id; asserts exit 1, no leftovers, then the message.
fn create_fails(env: &TestEnv, b: &Bundle, needle: &str) -> CmdOutput {
    let id = env.new_id();
    let out = env.create_raw(b, &id, &[]);
    assert_eq!(out.code, Some(1), "create must fail with exit 1: {out}");
    env.run(&["state", &id]).code_is(1);
    env.assert_no_leaks();
    assert!(
        out.stderr_has(needle),
        "stderr must contain {needle:?}: {out}"
    );
    out
}

fn bundle_with_cgroup(env: &TestEnv) -> Bundle {
    let mut b = env.bundle();
    b.set_args(&["sleep", "60"]);
    b.set_cgroups_path(&format!("kakuri-{}", env.id()));
    b
}

#[test]
fn malformed_config_json() {
    // runc 1.1.5 says only "unexpected EOF" without naming config.json: it fails this test
    // (after the exit code and leak checks have passed).
    let env = TestEnv::new();
    let b = bundle_with_cgroup(&env);
    b.write();
    fs::write(b.dir().join("config.json"), "{\"ociVersion\": ").unwrap();
    let id = env.new_id();
    let out = env.run(&["create", "--bundle", b.dir().to_str().unwrap(), &id]);
    assert_eq!(out.code, Some(1), "{out}");
    env.assert_no_leaks();
    assert!(
        out.stderr_has("config.json"),
        "the error names the file: {out}"
    );
    env.finish();
}

#[test]
fn wrong_typed_field_is_named() {
    let env = TestEnv::new();
    let mut b = bundle_with_cgroup(&env);
    b.set("/process/user/uid", json!("abc"));
    create_fails(&env, &b, "process.user.uid");
    env.finish();
}

#[test]
fn missing_rootfs() {
    let env = TestEnv::new();
    let b = bundle_with_cgroup(&env);
    fs::remove_dir_all(b.rootfs()).unwrap();
    create_fails(&env, &b, "rootfs");
    env.finish();
}

#[test]
fn unsupported_oci_version() {
    // runc 1.1.5 does not check ociVersion and creates the container: it fails this test.
    let env = TestEnv::new();
    let mut b = bundle_with_cgroup(&env);
    b.set("/ociVersion", json!("2.0.0"));
    create_fails(&env, &b, "2.0.0");
    env.finish();
}

#[test]
fn invalid_container_ids() {
    let env = TestEnv::new();
    let b = bundle_with_cgroup(&env);
    b.write();
    let escape = format!("../kakuri-{}-escape", env.id());
    for id in ["a/b".to_string(), "..".to_string(), escape.clone()] {
        let out = env.run(&["create", "--bundle", b.dir().to_str().unwrap(), &id]);
        assert_eq!(out.code, Some(1), "id {id:?} must be refused: {out}");
        assert!(out.stderr_has("id"), "{out}");
    }
    assert!(!env
        .dir()
        .join(format!("kakuri-{}-escape", env.id()))
        .exists());
    assert!(!env.rt().root().join("a").exists());
    env.assert_no_leaks();
    env.finish();
}

#[test]
fn bad_signal_name() {
    let env = TestEnv::new();
    let b = bundle_with_cgroup(&env);
    let c = env.create(&b);
    for sig in ["SIGFOO", "NOTASIGNAL"] {
        let out = c.kill(sig);
        assert_eq!(out.code, Some(1), "{out}");
        assert!(out.stderr_has(sig), "message names the signal: {out}");
    }
    assert_eq!(c.status(), "created");
    drop(c);
    env.finish();
}

#[test]
fn missing_executable_bare_name() {
    let env = TestEnv::new();
    let mut b = bundle_with_cgroup(&env);
    b.set_args(&["kakuri-no-such-command"]);
    create_fails(&env, &b, "executable file not found in $PATH");
    env.finish();
}

#[test]
fn missing_executable_path() {
    let env = TestEnv::new();
    let mut b = bundle_with_cgroup(&env);
    b.set_args(&["/bin/kakuri-no-such-command"]);
    create_fails(&env, &b, "no such file or directory");
    env.finish();
}

#[test]
fn non_executable_file() {
    let env = TestEnv::new();
    let mut b = bundle_with_cgroup(&env);
    b.set_args(&["/etc/passwd"]);
    create_fails(&env, &b, "permission denied");
    env.finish();
}
