//! What a container's processes (init, exec'd, hooks) inherit from the runtime at exec: signal
//! dispositions and mask, session and process group; and how `start` hands over to the program.

use kakuri_runtime_tests::*;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// Prints the signal mask and ignored set of the process that runs it.
const SIGS: &str = "grep -E '^Sig(Blk|Ign)' /proc/self/status";

/// [`SIGS`] as a program of its own, not through a shell (busybox sh may ignore SIGQUIT, for
/// itself and what it runs), ending with a line that comes after SigIgn in /proc/self/status.
const SIGS_ARGV: [&str; 4] = [
    "grep",
    "-E",
    "^Sig(Blk|Ign)|^Cpus_allowed_list",
    "/proc/self/status",
];

/// `(SigBlk, SigIgn)` from the text printed by [`SIGS`] (the first of each).
fn sig_sets(text: &str) -> (String, String) {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {k} in {text:?}"))
    };
    (get("SigBlk:"), get("SigIgn:"))
}

const NONE: (&str, &str) = ("0000000000000000", "0000000000000000");

/// A hostile caller: the runtime is started with SIGPIPE, SIGHUP and SIGINT ignored and SIGUSR1,
/// SIGALRM and SIGTERM blocked. A container process must see none of it (runc's processes show
/// empty SigIgn and SigBlk when runc is started normally; kakuri resets all of them always).
fn hostile(mut cmd: std::process::Command) -> std::process::Command {
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (sigaction, sigprocmask) on local data.
    unsafe {
        cmd.pre_exec(|| {
            for s in [libc::SIGPIPE, libc::SIGHUP, libc::SIGINT] {
                libc::signal(s, libc::SIG_IGN);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGUSR1, libc::SIGALRM, libc::SIGTERM] {
                libc::sigaddset(&mut set, s);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    cmd
}

#[test]
fn signals_of_init_exec_and_hooks_are_defaults() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let out = env.dir().join("hookout");
    fs::create_dir_all(&out).unwrap();
    b.add_bind(&out, "/hookout", false, false);
    let o = out.to_str().unwrap();
    for kind in [
        "prestart",
        "createRuntime",
        "createContainer",
        "poststart",
        "poststop",
    ] {
        // Not the shell's last command: busybox sh would exec it in its own place, and in a
        // container hook busybox sh ignores SIGQUIT for itself (under runc as well).
        let script = format!("{SIGS} > {o}/{kind}; exit 0");
        b.add_hook(kind, "/bin/sh", &["sh", "-c", &script], &[], Some(10));
    }
    let script = format!("{SIGS} > /hookout/startContainer; exit 0");
    b.add_hook(
        "startContainer",
        "/bin/sh",
        &["sh", "-c", &script],
        &[],
        Some(10),
    );
    b.set_sh(&format!("{SIGS} > /hookout/init; sleep 1000"));
    b.write();
    let id = env.new_id();
    let mut create = env.rt().cmd(&["create", "--bundle"]);
    create.arg(b.dir()).arg(&id);
    let created = env
        .rt()
        .spawn_in(hostile(create), b.dir())
        .wait(CMD_TIMEOUT);
    created.ok();
    let c = env.container(&id, &created);
    env.rt().output(hostile(env.rt().cmd(&["start", &id]))).ok();
    wait_file(&out.join("init"), "SigIgn");
    let mut args = vec!["exec", id.as_str()];
    args.extend(SIGS_ARGV);
    let exec = env.rt().output(hostile(env.rt().cmd(&args)));
    exec.ok();
    assert_eq!(
        sig_sets(&exec.stdout),
        (NONE.0.into(), NONE.1.into()),
        "exec: {exec}"
    );
    let sock = ConsoleSocket::bind(&env.dir().join("console.sock"));
    let sock_path = sock.path().to_string_lossy().into_owned();
    let mut args = vec![
        "exec",
        "-t",
        "-d",
        "--console-socket",
        &sock_path,
        id.as_str(),
    ];
    args.extend(SIGS_ARGV);
    env.rt().output(hostile(env.rt().cmd(&args))).ok();
    let (master, _) = sock.receive_master(WAIT_TIMEOUT);
    let text = read_pty_until(&master, "Cpus_allowed_list", WAIT_TIMEOUT);
    assert_eq!(
        sig_sets(&text),
        (NONE.0.into(), NONE.1.into()),
        "exec -t: {text}"
    );
    env.rt()
        .output(hostile(env.rt().cmd(&["delete", "--force", &id])))
        .ok();
    drop(c);
    for name in [
        "init",
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        let text = fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            sig_sets(&text),
            (NONE.0.into(), NONE.1.into()),
            "{name}: {text}"
        );
    }
    env.finish();
}

/// SIGPIPE at its default action: `yes | head` ends when head has what it wants (runc: 0.16 s;
/// with SIGPIPE ignored `yes` loops on EPIPE forever and the container never ends).
#[test]
fn pipelines_end_when_the_reader_is_done() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("yes 0123456789abcdef | head -c 10485760 | wc -c; while :; do echo y; done | head -1");
    let (_id, out) = env.run_container(&b, &[]);
    out.ok();
    let lines: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(lines, ["10485760", "y"], "{out}");
    env.finish();
}

/// `pid pgrp session` of the shell running this, from /proc/$$/stat.
const IDS: &str = "cut -d' ' -f1,5,6 /proc/$$/stat";

/// As runc: the init and an exec'd process (with or without a tty) each lead a session and
/// process group of their own, so signals to the caller's process group miss the container.
#[test]
fn init_and_exec_lead_their_own_session() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh(&format!("{IDS}; exec sleep 1000"));
    b.write();
    let id = env.new_id();
    let mut create = env.rt().cmd(&["create", "--bundle"]);
    create.arg(b.dir()).arg(&id);
    // `create` leads a process group of its own, as a shell job would.
    create.process_group(0);
    let spawned = env.rt().spawn_in(create, b.dir());
    let create_pgid = spawned.pid() as i32;
    let out = spawned.wait(CMD_TIMEOUT);
    out.ok();
    let c = env.container(&id, &out);
    c.start();
    assert_eq!(
        c.wait_stdout("\n").trim(),
        "1 1 1",
        "init: pid pgrp session"
    );
    let exec = env.run(&["exec", c.id(), "sh", "-c", IDS]);
    exec.ok();
    let ids: Vec<&str> = exec.stdout.split_whitespace().collect();
    assert_eq!(ids.len(), 3, "{exec}");
    assert!(
        ids[0] == ids[1] && ids[1] == ids[2],
        "exec: pid pgrp session {ids:?}"
    );
    let sock = ConsoleSocket::bind(&env.dir().join("console.sock"));
    let sock_path = sock.path().to_string_lossy().into_owned();
    let script = format!("{IDS}; echo ids-done; sleep 5");
    env.run(&[
        "exec",
        "-t",
        "-d",
        "--console-socket",
        &sock_path,
        c.id(),
        "sh",
        "-c",
        &script,
    ])
    .ok();
    let (master, _) = sock.receive_master(WAIT_TIMEOUT);
    let text = read_pty_until(&master, "ids-done", WAIT_TIMEOUT);
    let line = text.lines().find(|l| l.split_whitespace().count() == 3);
    let ids: Vec<&str> = line.unwrap_or_default().split_whitespace().collect();
    assert!(
        ids.len() == 3 && ids[0] == ids[1] && ids[1] == ids[2],
        "exec -t: pid pgrp session in {text:?}"
    );
    // SIGKILL to the process group `create` led (SIGKILL is never ignored, not even by a pid
    // namespace's init): nothing of the container may be in it.
    // SAFETY: kill(2) with a negative pid (a process group) and a valid signal.
    let r = unsafe { libc::kill(-create_pgid, libc::SIGKILL) };
    assert!(
        r != 0,
        "the container's init was still in its caller's process group {create_pgid}"
    );
    assert_eq!(c.status(), "running");
    drop(c);
    env.finish();
}

