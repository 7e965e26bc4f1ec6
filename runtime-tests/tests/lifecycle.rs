//! Container lifecycle: create/start/state/kill/delete/run and their error paths.

use kakuri_runtime_tests::*;
use std::fs;

#[test]
fn create_writes_pid_file_and_blocks_init() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("echo kakuri-user-process-ran; sleep 60");
    let id = env.new_id();
    let pid_file = env.dir().join("init.pid");
    let out = env.create_raw(&b, &id, &["--pid-file", pid_file.to_str().unwrap()]);
    out.ok();
    let c = env.container(&id, &out);
    let pid: i32 = fs::read_to_string(&pid_file)
        .expect("pid file written when create returns")
        .trim()
        .parse()
        .expect("pid file holds a number");
    let state = c.state();
    assert_eq!(state["status"], "created", "{state}");
    assert_eq!(state["pid"], pid, "state pid equals pid file: {state}");
    assert!(
        process_alive(pid),
        "init process {pid} is alive after create"
    );
    // The user process must not run before start: the init has not exec'd it (its argv[0] is
    // still the runtime's, not `sh`), so it printed nothing.
    let argv0 = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(c.split(|b| *b == 0).next().unwrap_or(&[])).into_owned())
        .unwrap_or_default();
    assert_ne!(argv0, "sh", "the init exec'd the user process before start");
    assert!(
        !c.stdout().contains("kakuri-user-process-ran"),
        "user process ran before start: {}",
        c.stdout()
    );
    c.start();
    c.wait_stdout("kakuri-user-process-ran");
    assert_eq!(c.status(), "running");
    drop(c);
    env.finish();
}

#[test]
fn state_json_has_all_keys_and_annotations() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "60"]);
    b.set_annotation("org.kakuri.test", "yes");
    let c = env.create(&b);
    let st = c.state();
    for key in [
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "owner",
        "annotations",
    ] {
        assert!(st.get(key).is_some(), "state lacks {key}: {st}");
    }
    assert_eq!(st["id"], c.id());
    assert_eq!(st["bundle"], b.dir().to_str().unwrap());
    assert_eq!(st["rootfs"], b.rootfs().to_str().unwrap());
    assert_eq!(st["annotations"]["org.kakuri.test"], "yes", "{st}");
    assert!(st["ociVersion"].as_str().unwrap().starts_with("1."), "{st}");
    assert!(
        st["created"].as_str().unwrap().contains('T'),
        "RFC 3339 created: {st}"
    );
    c.start();
    assert_eq!(c.status(), "running");
    drop(c);
    env.finish();
}

#[test]
fn exited_container_is_stopped_and_kill_fails() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("echo done");
    let c = env.create(&b);
    c.start();
    c.wait_stdout("done");
    c.wait_status("stopped");
    let st = c.state();
    assert_eq!(st["status"], "stopped");
    c.kill("KILL").fails_with("container not running");
    c.delete(false).ok();
    let gone = env.run(&["state", c.id()]);
    assert_eq!(gone.code, Some(1), "{gone}");
    drop(c);
    env.finish();
}

#[test]
fn unknown_id_does_not_exist() {
    // runc 1.1.5 prints "container does not exist" without the id: it fails this test.
    let env = TestEnv::new();
    let id = env.new_id();
    let expected = format!("container \"{id}\" does not exist");
    for verb in ["state", "start", "delete", "kill"] {
        env.run(&[verb, &id]).fails_with(&expected);
    }
    env.finish();
}

#[test]
fn delete_running_requires_force() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "60"]);
    let c = env.create(&b);
    c.start();
    let out = c.delete(false);
    assert_eq!(
        out.code,
        Some(1),
        "delete of a running container must fail: {out}"
    );
    assert!(out.stderr_has("running"), "{out}");
    assert_eq!(c.status(), "running");
    let pid = c.pid();
    c.delete(true).ok();
    wait_for("init to die after delete --force", WAIT_TIMEOUT, || {
        (!process_alive(pid)).then_some(())
    });
    assert_eq!(env.run(&["state", c.id()]).code, Some(1));
    drop(c);
    env.finish();
}

#[test]
fn delete_force_of_missing_id_succeeds() {
    let env = TestEnv::new();
    let id = env.new_id();
    env.run(&["delete", "--force", &id]).ok();
    env.finish();
}

#[test]
fn run_returns_exit_code() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("echo before-exit; exit 3");
    let (id, out) = env.run_container(&b, &[]);
    out.code_is(3);
    assert!(out.stdout.contains("before-exit"), "{out}");
    // Without --keep, run deletes the container.
    assert_eq!(env.run(&["state", &id]).code, Some(1));
    env.finish();
}

#[test]
fn run_killed_returns_128_plus_signal() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "60"]);
    b.write();
    let id = env.new_id();
    let run = env.rt().spawn(
        env.rt()
            .cmd(&["run", "--bundle", b.dir().to_str().unwrap(), &id]),
    );
    wait_for("container running", WAIT_TIMEOUT, || {
        let out = env.run(&["state", &id]);
        out.stdout.contains("\"running\"").then_some(())
    });
    env.run(&["kill", &id, "KILL"]).ok();
    let out = run.wait(CMD_TIMEOUT);
    out.code_is(137);
    env.finish();
}

#[test]
fn run_detach_and_keep() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("echo detached-ok; sleep 60");
    let (id, out) = env.run_container(&b, &["--detach"]);
    out.ok();
    let c = env.container(&id, &out);
    c.wait_stdout("detached-ok");
    assert_eq!(c.status(), "running");
    drop(c);

    let mut b2 = env.bundle();
    b2.set_sh("exit 0");
    let (id2, out2) = env.run_container(&b2, &["--keep"]);
    out2.ok();
    let kept = env.run(&["state", &id2]);
    kept.ok();
    assert!(kept.stdout.contains("\"stopped\""), "{kept}");
    env.run(&["delete", &id2]).ok();
    env.finish();
}

