//! The per-phase timeline (`--timings`, `KAKURI_TIMINGS`, `--debug`): which phases a real
//! `run`, `create`/`start` and `exec` report, from which process, and that nothing is printed
//! or written when it is off.

use kakuri_runtime_tests::*;
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::path::Path;

/// `<rt> [pre...] run --bundle B <id>` with `KAKURI_TIMINGS` as given (removed when `None`).
fn run_with(env: &TestEnv, b: &Bundle, pre: &[&str], timings: Option<&OsStr>) -> CmdOutput {
    let id = env.new_id();
    b.write();
    let mut args: Vec<&OsStr> = pre.iter().map(OsStr::new).collect();
    args.extend(["run", "--bundle"].map(OsStr::new));
    args.push(b.dir().as_os_str());
    args.push(OsStr::new(&id));
    let mut cmd = env.rt().cmd(&args);
    match timings {
        Some(v) => cmd.env("KAKURI_TIMINGS", v),
        None => cmd.env_remove("KAKURI_TIMINGS"),
    };
    env.rt().spawn_in(cmd, b.dir()).wait(CMD_TIMEOUT)
}

/// The (process, phase) pairs of a `--timings` table.
fn table_phases(stderr: &str) -> Vec<(String, String)> {
    let mut lines = stderr
        .lines()
        .skip_while(|l| !l.starts_with("kakuri timings: "));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no timings table: {stderr}"));
    assert!(head.contains(" ms in all"), "{head}");
    lines
        .skip(1) // column names
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // start ms, took ms, process, phase words
            (f.len() >= 4 && f[0].contains('.') && f[1].contains('.'))
                .then(|| (f[2].to_string(), f[3..].join(" ")))
        })
        .collect()
}

#[track_caller]
fn has(phases: &[(String, String)], process: &str, phase_prefix: &str) {
    assert!(
        phases
            .iter()
            .any(|(p, n)| p == process && n.starts_with(phase_prefix)),
        "no phase {process:?} {phase_prefix:?} in {phases:#?}"
    );
}

fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn phases_of(v: &Value) -> Vec<(String, String)> {
    v["phases"]
        .as_array()
        .unwrap_or_else(|| panic!("no phases: {v}"))
        .iter()
        .map(|p| {
            (
                p["process"].as_str().unwrap_or("").to_string(),
                p["phase"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn run_with_timings_prints_every_phase_group() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    // A filter loaded in the init before the credentials change (no noNewPrivileges), so that
    // both its compile (runtime) and its load (init) show.
    b.set("/process/noNewPrivileges", json!(false));
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["swapon"], "action": "SCMP_ACT_ERRNO"}]}),
    );
    let out = run_with(&env, &b, &["--timings"], None);
    out.ok();
    let phases = table_phases(&out.stderr);
    for phase in [
        "parse arguments",
        "config parse",
        "seccomp compile",
        "state dir, lock, first state.json",
        "cgroup mkdir ",
        "clone",
        "wait: init Ready",
        "release the init (exec fifo)",
        "wait: init execs the program",
        "wait: the container exits",
        "cgroup rmdir ",
        "remove the state dir",
    ] {
        has(&phases, "kakuri", phase);
    }
    // The re-execution from the read-only binary comes before the arguments are parsed, and
    // they are parsed once (not again by the re-executed runtime), unless the binary already
    // sits on a read-only mount and is not re-executed at all.
    let runtime: Vec<&str> = phases
        .iter()
        .filter(|(p, _)| p == "kakuri")
        .map(|(_, n)| n.as_str())
        .collect();
    let parses = runtime.iter().filter(|n| **n == "parse arguments").count();
    assert_eq!(parses, 1, "arguments parsed {parses} times: {runtime:#?}");
    let reexec = runtime
        .iter()
        .position(|n| *n == "re-exec from the read-only binary");
    if binary_on_read_only_mount(env.rt().bin()) {
        assert_eq!(reexec, None, "{runtime:#?}");
    } else {
        let parse = runtime.iter().position(|n| *n == "parse arguments");
        assert!(
            reexec.is_some() && reexec < parse,
            "no re-exec before the parse: {runtime:#?}"
        );
    }
    // On a pure cgroup v2 host the init is cloned straight into its cgroup (CLONE_INTO_CGROUP):
    // no cgroup.procs is written there; elsewhere the init joins its v1 cgroups itself
    // (their `tasks` files), or, with KAKURI_V1_SELF_JOIN=0, the runtime moves it there.
    if !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        has(&phases, "init", "join its v1 cgroups (tasks)");
    }
    for phase in [
        "wait: Go",
        "mount /proc",
        "mount /dev",
        "device nodes",
        "pivot_root",
        "readonlyPaths, maskedPaths",
        "seccomp load",
        "user, groups, capabilities",
        "wait: start",
    ] {
        has(&phases, "init", phase);
    }
    // Times are in order and within the total.
    let total: f64 = out
        .stderr
        .lines()
        .find_map(|l| {
            l.split(", ")
                .nth(1)?
                .strip_suffix(" ms in all")?
                .parse()
                .ok()
        })
        .expect("total");
    assert!(total > 0.0, "{}", out.stderr);
    env.finish();
}