/// A bundle whose startContainer hook sleeps a second and then leaves a mark in `/hookout`
/// (bound from the returned host dir).
fn slow_start_hook(env: &TestEnv, b: &mut Bundle) -> std::path::PathBuf {
    let out = env.dir().join("hookout");
    fs::create_dir_all(&out).unwrap();
    b.add_bind(&out, "/hookout", false, false);
    b.add_hook(
        "startContainer",
        "/bin/sh",
        &["sh", "-c", "sleep 1; echo done > /hookout/startContainer"],
        &[],
        Some(10),
    );
    out
}

/// The program's file as the host sees it through /proc.
fn exe_of(pid: i32) -> String {
    fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `start` returns only once the init has run its startContainer hooks and exec'd the program
/// (runc 1.1): a `kill` right after it reaches the program, never kakuri's init, and the
/// poststart hooks see the program.
#[test]
fn start_returns_once_the_program_runs() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let out = slow_start_hook(&env, &mut b);
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    c.start();
    assert!(
        out.join("startContainer").exists(),
        "start returned before the startContainer hook was done"
    );
    let exe = exe_of(c.pid());
    assert!(
        exe.ends_with("busybox"),
        "after start the init runs {exe:?}"
    );
    assert_eq!(c.status(), "running");
    c.kill("KILL").ok();
    c.wait_status("stopped");
    drop(c);
    // poststart hooks: the program behind the state's pid.
    let mut b = env.bundle();
    let out = slow_start_hook(&env, &mut b);
    let poststart = format!(
        "pid=$(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/'); readlink /proc/$pid/exe > {}/poststart",
        out.display()
    );
    b.add_hook(
        "poststart",
        "/bin/sh",
        &["sh", "-c", &poststart],
        &[],
        Some(10),
    );
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    c.start();
    let seen = fs::read_to_string(out.join("poststart")).unwrap_or_default();
    assert!(seen.trim().ends_with("busybox"), "poststart saw {seen:?}");
    drop(c);
    env.finish();
}

