//! OCI hooks: the six kinds at their points with the state on stdin, args and env, timeouts,
//! failing hooks.

use kakuri_runtime_tests::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Records its name, stdin (the state), args and env under the dir given as $2.
const HOOK: &str = "#!/bin/sh\n\
name=$1; out=$2\n\
cat > \"$out/$name.json\"\n\
echo \"$@\" > \"$out/$name.args\"\n\
env > \"$out/$name.env\"\n\
echo \"$name\" >> \"$out/order\"\n";

struct HookSetup {
    /// Host dir the hooks write to.
    out: PathBuf,
    /// Host path of the hook script.
    script: PathBuf,
}

/// Installs the recording hook for all six kinds. Host-side hooks run the script at its host
/// path; startContainer runs in the container (after pivot_root), so the script is also put in
/// the rootfs and writes to /hookout, a bind mount of the same host dir.
fn setup_all_hooks(env: &TestEnv, b: &mut Bundle) -> HookSetup {
    let out = env.dir().join("hookout");
    fs::create_dir_all(&out).unwrap();
    let script = env.dir().join("hook.sh");
    b.write_script(&script, HOOK);
    b.write_script(&b.rootfs().join("kakuri-hook.sh"), HOOK);
    b.add_bind(&out, "/hookout", false, false);
    let host_out = out.to_str().unwrap().to_string();
    let s = script.to_str().unwrap().to_string();
    for kind in [
        "prestart",
        "createRuntime",
        "createContainer",
        "poststart",
        "poststop",
    ] {
        b.add_hook(
            kind,
            &s,
            &["kakuri-hook", kind, &host_out, "extra-arg"],
            &["HOOK_VAR=hook-value"],
            Some(10),
        );
    }
    b.add_hook(
        "startContainer",
        "/kakuri-hook.sh",
        &["kakuri-hook", "startContainer", "/hookout", "extra-arg"],
        &["HOOK_VAR=hook-value"],
        Some(10),
    );
    HookSetup { out, script }
}

fn hook_state(dir: &Path, name: &str) -> Value {
    read_json(&dir.join(format!("{name}.json")))
}

fn order(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("order"))
        .unwrap_or_default()
        .lines()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn all_hooks_run_in_order_with_state() {
    // runc 1.1.5 runs poststart hooks during `create` (before startContainer): it fails this
    // test at the "after create" check.
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("echo user-process; sleep 60");
    let h = setup_all_hooks(&env, &mut b);
    assert!(h.script.is_file());
    let c = env.create(&b);
    let pid = c.pid();

    // After create: prestart, createRuntime, createContainer, nothing else.
    let after_create = order(&h.out);
    assert_eq!(after_create.len(), 3, "{after_create:?}");
    assert_eq!(after_create[2], "createContainer", "{after_create:?}");
    assert!(
        after_create[..2].contains(&"prestart".to_string()),
        "{after_create:?}"
    );
    assert!(
        after_create[..2].contains(&"createRuntime".to_string()),
        "{after_create:?}"
    );
    for name in ["prestart", "createRuntime", "createContainer"] {
        let st = hook_state(&h.out, name);
        assert_eq!(st["id"], c.id(), "{name}: {st}");
        // Hooks run in the container's namespaces may get the pid as the container sees it
        // (runc passes 1 to createContainer); host-side hooks get the host pid.
        let in_container = name == "createContainer";
        assert!(
            st["pid"] == pid || (in_container && st["pid"] == 1),
            "{name} sees the init pid {pid}: {st}"
        );
        assert_eq!(st["bundle"], b.dir().to_str().unwrap(), "{name}: {st}");
        // runtime-spec: the status is "created" once the environment exists (lifecycle step
        // 2), before these hooks (steps 3-5); runtime-tools' hooks_stdin checks it.
        assert_eq!(st["status"], "created", "{name}: {st}");
    }

    c.start();
    c.wait_stdout("user-process");
    wait_file(&h.out.join("order"), "poststart");
    assert_eq!(&order(&h.out)[3..], ["startContainer", "poststart"]);
    let st = hook_state(&h.out, "startContainer");
    assert_eq!(st["status"], "created", "startContainer: {st}");
    assert!(st["pid"] == pid || st["pid"] == 1, "{st}");
    let st = hook_state(&h.out, "poststart");
    assert_eq!(st["status"], "running", "poststart: {st}");
    assert_eq!(st["pid"], pid, "{st}");

    c.kill("KILL").ok();
    c.wait_status("stopped");
    c.delete(false).ok();
    let all = order(&h.out);
    assert_eq!(all.last().map(String::as_str), Some("poststop"), "{all:?}");
    assert_eq!(all.len(), 6, "{all:?}");
    let st = hook_state(&h.out, "poststop");
    assert_eq!(st["status"], "stopped", "poststop: {st}");
    assert_eq!(st["id"], c.id(), "{st}");

    // Args and env as configured (args[0] is the hook's argv[0]).
    for name in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        let args = fs::read_to_string(h.out.join(format!("{name}.args"))).unwrap();
        assert!(
            args.starts_with(name) && args.trim_end().ends_with("extra-arg"),
            "{name}: {args}"
        );
        let henv = fs::read_to_string(h.out.join(format!("{name}.env"))).unwrap();
        assert!(
            henv.lines().any(|l| l == "HOOK_VAR=hook-value"),
            "{name} env: {henv}"
        );
    }
    drop(c);
    env.finish();
}

