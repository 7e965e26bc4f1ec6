//! Terminals and stdio as the container's user sees them (runc parity): the pty belongs to the
//! process user (group left to devpts), `process.consoleSize` sizes it for `create` and for
//! `exec -p`, and stdio inherited from the caller is given to the process user so that a
//! non-root process can reopen `/proc/self/fd/{0,1,2}`.
//!
//! The expected values are runc 1.1's (run these tests with `KAKURI_BIN=/usr/sbin/runc`).

use kakuri_runtime_tests::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::MetadataExt;

/// Owner of the terminal and its size, as the process reports them.
const TTY_REPORT: &str =
    "t=$(tty); echo \"owner=$(stat -c %u:%g $t)\"; echo \"size=$(stty size)\"; echo report-done";

fn report_line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} line in {text:?}"))
}

/// The gid devpts gives new ptys in the default spec (`gid=5` in the /dev/pts mount).
const TTY_GID: u32 = 5;

#[test]
fn console_belongs_to_the_process_user_and_has_the_config_size() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_terminal(true);
    b.set_user(1000, 1000, &[]);
    b.config_mut()["process"]["consoleSize"] = json!({"height": 33, "width": 101});
    b.set_sh(&format!("{TTY_REPORT}; sleep 60"));
    let (c, master) = env.create_with_console(&b);
    c.start();
    let text = read_pty_until(&master, "report-done", WAIT_TIMEOUT);
    assert_eq!(
        report_line(&text, "owner="),
        format!("1000:{TTY_GID}"),
        "{text:?}"
    );
    assert_eq!(report_line(&text, "size="), "33 101", "{text:?}");
    drop(c);
    env.finish();
}

#[test]
fn exec_tty_belongs_to_the_exec_user_and_process_json_sizes_it() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("sleep 60");
    let c = env.create(&b);
    c.start();
    // exec -p with a terminal, a user and a console size.
    let mut p = b.config()["process"].clone();
    p["terminal"] = json!(true);
    p["user"] = json!({"uid": 1234, "gid": 1234});
    p["consoleSize"] = json!({"height": 17, "width": 77});
    p["args"] = json!(["sh", "-c", TTY_REPORT]);
    let pfile = env.dir().join("process.json");
    fs::write(&pfile, serde_json::to_vec(&p).unwrap()).unwrap();
    let sock = ConsoleSocket::bind(&env.dir().join("exec-console.sock"));
    let exec = env.rt().spawn(env.rt().cmd(&[
        "exec",
        "--detach",
        "--console-socket",
        sock.path().to_str().unwrap(),
        "-p",
        pfile.to_str().unwrap(),
        c.id(),
    ]));
    let (master, _) = sock.receive_master(CMD_TIMEOUT);
    exec.wait(CMD_TIMEOUT).ok();
    let text = read_pty_until(&master, "report-done", WAIT_TIMEOUT);
    assert_eq!(
        report_line(&text, "owner="),
        format!("1234:{TTY_GID}"),
        "{text:?}"
    );
    assert_eq!(report_line(&text, "size="), "17 77", "{text:?}");
    drop(c);
    env.finish();
}

#[test]
fn non_root_process_can_reopen_its_stdio() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_user(1000, 1000, &[]);
    // Appending through /proc/self/fd/1 opens the file anew, with the process's own rights.
    b.set_sh(
        "if echo reopened >> /proc/self/fd/1; then echo reopen-ok >> /proc/self/fd/1; \
         else echo reopen-failed; fi",
    );
    let (id, out) = env.run_container(&b, &[]);
    out.ok();
    let text = fs::read_to_string(&out.stdout_path).unwrap();
    assert!(
        text.contains("reopened") && text.contains("reopen-ok"),
        "container {id}: {text:?} {}",
        out.stderr
    );
    env.finish();
}

#[test]
fn root_process_leaves_stdio_owners_alone() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("echo hello");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    let meta = fs::metadata(&out.stdout_path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    env.finish();
}