/// The last lines of a `--log` file, unescaped.
fn log_text(path: &Path) -> String {
    unescape_log(&fs::read_to_string(path).unwrap_or_default())
}

/// A failing startContainer hook or execve fails `start` (exit 1, the error on stderr and in
/// `--log`, text and json), not only the init's stderr; the container is then stopped (runc
/// 1.1 exits 0 here and reports the error only on the container's stderr).
#[test]
fn start_fails_when_the_program_cannot_start() {
    let env = TestEnv::new();
    for format in ["text", "json"] {
        let mut b = env.bundle();
        b.add_hook(
            "startContainer",
            "/bin/sh",
            &["sh", "-c", "exit 3"],
            &[],
            None,
        );
        b.set_args(&["sleep", "1000"]);
        let c = env.create(&b);
        let log = env.dir().join(format!("start-{format}.log"));
        let l = log.to_string_lossy().into_owned();
        let out = env.run(&["--log", &l, "--log-format", format, "start", c.id()]);
        out.fails_with("error running startContainer hook #0");
        out.code_is(1);
        assert!(
            log_text(&log).contains("error running startContainer hook #0"),
            "{format} log: {}",
            log_text(&log)
        );
        c.wait_status("stopped");
    }
    // execve fails: the program disappears between create and start.
    let mut b = env.bundle();
    fs::copy("/bin/busybox", b.rootfs().join("prog")).unwrap();
    b.set_args(&["/prog", "sleep", "1000"]);
    let c = env.create(&b);
    fs::remove_file(b.rootfs().join("prog")).unwrap();
    let out = c.cmd("start", &[]);
    out.code_is(1);
    assert!(
        out.stderr_has("exec \\\"/prog\\\"") || out.stderr_has("exec \"/prog\""),
        "{out}"
    );
    assert!(out.stderr_has("no such file or directory"), "{out}");
    c.wait_status("stopped");
    drop(c);
    env.finish();
}