#[test]
fn hook_timeout_kills_hook_and_fails_create() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "60"]);
    let pidfile = env.dir().join("hook.pid");
    let script = env.dir().join("slow-hook.sh");
    b.write_script(
        &script,
        &format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 30\n",
            pidfile.display()
        ),
    );
    b.add_hook(
        "createRuntime",
        script.to_str().unwrap(),
        &["slow-hook"],
        &[],
        Some(1),
    );
    let id = env.new_id();
    let start = Instant::now();
    let out = env.create_raw(&b, &id, &[]);
    let took = start.elapsed();
    assert_eq!(
        out.code,
        Some(1),
        "create must fail when a hook times out: {out}"
    );
    assert!(
        took < Duration::from_secs(15),
        "hook timeout not enforced: {took:?}"
    );
    let hook_pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for("the timed-out hook to be killed", WAIT_TIMEOUT, || {
        (!process_alive(hook_pid)).then_some(())
    });
    env.run(&["state", &id]).code_is(1);
    env.assert_no_leaks();
    env.finish();
}

#[test]
fn failing_create_runtime_hook_fails_create_and_cleans_up() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "60"]);
    b.set_cgroups_path(&format!("kakuri-{}", env.id()));
    let script = env.dir().join("fail-hook.sh");
    b.write_script(&script, "#!/bin/sh\necho kakuri-hook-failed >&2\nexit 7\n");
    b.add_hook(
        "createRuntime",
        script.to_str().unwrap(),
        &["fail-hook"],
        &[],
        None,
    );
    let id = env.new_id();
    let out = env.create_raw(&b, &id, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    env.run(&["state", &id]).code_is(1);
    env.assert_no_leaks();
    env.finish();
}

#[test]
fn failing_poststop_hook_only_warns() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "60"]);
    let script = env.dir().join("fail-hook.sh");
    b.write_script(&script, "#!/bin/sh\nexit 3\n");
    b.add_hook(
        "poststop",
        script.to_str().unwrap(),
        &["fail-hook"],
        &[],
        None,
    );
    let c = env.create(&b);
    c.start();
    c.kill("KILL").ok();
    c.wait_status("stopped");
    let out = c.delete(false);
    out.ok();
    env.run(&["state", c.id()]).code_is(1);
    drop(c);
    env.finish();
}

/// A hook without `env` inherits the environment of the process that runs it: the runtime's for
/// prestart/createRuntime/poststart/poststop (runc and crun do; crun's suite checks it), the
/// container process's for createContainer/startContainer; a hook with `env` gets exactly that
/// and nothing else.
#[test]
fn hook_without_env_inherits_the_environment_of_its_runner() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let out = env.dir().join("hook-env");
    let probe = |tag: &str| {
        format!(
            "echo \"{tag}=${{KAKURI_HOOK_PROBE:-unset}}\" >> {}",
            out.display()
        )
    };
    b.set(
        "/hooks/prestart",
        serde_json::json!([
            {"path": "/bin/sh", "args": ["sh", "-c", probe("inherited")]},
            {"path": "/bin/sh", "args": ["sh", "-c", probe("own")], "env": ["OTHER=1"]}
        ]),
    );
    // Hooks the container's init runs get the container process's env instead, as in runc
    // (youki's start_container_hook_env_inherit checks startContainer).
    b.add_env("KAKURI_HOOK_PROBE=from-process-env");
    b.set(
        "/hooks/createContainer",
        serde_json::json!([{"path": "/bin/sh", "args": ["sh", "-c", probe("createContainer")]}]),
    );
    b.set(
        "/hooks/startContainer",
        serde_json::json!([{"path": "/bin/sh", "args": ["sh", "-c",
            "echo \"startContainer=${KAKURI_HOOK_PROBE:-unset}\" > /start-probe"]}]),
    );
    b.write();
    let id = env.new_id();
    let mut cmd = env
        .rt()
        .cmd(&["run", "--bundle", b.dir().to_str().unwrap(), &id]);
    cmd.env("KAKURI_HOOK_PROBE", "from-the-caller");
    env.rt().spawn_in(cmd, b.dir()).wait(CMD_TIMEOUT).ok();
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        "inherited=from-the-caller\nown=unset\ncreateContainer=from-process-env\n"
    );
    assert_eq!(
        fs::read_to_string(b.rootfs().join("start-probe")).unwrap(),
        "startContainer=from-process-env\n"
    );
    env.finish();
}
