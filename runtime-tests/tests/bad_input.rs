//! Input the runtime must refuse with an error naming the field, flag or file, leaving nothing
//! behind: NUL bytes in strings that become C strings, JSON inputs without a size bound, and
//! values the spec or runc refuse (relative paths, a zero hook timeout, unopened preserved fds).

use std::os::fd::AsRawFd;

use kakuri_runtime_tests::*;
use serde_json::{json, Value};

/// `create` of `b` fails with exit 1 (not killed), says `needle`, and leaves nothing.
#[track_caller]
fn create_fails(env: &TestEnv, b: &Bundle, needle: &str) -> CmdOutput {
    b.write();
    create_as_is_fails(env, b, needle)
}

/// [`create_fails`] with the bundle's config.json as it is on disk.
#[track_caller]
fn create_as_is_fails(env: &TestEnv, b: &Bundle, needle: &str) -> CmdOutput {
    let id = env.new_id();
    env.track(&id);
    let dir = b.dir().to_string_lossy().into_owned();
    let out = env.run(&["create", "--bundle", &dir, &id]);
    assert_eq!(out.code, Some(1), "create must fail with exit 1: {out}");
    assert!(
        out.stderr_has(needle),
        "stderr must contain {needle:?}: {out}"
    );
    env.run(&["state", &id]).code_is(1);
    env.assert_no_leaks();
    out
}

/// A NUL byte anywhere a string reaches the kernel (argv, envp, paths, hook programs) is
/// refused with the field's JSON path; it used to become an empty string. runc refuses these
/// too, with Go's "invalid argument" from the syscall.
#[test]
fn nul_bytes_are_refused_naming_the_field() {
    let env = TestEnv::new();
    let cases: [(&str, Value, &str); 6] = [
        (
            "/process/args",
            json!(["sh", "-c\u{0}x"]),
            "process.args[1]: contains a NUL byte",
        ),
        (
            "/process/cwd",
            json!("/tmp\u{0}/x"),
            "process.cwd: contains a NUL byte",
        ),
        (
            "/hooks",
            json!({"prestart": [{"path": "/bin/true\u{0}", "args": ["true"]}]}),
            "hooks.prestart[0].path: contains a NUL byte",
        ),
        (
            "/hooks",
            json!({"createRuntime": [{"path": "/bin/true", "env": ["A=\u{0}"]}]}),
            "hooks.createRuntime[0].env[0]: contains a NUL byte",
        ),
        (
            "/linux/maskedPaths",
            json!(["/proc/kcore\u{0}"]),
            "linux.maskedPaths[0]: contains a NUL byte",
        ),
        (
            "/hostname",
            json!("a\u{0}b"),
            "hostname: contains a NUL byte",
        ),
    ];
    for (pointer, value, needle) in cases {
        let mut b = env.bundle();
        b.set(pointer, value);
        create_fails(&env, &b, needle);
    }
    // In an environment entry, among others.
    let mut b = env.bundle();
    b.add_env("BAD=a\u{0}b");
    let out = create_fails(&env, &b, "process.env[");
    assert!(out.stderr_has("contains a NUL byte"), "{out}");
    // A mount destination.
    let mut b = env.bundle();
    b.add_mount(json!({"destination": "/mnt\u{0}x", "type": "tmpfs", "source": "tmpfs"}));
    create_fails(&env, &b, "].destination: contains a NUL byte");
    env.finish();
}

/// config.json that is /dev/zero (a symlink) is refused after 32 MiB, naming the file, instead
/// of being read until the process is killed (kakuri before: about 2 GB, then SIGKILL; runc
/// 1.1.5 does the same, so this test is not run against it).
#[test]
fn endless_config_is_refused_with_its_name() {
    let env = TestEnv::new();
    if runtime_bin().ends_with("runc") {
        println!("skipped: runc 1.1.5 reads /dev/zero until it is killed (about 2 GB)");
        env.finish();
        return;
    }
    let b = env.bundle();
    b.write();
    let config = b.dir().join("config.json");
    std::fs::remove_file(&config).expect("remove config.json");
    std::os::unix::fs::symlink("/dev/zero", &config).expect("symlink config.json");
    let out = create_as_is_fails(&env, &b, "config.json: larger than 32 MiB");
    assert!(out.stderr_has(&config.display().to_string()), "{out}");
    env.finish();
}