/// runtime-spec 1.3 (and runc 1.2+): a failing poststart hook is an error of `start`, and the
/// container is stopped; the hooks after it do not run.
#[test]
fn failing_poststart_hook_fails_start_and_stops_the_container() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let out = env.dir().join("hookout");
    fs::create_dir_all(&out).unwrap();
    b.add_hook("poststart", "/bin/sh", &["sh", "-c", "exit 2"], &[], None);
    let after = format!("touch {}/second", out.display());
    b.add_hook("poststart", "/bin/sh", &["sh", "-c", &after], &[], None);
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    let r = c.cmd("start", &[]);
    r.fails_with("error running poststart hook #0");
    r.code_is(1);
    c.wait_status("stopped");
    assert!(
        !out.join("second").exists(),
        "the hook after the failed one ran"
    );
    drop(c);
    env.finish();
}

/// A profile that lets everything through but kills the given syscalls, and prctl with the
/// options kakuri itself uses (busybox calls prctl(PR_GET_NAME), so prctl as a whole cannot go).
fn killing(names: &[&str]) -> serde_json::Value {
    let mut rules = vec![serde_json::json!({ "names": names, "action": "SCMP_ACT_KILL_PROCESS" })];
    for option in [
        libc::PR_SET_PDEATHSIG,
        libc::PR_SET_DUMPABLE,
        libc::PR_SET_KEEPCAPS,
        libc::PR_CAPBSET_DROP,
        libc::PR_CAP_AMBIENT,
        libc::PR_SET_NO_NEW_PRIVS,
        libc::PR_CAPBSET_READ,
    ] {
        rules.push(serde_json::json!({
            "names": ["prctl"],
            "action": "SCMP_ACT_KILL_PROCESS",
            "args": [{ "index": 0, "value": option, "op": "SCMP_CMP_EQ" }]
        }));
    }
    serde_json::json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules })
}

/// With noNewPrivileges the filter is the last step before execve (runc's order): a profile
/// that kills kakuri's prctl calls, close_range, fcntl, the signal syscalls, setsid, getcwd —
/// things the runtime needs but the program does not — still runs the program, as init and as
/// exec'd process. setsid among them is the positive control: a program that calls it is
/// killed. (Before, the init cleared its death signal with prctl after loading the filter.)
#[test]
fn seccomp_filter_is_the_last_step() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let names = [
        "close_range",
        "fcntl",
        "rt_sigaction",
        "rt_sigprocmask",
        "setsid",
        "getcwd",
        "sendmsg",
        "capset",
    ];
    b.set("/linux/seccomp", killing(&names));
    b.set("/process/noNewPrivileges", serde_json::json!(true));
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    c.start();
    c.wait_status("running");
    let exec = env.run(&["exec", c.id(), "echo", "exec-ran"]);
    exec.ok();
    assert_eq!(exec.stdout.trim(), "exec-ran", "{exec}");
    // The control: busybox setsid calls setsid(2), which the filter kills (SIGSYS: 128+31).
    let control = env.run(&["exec", c.id(), "setsid", "true"]);
    control.code_is(128 + libc::SIGSYS);
    drop(c);
    // The same as init of `run`, which prints and exits.
    let mut b = env.bundle();
    b.set("/linux/seccomp", killing(&names));
    b.set("/process/noNewPrivileges", serde_json::json!(true));
    b.set_args(&["echo", "init-ran"]);
    let (_id, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout.trim(), "init-ran", "{out}");
    env.finish();
}

/// podman's default profile, but refusing what it does not allow with EPERM (not ENOSYS) and
/// without clone3: clone3 (435) is below syscalls the profile names (faccessat2, 439), so the
/// ENOSYS stub for unknown syscalls does not cover it and it fails with EPERM, from which glibc's
/// posix_spawn does not fall back to clone. fork/clone stay allowed.
fn profile_refusing_clone3() -> serde_json::Value {
    let mut p = kakuri_runtime_tests::seccomp_profile::podman_seccomp();
    p["defaultErrnoRet"] = serde_json::json!(libc::EPERM);
    for call in p["syscalls"].as_array_mut().expect("syscalls") {
        if let Some(names) = call["names"].as_array_mut() {
            names.retain(|n| n != "clone3");
        }
    }
    let names = |p: &serde_json::Value| -> Vec<String> {
        p["syscalls"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| kakuri_runtime_tests::seccomp_profile::strings(&c["names"]))
            .map(str::to_string)
            .collect()
    };
    let all = names(&p);
    assert!(
        all.iter().any(|n| n == "faccessat2"),
        "the profile names faccessat2"
    );
    assert!(!all.iter().any(|n| n == "clone3"));
    p
}

