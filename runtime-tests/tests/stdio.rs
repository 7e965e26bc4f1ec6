//! Standard I/O: pass-through of fds 0-2, no fd leaks, --preserve-fds, terminal via
//! --console-socket.

use kakuri_runtime_tests::*;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

#[test]
fn container_gets_exactly_the_runtime_stdio() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("stat -L -c %i /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2; read line; echo \"in:$line\"; ls /proc/self/fd");
    b.write();
    let stdin_path = env.dir().join("stdin.txt");
    fs::write(&stdin_path, "hello-stdin\n").unwrap();
    let id = env.new_id();
    let mut cmd = env
        .rt()
        .cmd(&["create", "--bundle", b.dir().to_str().unwrap(), &id]);
    cmd.stdin(File::open(&stdin_path).unwrap());
    let out = env.rt().output(cmd);
    out.ok();
    let c = env.container(&id, &out);
    c.start();
    let text = c.wait_stdout("in:hello-stdin");
    c.wait_status("stopped");
    let text = fs::read_to_string(&out.stdout_path).unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let inode = |p: &std::path::Path| fs::metadata(p).unwrap().ino().to_string();
    assert_eq!(
        lines[0],
        inode(&stdin_path),
        "fd 0 is the runtime's stdin: {text}"
    );
    assert_eq!(
        lines[1],
        inode(&out.stdout_path),
        "fd 1 is the runtime's stdout: {text}"
    );
    assert_eq!(
        lines[2],
        inode(&out.stderr_path),
        "fd 2 is the runtime's stderr: {text}"
    );
    // ls sees 0-2 plus the directory fd it opened itself.
    assert_eq!(
        line_set(&lines[4..].join(" ")),
        line_set("0 1 2 3"),
        "{text}"
    );
    drop(c);
    env.finish();
}

fn create_with_fd3(env: &TestEnv, b: &Bundle, extra: &[&str], data: &str) -> (String, CmdOutput) {
    let (r, w) = pipe();
    b.write();
    let id = env.new_id();
    let mut args = vec!["create", "--bundle", b.dir().to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(&id);
    let mut cmd = env.rt().cmd(&args);
    pass_fd(&mut cmd, r.as_raw_fd(), 3);
    let out = env.rt().output(cmd);
    drop(r);
    let mut w = File::from(w);
    let _ = w.write_all(data.as_bytes());
    drop(w);
    (id, out)
}

#[test]
fn inherited_fd_does_not_reach_container() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("ls /proc/self/fd; echo end-of-list");
    let (id, out) = create_with_fd3(&env, &b, &[], "");
    out.ok();
    let c = env.container(&id, &out);
    c.start();
    let text = c.wait_stdout("end-of-list");
    let fds = text.split("end-of-list").next().unwrap();
    assert_eq!(
        line_set(fds),
        line_set("0 1 2 3"),
        "fd 3 of the runtime leaked: {text}"
    );
    drop(c);
    env.finish();
}

#[test]
fn preserve_fds_passes_extra_fd() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("ls /proc/self/fd; echo end-of-list; cat <&3; echo end-of-data");
    let (id, out) = create_with_fd3(&env, &b, &["--preserve-fds", "1"], "kakuri-preserved\n");
    out.ok();
    let c = env.container(&id, &out);
    c.start();
    let text = c.wait_stdout("end-of-data");
    let fds = text.split("end-of-list").next().unwrap();
    assert_eq!(line_set(fds), line_set("0 1 2 3 4"), "{text}");
    assert!(
        text.contains("end-of-list\nkakuri-preserved\nend-of-data"),
        "{text}"
    );
    drop(c);
    env.finish();
}

#[test]
fn terminal_via_console_socket() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_terminal(true);
    b.set_sh("tty; test -e /dev/console && echo console-exists; echo tty-done; sleep 60");
    let (c, master) = env.create_with_console(&b);
    c.start();
    let text = read_pty_until(&master, "tty-done", WAIT_TIMEOUT);
    assert!(text.contains("/dev/pts/0"), "tty is /dev/pts/0: {text:?}");
    assert!(text.contains("console-exists"), "{text:?}");
    assert!(text.contains("tty-done"), "{text:?}");
    // Nothing went to the create command's stdout.
    assert!(!c.stdout().contains("tty-done"));
    drop(c);
    env.finish();
}
