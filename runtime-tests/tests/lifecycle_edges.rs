//! Edges of the lifecycle and the command line: closed or full stdout and log, `kill 0`,
//! `kill --all` after the init exited, `list -f json` key order, `exec -p` without a user,
//! repeated `exec --cgroup`, a cgroup that is frozen or already holds processes, an init that
//! the OOM killer takes during `create`, the framing of JSON outputs. Each compared with runc 1.1.5 (`KAKURI_BIN=runc`
//! runs the suite against it; where runc differs on purpose the test says so).

use kakuri_runtime_tests::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a command did when its stdout was something other than a file.
struct Outcome {
    cmdline: String,
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> code {:?} signal {:?}\n--- stderr ---\n{}",
            self.cmdline, self.code, self.signal, self.stderr
        )
    }
}

/// Runs `cmd` with `stdout` as its stdout and stderr captured (time limit [`CMD_TIMEOUT`]).
fn run_with_stdout(env: &TestEnv, mut cmd: Command, stdout: Stdio) -> Outcome {
    let cmdline = format!("{:?}", cmd);
    let err_path = env.dir().join(format!("stderr-{}", unique_id()));
    cmd.stdout(stdout)
        .stderr(fs::File::create(&err_path).expect("create stderr file"));
    let mut child = cmd.spawn().expect("spawn the runtime");
    // The parent's copy of the pipe's write end is gone with `cmd`'s Stdio once spawned.
    drop(cmd);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > CMD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{cmdline}` did not finish within {CMD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        cmdline,
        code: status.code(),
        signal: status.signal(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// A pipe whose read end is already closed: every write gets EPIPE.
fn reader_gone() -> Stdio {
    let (r, w) = pipe();
    drop(r);
    Stdio::from(w)
}

#[track_caller]
fn assert_no_panic(o: &Outcome) {
    assert!(
        !o.stderr.contains("panicked") && !o.stderr.contains("RUST_BACKTRACE"),
        "panic text: {o}"
    );
    assert_ne!(o.signal, Some(libc::SIGABRT), "aborted: {o}");
    assert_ne!(o.signal, Some(libc::SIGSEGV), "crashed: {o}");
}

fn is_runc() -> bool {
    runtime_bin().file_name().is_some_and(|n| n == "runc")
}

/// kakuri's documented exit code (docs/cli.md) for a stdout whose reader has gone: 141, quietly.
/// runc dies of SIGPIPE there (a shell shows 141 too).
#[track_caller]
fn assert_broken_pipe_exit(o: &Outcome) {
    assert_no_panic(o);
    if is_runc() {
        assert!(
            o.signal == Some(libc::SIGPIPE) || o.code == Some(141),
            "runc: {o}"
        );
    } else {
        assert_eq!(o.code, Some(141), "documented exit code: {o}");
    }
    assert!(o.stderr.trim().is_empty(), "ends quietly: {o}");
}

#[test]
fn stdout_without_a_reader_ends_quietly_with_141() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "600"]);
    let c = env.create(&b);
    let root = env.rt().root().to_str().unwrap().to_string();
    for args in [
        vec!["--version"],
        vec!["--root", &root, "state", c.id()],
        vec!["--root", &root, "list"],
        vec!["--root", &root, "list", "-f", "json"],
        vec!["--root", &root, "ps", "-f", "json", c.id()],
        vec!["features"],
    ] {
        let o = run_with_stdout(&env, env.rt().bare_cmd(&args), reader_gone());
        assert_broken_pipe_exit(&o);
    }
    drop(c);
    env.finish();
}

/// `list > /dev/full`: runc fails with "write /dev/stdout: no space left on device".
#[test]
fn stdout_on_a_full_device_is_an_error() {
    let env = TestEnv::new();
    for args in [vec!["list"], vec!["list", "-q"], vec!["features"]] {
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let o = run_with_stdout(&env, env.rt().cmd(&args), Stdio::from(full));
        assert_no_panic(&o);
        if args == ["list", "-q"] {
            // No container: nothing is written, nothing fails.
            assert_eq!(o.code, Some(0), "{o}");
            continue;
        }
        assert_eq!(o.code, Some(1), "{o}");
        assert!(
            unescape_log(&o.stderr).contains("write /dev/stdout: no space left on device"),
            "{o}"
        );
    }
    env.finish();
}

/// `--log /dev/full`: the command keeps its own exit code and its error still reaches stderr;
/// the failed log write is reported once (runc: logrus' "Failed to write to log, ...").
#[test]
fn log_on_a_full_device() {
    let env = TestEnv::new();
    let id = env.new_id();
    let out = env.run(&["--log", "/dev/full", "state", &id]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
    // runc 1.1.5 words it "container does not exist".
    assert!(out.stderr_has("does not exist"), "{out}");
    if !is_runc() {
        assert!(
            out.stderr_has(&format!("container \"{id}\" does not exist")),
            "{out}"
        );
        assert!(
            out.stderr
                .contains("failed to write to log file /dev/full: no space left on device"),
            "{out}"
        );
    }
    let out = env.run(&["--log", "/dev/full", "--debug", "list"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
    env.finish();
}

/// runc: `--log` at a path that cannot be opened fails the command (exit 1, "open PATH: ...").
#[test]
fn log_at_an_unopenable_path_is_an_error() {
    let env = TestEnv::new();
    let bad = env.dir().join("no-such-dir").join("log");
    let out = env.run(&["--log", bad.to_str().unwrap(), "list"]);
    out.fails_with(&format!(
        "open {}: no such file or directory",
        bad.display()
    ));
    assert!(out.stdout.is_empty(), "the command must not run: {out}");
    assert!(!bad.exists());
    env.finish();
}

/// `kill ID 0` checks that the init is alive, as kill(2) and runc.
#[test]
fn kill_signal_0_checks_liveness() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "600"]);
    let c = env.create(&b);
    c.kill("0").ok();
    c.start();
    c.kill("0").ok();
    assert_eq!(
        c.status(),
        "running",
        "signal 0 must not affect the process"
    );
    c.kill("KILL").ok();
    c.wait_status("stopped");
    c.kill("0").fails_with("container not running");
    drop(c);
    env.finish();
}

/// `kill --all` after the init exited succeeds quietly as runc's (containerd's CRI path calls
/// it after every exit); plain `kill` still says the container is not running.
#[test]
fn kill_all_after_the_init_exited_succeeds_quietly() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["true"]);
    let c = env.create(&b);
    c.start();
    c.wait_status("stopped");
    for sig in ["KILL", "TERM", "0"] {
        let out = env.run(&["kill", "--all", c.id(), sig]);
        out.ok();
        assert!(out.stderr.trim().is_empty(), "quietly: {out}");
    }
    c.kill("KILL").fails_with("container not running");
    drop(c);
    env.finish();
}

/// `list -f json`: runc's key order (ociVersion id pid status bundle rootfs created
/// annotations owner), annotations sorted by key and Go's escaping of `<`, `>` and `&`.
#[test]
fn list_json_is_runcs_byte_for_byte() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "600"]);
    b.set_annotation("zz.last", "1");
    b.set_annotation("aa.first", "<x&y>");
    let c = env.create(&b);
    let out = env.run(&["list", "-f", "json"]);
    out.ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("list json");
    let e = &v[0];
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    let expected = format!(
        "[{{\"ociVersion\":\"{}\",\"id\":\"{}\",\"pid\":{},\"status\":\"created\",\"bundle\":\"{}\",\"rootfs\":\"{}\",\"created\":\"{}\",\"annotations\":{{\"aa.first\":\"\\u003cx\\u0026y\\u003e\",\"zz.last\":\"1\"}},\"owner\":\"root\"}}]\n",
        s("ociVersion"),
        c.id(),
        c.pid(),
        b.dir().display(),
        b.rootfs().display(),
        s("created"),
    );
    assert_eq!(out.stdout, expected);
    drop(c);
    let out = env.run(&["list", "-f", "json"]);
    assert_eq!(out.stdout, "null\n", "{out}");
    env.finish();
}

/// A long `list` (32 containers or more) tells stopped containers from live ones by one walk of
/// /proc instead of a kill(2) each: every container's status there is still the one `state`
/// gives, for stopped, created, running and paused containers alike, and a short list (the
/// path without the walk) says the same of the live ones.
#[test]
fn long_list_statuses_match_state() {
    let env = TestEnv::new();
    let mut quick = env.bundle();
    quick.set_args(&["true"]);
    let mut long = env.bundle();
    long.set_args(&["sleep", "600"]);
    let statuses = |env: &TestEnv| -> Vec<(String, String, i64)> {
        let out = env.run(&["list", "-f", "json"]);
        out.ok();
        let v: Value = serde_json::from_str(&out.stdout).expect("list json");
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["id"].as_str().unwrap_or_default().to_string(),
                            e["status"].as_str().unwrap_or_default().to_string(),
                            e["pid"].as_i64().unwrap_or(-1),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (created, running, paused) = (env.create(&long), env.create(&long), env.create(&long));
    running.start();
    paused.start();
    paused.cmd("pause", &[]).ok();
    let short = statuses(&env);
    let want_live = [
        (created.id(), "created"),
        (running.id(), "running"),
        (paused.id(), "paused"),
    ];
    for (id, want) in want_live {
        let got = short.iter().find(|(i, _, _)| i == id);
        assert_eq!(
            got.map(|g| g.1.as_str()),
            Some(want),
            "short list: {short:?}"
        );
    }
    let mut stopped = Vec::new();
    for _ in 0..33 {
        let c = env.create(&quick);
        c.start();
        c.wait_status("stopped");
        stopped.push(c);
    }
    let all = statuses(&env);
    assert_eq!(all.len(), 36, "{all:?}");
    for (id, status, pid) in &all {
        let st = env.run(&["state", id]);
        st.ok();
        let v: Value = serde_json::from_str(&st.stdout).expect("state json");
        assert_eq!(
            v["status"].as_str(),
            Some(status.as_str()),
            "{id}: list {all:?}"
        );
        assert_eq!(v["pid"].as_i64(), Some(*pid), "{id}");
    }
    for (id, want) in want_live {
        let got = all.iter().find(|(i, _, _)| i == id);
        assert_eq!(got.map(|g| g.1.as_str()), Some(want), "long list: {all:?}");
    }
    assert_eq!(
        all.iter()
            .filter(|(_, s, p)| s == "stopped" && *p == 0)
            .count(),
        33,
        "{all:?}"
    );
    paused.cmd("resume", &[]).ok();
    drop((created, running, paused, stopped));
    env.finish();
}

/// runc reads `exec -p` into a Go struct: without `user` the process runs as uid 0, gid 0,
/// whatever user the container's own process has.
#[test]
fn exec_process_file_without_user_is_root() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "600"]);
    b.set_user(1000, 1000, &[]);
    let c = env.create(&b);
    c.start();
    let p = env.dir().join("process.json");
    fs::write(
        &p,
        json!({"args": ["sh", "-c", "echo ids=$(id -u):$(id -g)"], "cwd": "/", "env": ["PATH=/bin"]})
            .to_string(),
    )
    .unwrap();
    let out = env.run(&["exec", "-p", p.to_str().unwrap(), c.id()]);
    out.ok();
    assert_eq!(out.stdout.trim(), "ids=0:0", "{out}");
    // The container's own user is still the base of an exec without -p.
    let out = env.run(&["exec", c.id(), "sh", "-c", "echo ids=$(id -u):$(id -g)"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "ids=1000:1000", "{out}");
    drop(c);
    env.finish();
}

/// `exec --cgroup` may be repeated, `CONTROLLER[,CONTROLLER]:NAME` each (runc's syntax); a
/// bare NAME only alone; bad forms fail with runc's texts before anything runs.
#[test]
fn exec_cgroup_repeated() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "600"]);
    let c = env.create(&b);
    c.start();
    let dirs = cgroup_dirs_of(c.pid());
    let dir_of = |h: &str| {
        dirs.iter()
            .find(|(n, _)| n == h)
            .unwrap_or_else(|| panic!("no {h} hierarchy: {dirs:?}"))
            .1
            .clone()
    };
    let (pids, memory) = (dir_of("pids"), dir_of("memory"));
    let (s1, s2) = ("sub-one", "sub-two");
    fs::create_dir(pids.join(s1)).expect("mkdir pids sub");
    fs::create_dir(memory.join(s2)).expect("mkdir memory sub");
    let result = std::panic::catch_unwind(|| {
        let out = env.run(&[
            "exec",
            "--cgroup",
            &format!("pids:{s1}"),
            "--cgroup",
            &format!("memory:{s2}"),
            c.id(),
            "cat",
            "/proc/self/cgroup",
        ]);
        out.ok();
        for line in out.stdout.lines() {
            let ctrls = line.split(':').nth(1).unwrap_or_default();
            let want = match ctrls {
                "pids" => Some(s1),
                "memory" => Some(s2),
                _ => None,
            };
            match want {
                Some(s) => assert!(line.ends_with(&format!("/{s}")), "{line}: {out}"),
                None => assert!(!line.ends_with(s1) && !line.ends_with(s2), "{line}: {out}"),
            }
        }
        for (args, text) in [
            (
                vec!["--cgroup", "a", "--cgroup", "pids:b"],
                "invalid --cgroup argument: a (missing <controller>: prefix)",
            ),
            (
                vec!["--cgroup", "a:b:c"],
                "invalid --cgroup argument: a:b:c",
            ),
            (
                vec!["--cgroup", "nosuchctl:x"],
                "unknown controller nosuchctl in SubCgroupPaths",
            ),
            (vec!["--cgroup", "../x"], "../x is not a sub cgroup path"),
        ] {
            let mut all = vec!["exec"];
            all.extend(args);
            all.extend([c.id(), "true"]);
            let out = env.run(&all);
            out.code_is(255);
            assert!(out.stderr_has(text), "{text:?}: {out}");
        }
    });
    let _ = fs::remove_dir(pids.join(s1));
    let _ = fs::remove_dir(memory.join(s2));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    drop(c);
    env.finish();
}

/// The v1 hierarchies of this host that a test can put a process into directly.
const BUSY_HIERARCHIES: [&str; 4] = ["freezer", "pids", "devices", "memory"];

/// Removes `rel` (an absolute cgroup path) from every hierarchy, deepest first.
fn remove_cgroup_everywhere(rel: &str) {
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for h in rd.flatten() {
            let dir = h.path().join(rel.trim_start_matches('/'));
            let mut p: &Path = &dir;
            while p.starts_with(h.path()) && p != h.path() {
                let _ = fs::remove_dir(p);
                p = p.parent().unwrap_or(&dir);
            }
        }
    }
}

/// runc 1.1 creates a container in a cgroup that already holds processes with a warning
/// (1.2 refuses). The other processes are left alone: `delete` kills only the container (its
/// own pid namespace) and leaves the cgroup to them.
#[test]
fn non_empty_cgroup_warns_and_leaves_the_others_alone() {
    let env = TestEnv::new();
    let rel = format!("/kakuri-{}-busy", env.id());
    let mut sleeper = Command::new("sleep")
        .arg("600")
        .env(ENV_MARKER, env.id())
        .spawn()
        .expect("spawn sleep");
    let spid = sleeper.id() as i32;
    let result = std::panic::catch_unwind(|| {
        for h in BUSY_HIERARCHIES {
            let dir = Path::new("/sys/fs/cgroup").join(h).join(&rel[1..]);
            fs::create_dir_all(&dir).expect("mkdir cgroup");
            fs::write(dir.join("cgroup.procs"), spid.to_string()).expect("move sleep");
        }
        let mut b = env.bundle();
        b.set_args(&["sleep", "600"]);
        b.set_cgroups_path(&rel);
        let c = env.create(&b);
        assert!(
            c.stderr()
                .contains("container's cgroup is not empty: 1 process(es) found"),
            "{}",
            c.stderr()
        );
        c.start();
        assert_eq!(c.status(), "running");
        c.delete(true).ok();
        assert!(
            process_alive(spid),
            "delete killed a process that was not the container's"
        );
        let procs = fs::read_to_string(
            Path::new("/sys/fs/cgroup/pids")
                .join(&rel[1..])
                .join("cgroup.procs"),
        )
        .expect("the shared cgroup is still there");
        assert_eq!(procs.trim(), spid.to_string());
    });
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    remove_cgroup_everywhere(&rel);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    env.finish();
}

/// A frozen cgroup would stop the init the moment it joins it: runc fails at once with
/// "container's cgroup unexpectedly frozen"; kakuri waited for ever. Checked with the
/// container's own cgroup frozen (nothing may be removed that kakuri did not make) and with a
/// frozen parent (a cgroup made under it is frozen too).
#[test]
fn frozen_cgroup_fails_create_at_once() {
    let env = TestEnv::new();
    let freezer = Path::new("/sys/fs/cgroup/freezer");
    if !freezer.join("freezer.state").exists() && !freezer.is_dir() {
        println!("skipped: no cgroup v1 freezer on this host (the v2 guest covers cgroup.freeze)");
        env.finish();
        return;
    }
    let own = format!("/kakuri-{}-frozen", env.id());
    let parent = format!("/kakuri-{}-frozen-parent", env.id());
    let result = std::panic::catch_unwind(|| {
        for (frozen, cgroups_path) in [
            (own.clone(), own.clone()),
            (parent.clone(), format!("{parent}/child")),
        ] {
            let dir = freezer.join(&frozen[1..]);
            fs::create_dir_all(&dir).expect("mkdir freezer cgroup");
            fs::write(dir.join("freezer.state"), "FROZEN").expect("freeze");
            let mut b = env.bundle();
            b.set_args(&["sleep", "600"]);
            b.set_cgroups_path(&cgroups_path);
            b.write();
            for verb in [vec!["run", "-d"], vec!["create"]] {
                let id = env.new_id();
                let mut args = verb.clone();
                args.extend(["--bundle", b.dir().to_str().unwrap(), &id]);
                let out = env
                    .rt()
                    .spawn(env.rt().cmd(&args))
                    .wait(Duration::from_secs(20));
                out.fails_with("container's cgroup unexpectedly frozen");
                assert!(
                    !env.rt().root().join(&id).exists(),
                    "state left after a failed create"
                );
            }
            assert!(dir.is_dir(), "the frozen cgroup is not kakuri's to remove");
            fs::write(dir.join("freezer.state"), "THAWED").expect("thaw");
        }
    });
    remove_cgroup_everywhere(&format!("{parent}/child"));
    remove_cgroup_everywhere(&own);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    env.finish();
}

/// A 1-byte memory limit: the init is OOM-killed as soon as it runs in its cgroup. runc's text
/// says so ("container init was OOM-killed (memory limit too low?)") instead of a vague "init
/// exited during setup"; nothing is left behind.
#[test]
fn init_killed_by_the_oom_killer_is_named() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set("/linux/resources/memory", json!({"limit": 1}));
    let (_, out) = env.run_container(&b, &[]);
    if is_runc() {
        // runc 1.1.5 sets the limit after the init joined the cgroup, which the kernel refuses.
        out.fails_with("unable to set memory limit to 1");
    } else {
        out.fails_with("container init was OOM-killed (memory limit too low?)");
    }
    env.finish();
}

/// Output framing as runc's: `state` ends at its closing brace (runc writes the indented JSON
/// without a newline), `list -f json` and `ps -f json` end with one newline.
#[test]
fn json_outputs_end_as_runcs() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "600"]);
    let c = env.create(&b);
    let state = c.cmd("state", &[]);
    state.ok();
    assert!(state.stdout.ends_with("\n}"), "{:?}", state.stdout);
    let list = env.run(&["list", "-f", "json"]);
    list.ok();
    assert!(list.stdout.ends_with("]\n"), "{:?}", list.stdout);
    let ps = c.cmd("ps", &["-f", "json"]);
    ps.ok();
    assert!(ps.stdout.ends_with("]\n"), "{:?}", ps.stdout);
    drop(c);
    env.finish();
}