/// A JSON document that is not an object is reported as such, not as a missing ociVersion.
#[test]
fn config_that_is_not_an_object() {
    let env = TestEnv::new();
    let b = env.bundle();
    b.write();
    std::fs::write(b.dir().join("config.json"), "[{\"ociVersion\": \"1.0.2\"}]").unwrap();
    create_as_is_fails(&env, &b, "config.json: not a JSON object (it is an array)");
    env.finish();
}

/// runtime-spec: a hook's timeout MUST be greater than zero; maskedPaths and readonlyPaths MUST
/// be absolute. Refused before anything is made, naming the field.
#[test]
fn spec_musts_are_enforced() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.add_hook("prestart", "/bin/true", &["true"], &[], Some(0));
    create_fails(
        &env,
        &b,
        "hooks.prestart[0].timeout: 0 is not greater than zero",
    );
    let mut b = env.bundle();
    b.set("/linux/maskedPaths", json!(["/proc/kcore", "proc/keys"]));
    create_fails(
        &env,
        &b,
        "linux.maskedPaths[1]: \"proc/keys\" is not an absolute path",
    );
    let mut b = env.bundle();
    b.set("/linux/readonlyPaths", json!(["proc/sys"]));
    create_fails(
        &env,
        &b,
        "linux.readonlyPaths[0]: \"proc/sys\" is not an absolute path",
    );
    env.finish();
}

/// `--preserve-fds N` with descriptors that are not open fails as runc fails, with runc's text,
/// for create and exec; nothing is left behind. (runc stats its own open descriptors too, so
/// the first missing index it names is a later one than kakuri's.)
#[test]
fn preserve_fds_beyond_the_open_ones() {
    let env = TestEnv::new();
    let b = env.bundle();
    let id = env.new_id();
    let out = env.create_raw(&b, &id, &["--preserve-fds", "100000"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr_has("unable to stat preserved-fd ")
            && out.stderr_has(" (of 100000): stat /proc/self/fd/"),
        "{out}"
    );
    env.assert_no_leaks();

    let mut b = env.bundle();
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    c.start();
    let (_r, w) = pipe();
    let mut cmd = env
        .rt()
        .cmd(&["exec", "--preserve-fds", "2", c.id(), "true"]);
    pass_fd(&mut cmd, w.as_raw_fd(), 3);
    let out = env.rt().output(cmd);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr_has("unable to stat preserved-fd ")
            && out.stderr_has(" (of 2): stat /proc/self/fd/"),
        "{out}"
    );
    drop(c);
    env.finish();
}

/// exec: a relative --cwd, or a process file with a relative cwd, a NUL byte, a non-object or
/// no end, is refused naming the flag or the file (runc: "Cwd must be an absolute path").
#[test]
fn exec_inputs_are_checked() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    c.start();
    let out = env.run(&["exec", "--cwd", "tmp", c.id(), "true"]);
    assert!(!out.success(), "{out}");
    assert!(out.stderr_has("Cwd must be an absolute path"), "{out}");
    if !runtime_bin().ends_with("runc") {
        assert!(out.stderr_has("--cwd \"tmp\""), "{out}");
    }

    let process = |v: Value| {
        let p = env.dir().join(format!("process-{}.json", env.new_id()));
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        p
    };
    let good = json!({"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}});
    let mut rel = good.clone();
    rel["cwd"] = json!("tmp");
    let mut nul = good.clone();
    nul["args"] = json!(["/bin/true", "a\u{0}"]);
    let zero = env.dir().join("process-zero.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let cases = [
        (process(rel), "Cwd must be an absolute path"),
        (process(nul), "args[1]: contains a NUL byte"),
        (process(json!([good])), "not a JSON object (it is an array)"),
        (zero.clone(), "larger than 32 MiB"),
    ];
    for (file, needle) in cases {
        if file == zero && runtime_bin().ends_with("runc") {
            println!("not run against runc: it reads /dev/zero until it is killed");
            continue;
        }
        let f = file.to_string_lossy().into_owned();
        let out = env.run(&["exec", "--process", &f, c.id()]);
        assert!(!out.success(), "{out}");
        assert!(out.stderr_has(needle), "{needle:?}: {out}");
        if !runtime_bin().ends_with("runc") {
            assert!(out.stderr_has(&f), "the error names the file: {out}");
        }
    }
    let f = process(good).to_string_lossy().into_owned();
    env.run(&["exec", "--process", &f, c.id()]).ok();
    drop(c);
    env.finish();
}