/// startContainer hooks run in the container under its seccomp filter (as runc): they are
/// started with a plain fork (clone), so a profile that refuses clone3 with EPERM — which made
/// glibc's posix_spawn fail — still runs them. Both with and without noNewPrivileges (the
/// filter is loaded at different points).
#[test]
fn start_container_hooks_run_under_a_filter_refusing_clone3() {
    let env = TestEnv::new();
    for nnp in [true, false] {
        let mut b = env.bundle();
        let out = env.dir().join(format!("hookout-{nnp}"));
        fs::create_dir_all(&out).unwrap();
        b.add_bind(&out, "/hookout", false, false);
        b.add_hook(
            "startContainer",
            "/bin/sh",
            &["sh", "-c", "echo ran > /hookout/startContainer"],
            &[],
            Some(10),
        );
        b.set("/linux/seccomp", profile_refusing_clone3());
        b.set("/process/noNewPrivileges", serde_json::json!(nnp));
        b.set_caps(
            "bounding",
            &kakuri_runtime_tests::seccomp_profile::PODMAN_CAPS,
        );
        b.set_caps(
            "effective",
            &kakuri_runtime_tests::seccomp_profile::PODMAN_CAPS,
        );
        b.set_caps(
            "permitted",
            &kakuri_runtime_tests::seccomp_profile::PODMAN_CAPS,
        );
        b.set_args(&["echo", "program-ran"]);
        let (_id, r) = env.run_container(&b, &[]);
        r.ok();
        assert_eq!(r.stdout.trim(), "program-ran", "noNewPrivileges {nnp}: {r}");
        let seen = fs::read_to_string(out.join("startContainer")).unwrap_or_default();
        assert_eq!(seen.trim(), "ran", "noNewPrivileges {nnp}");
    }
    env.finish();
}

/// Each hook's working directory, as runc gives it: the bundle for prestart, createRuntime and
/// poststart (runc changes into the bundle), the rootfs for createContainer (the init's cwd
/// before pivot_root), process.cwd for startContainer. Checked with runc 1.1.5.
#[test]
fn hooks_run_in_runc_s_working_directories() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let out = env.dir().join("hookout");
    fs::create_dir_all(&out).unwrap();
    b.add_bind(&out, "/hookout", false, false);
    let o = out.to_str().unwrap();
    for kind in ["prestart", "createRuntime", "createContainer", "poststart"] {
        b.add_hook(
            kind,
            "/bin/sh",
            &["sh", "-c", &format!("pwd > {o}/{kind}")],
            &[],
            None,
        );
    }
    b.add_hook(
        "startContainer",
        "/bin/sh",
        &["sh", "-c", "pwd > /hookout/startContainer"],
        &[],
        None,
    );
    b.set_cwd("/tmp");
    b.set_args(&["true"]);
    // Run from elsewhere: the hooks must not simply inherit the caller's cwd.
    let id = env.new_id();
    b.write();
    let mut cmd = env.rt().cmd(&["run", "--bundle"]);
    cmd.arg(b.dir()).arg(&id);
    cmd.current_dir("/");
    env.rt().output(cmd).ok();
    let bundle = b.dir().canonicalize().unwrap();
    let rootfs = b.rootfs().canonicalize().unwrap();
    let read = |k: &str| {
        fs::read_to_string(out.join(k))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    for kind in ["prestart", "createRuntime", "poststart"] {
        assert_eq!(Path::new(&read(kind)), bundle, "{kind}");
    }
    assert_eq!(
        Path::new(&read("createContainer")),
        rootfs,
        "createContainer"
    );
    assert_eq!(read("startContainer"), "/tmp", "startContainer");
    env.finish();
}
