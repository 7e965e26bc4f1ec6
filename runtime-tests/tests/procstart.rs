//! What a container's processes (init, exec'd, hooks) inherit from the runtime at exec: signal
//! dispositions and mask, session and process group; and how `start` hands over to the program.

use kakuri_runtime_tests::*;
use std::fs;
use std::os::unix::process::CommandExt;

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