const TRAP_SCRIPT: &str = "trap 'echo got-TERM' TERM; trap 'echo got-USR1' USR1; \
                           echo ready; while :; do sleep 0.05; done";

#[test]
fn kill_default_is_sigterm() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh(TRAP_SCRIPT);
    let c = env.create(&b);
    c.start();
    c.wait_stdout("ready");
    env.run(&["kill", c.id()]).ok();
    c.wait_stdout("got-TERM");
    drop(c);
    env.finish();
}

#[test]
fn kill_signal_names_and_numbers() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh(TRAP_SCRIPT);
    let c = env.create(&b);
    c.start();
    c.wait_stdout("ready");
    for (i, sig) in ["USR1", "SIGUSR1", "10"].iter().enumerate() {
        c.kill(sig).ok();
        wait_for(
            &format!("USR1 #{} delivered via {sig}", i + 1),
            WAIT_TIMEOUT,
            || (c.stdout().matches("got-USR1").count() > i).then_some(()),
        );
    }
    c.kill("FOO").fails_with("FOO");
    c.kill("SIGKILL").ok();
    c.wait_status("stopped");
    drop(c);

    let mut b2 = env.bundle();
    b2.set_args(&["sleep", "60"]);
    for sig in ["KILL", "9"] {
        let c = env.create(&b2);
        c.start();
        c.kill(sig).ok();
        c.wait_status("stopped");
    }
    env.finish();
}

#[test]
fn kill_all_reaches_every_process() {
    // Without a pid namespace, killing init leaves its children; --all kills them too.
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.remove_namespace("pid");
    b.set_sh("sleep 61 & echo child=$!; wait");
    let c = env.create(&b);
    c.start();
    let out = c.wait_stdout("child=");
    let child: i32 = out
        .split("child=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("child pid printed");
    assert!(process_alive(child), "child {child} alive");
    env.run(&["kill", "--all", c.id(), "KILL"]).ok();
    wait_for("every container process killed", WAIT_TIMEOUT, || {
        (!process_alive(child)).then_some(())
    });
    c.wait_status("stopped");
    drop(c);
    env.finish();
}

#[test]
fn concurrent_creates_of_one_id_one_wins() {
    let env = TestEnv::new();
    let id = env.new_id();
    let mut b1 = env.bundle();
    b1.set_args(&["sleep", "60"]);
    b1.write();
    let b2 = b1.clone();
    let outs: Vec<CmdOutput> = std::thread::scope(|s| {
        let handles: Vec<_> = [&b1, &b2]
            .into_iter()
            .map(|b| {
                let env = &env;
                let id = &id;
                s.spawn(move || {
                    env.rt()
                        .run(&["create", "--bundle", b.dir().to_str().unwrap(), id])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners = outs.iter().filter(|o| o.success()).count();
    assert_eq!(winners, 1, "exactly one create must win: {outs:#?}");
    let loser = outs.iter().find(|o| !o.success()).unwrap();
    assert_eq!(loser.code, Some(1), "{loser}");
    let c = env.container(&id, outs.iter().find(|o| o.success()).unwrap());
    assert_eq!(c.status(), "created");
    drop(c);
    env.finish();
}

#[test]
fn concurrent_commands_are_serialized() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("echo started-once; exec sleep 60");
    let c = env.create(&b);
    let id = c.id().to_string();
    let outs: Vec<(String, CmdOutput)> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for i in 0..6 {
            let verb = if i % 2 == 0 { "start" } else { "state" };
            let env = &env;
            let id = &id;
            handles.push(s.spawn(move || (verb.to_string(), env.run(&[verb, id]))));
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let starts_ok = outs
        .iter()
        .filter(|(v, o)| v == "start" && o.success())
        .count();
    assert_eq!(starts_ok, 1, "exactly one start must succeed: {outs:#?}");
    for (verb, out) in &outs {
        if verb == "state" {
            out.ok();
            let st: serde_json::Value = serde_json::from_str(&out.stdout)
                .unwrap_or_else(|e| panic!("torn state output ({e}): {out}"));
            let status = st["status"].as_str().unwrap();
            assert!(status == "created" || status == "running", "{st}");
        }
    }
    c.wait_stdout("started-once");
    // Once the init is `sleep 60` the script can print nothing more: the count is final.
    let pid = c.pid();
    wait_for("the init to exec sleep", WAIT_TIMEOUT, || {
        let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        cmdline.starts_with("sleep\0").then_some(())
    });
    assert_eq!(c.stdout().matches("started-once").count(), 1);
    assert_eq!(c.status(), "running");
    drop(c);
    env.finish();
}

/// Without a pid namespace of its own, the init's exit does not take its children along: they
/// stay in the container's cgroup, and `delete` of the stopped container must kill them (as
/// runc does) instead of failing to remove a busy cgroup.
#[test]
fn delete_of_stopped_container_without_pid_namespace_kills_what_is_left() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.remove_namespace("pid");
    b.set_sh("sleep 600 & echo $!; exit 0");
    let c = env.create(&b);
    c.start();
    c.wait_status("stopped");
    let left: i32 = c
        .wait_stdout("\n")
        .trim()
        .parse()
        .expect("the background pid");
    assert!(
        process_alive(left),
        "the background sleep outlived the init"
    );
    c.delete(false).ok();
    wait_for("the left-over process to die", WAIT_TIMEOUT, || {
        (!process_alive(left)).then_some(())
    });
    env.finish();
}