#[test]
fn timings_are_absent_when_off() {
    let env = TestEnv::new();
    let b = env.bundle();
    for v in [None, Some(OsStr::new("")), Some(OsStr::new("0"))] {
        let out = run_with(&env, &b, &[], v);
        out.ok();
        assert!(
            !out.stderr.contains("timings") && out.stderr.is_empty(),
            "KAKURI_TIMINGS={v:?}: nothing on stderr expected: {out}"
        );
    }
    // No --debug either: the debug log has no timing lines without --debug, and has them
    // with it.
    let log = env.dir().join("debug.log");
    let out = run_with(&env, &b, &["--debug", "--log", log.to_str().unwrap()], None);
    out.ok();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("timing: kakuri config parse")
            && text.contains("timing: init pivot_root")
            && text.contains("timing: run took"),
        "--debug logs the timeline: {text}"
    );
    env.finish();
}

#[test]
fn timings_file_for_create_start_exec_delete() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "60"]);
    b.write();
    let file = env.dir().join("timings.jsonl");
    let with_file = |args: &[&str]| {
        let mut cmd = env.rt().cmd(args);
        cmd.env("KAKURI_TIMINGS", &file);
        env.rt().output(cmd)
    };
    let id = env.new_id();
    let out = with_file(&["create", "--bundle", b.dir().to_str().unwrap(), &id]);
    out.ok();
    let c = env.container(&id, &out);
    with_file(&["start", &id]).ok();
    with_file(&["exec", &id, "true"]).ok();
    with_file(&["state", &id]).ok();
    with_file(&["kill", &id, "KILL"]).ok();
    wait_for("the container to stop", WAIT_TIMEOUT, || {
        (c.state()["status"] == "stopped").then_some(())
    });
    with_file(&["delete", &id]).ok();
    // stderr stayed clean: the timeline went to the file.
    let lines = json_lines(&file);
    let commands: Vec<&str> = lines.iter().filter_map(|l| l["command"].as_str()).collect();
    assert_eq!(
        commands,
        ["create", "start", "exec", "state", "kill", "delete"],
        "{lines:#?}"
    );
    for l in &lines {
        assert!(l["total_ns"].as_u64().is_some_and(|t| t > 0), "{l}");
        assert_eq!(l["dropped"], 0, "{l}");
        for p in l["phases"].as_array().unwrap() {
            assert!(p["start_ns"].as_u64().is_some() && p["ns"].as_u64().is_some());
        }
    }
    let create = phases_of(&lines[0]);
    has(&create, "kakuri", "wait: init Ready");
    has(&create, "init", "pivot_root");
    // The init's phases after `start` reach the `start` command through the exec status fifo.
    let start = phases_of(&lines[1]);
    has(&start, "kakuri", "state dir, lock, state.json, status");
    has(&start, "init", "wait: start (began before this command)");
    has(&start, "kakuri", "wait: init execs the program");
    let exec = phases_of(&lines[2]);
    has(&exec, "kakuri", "open the container's namespaces");
    has(&exec, "exec", "join the container's namespaces");
    has(&exec, "exec", "user, groups, capabilities");
    has(&exec, "kakuri", "wait: the process exits");
    has(&phases_of(&lines[5]), "kakuri", "remove the state dir");
    env.finish();
}

/// Whether `bin` is on a read-only mount (statvfs' ST_RDONLY: the mount's flag, so a read-only
/// bind of a writable filesystem counts), where the runtime runs as it is.
fn binary_on_read_only_mount(bin: &Path) -> bool {
    use nix::sys::statvfs::{statvfs, FsFlags};
    statvfs(bin)
        .unwrap_or_else(|e| panic!("statvfs {}: {e}", bin.display()))
        .flags()
        .contains(FsFlags::ST_RDONLY)
}
