//! `checkpoint` and `restore` through CRIU.
//!
//! Where CRIU cannot work (`criu check` fails: on this project's 6.18 host CRIU 3.17 cannot read
//! the kernel's vDSO), `checkpoint` must fail with CRIU's own reason; that is
//! `checkpoint_fails_with_crius_reason_where_criu_cannot_work`. The round trips need a kernel
//! CRIU 3.17 works on: `runtime-tests/vm/run-criu-tests` runs this file in a Debian 6.1 guest.
//! Each test that needs CRIU prints `SKIP` where `criu check` fails.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kakuri_runtime_tests::*;

/// Prints SKIP and returns true when CRIU cannot work on this kernel.
fn skip_without_criu(test: &str) -> bool {
    match criu_unusable() {
        Some(why) => {
            eprintln!("SKIP {test}: {}", why.lines().next().unwrap_or(""));
            true
        }
        None => false,
    }
}

fn is_runc() -> bool {
    runtime_bin().file_name().is_some_and(|n| n == "runc")
}

/// A container counting into /tmp/count (one number a line, appended) every 50 ms.
fn counter_bundle(env: &TestEnv) -> Bundle {
    let mut b = env.bundle();
    b.set_sh("i=0; while :; do i=$((i+1)); echo $i >> /tmp/count; sleep 0.05; done");
    b
}

fn counts(b: &Bundle) -> Vec<u64> {
    std::fs::read_to_string(b.rootfs().join("tmp/count"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn wait_counts(b: &Bundle, more_than: usize) -> Vec<u64> {
    wait_for(
        &format!("more than {more_than} counts"),
        WAIT_TIMEOUT * 4,
        || {
            let c = counts(b);
            (c.len() > more_than).then_some(c)
        },
    )
}

/// `run -d` of `b` under a fresh id with the container's stdio on /dev/null: CRIU can only
/// dump files it finds in the container's mounts, and the harness's output files are not
/// (clients such as podman give pipes, which restore passes back through inherit_fd).
fn run_detached<'a>(env: &'a TestEnv, b: &Bundle) -> Container<'a> {
    let id = env.new_id();
    b.write();
    let dir = b.dir().to_str().unwrap();
    let log = env.dir().join(format!("run-{id}.log"));
    let log_s = log.to_str().unwrap();
    let mut cmd = env
        .rt()
        .cmd(&["--log", log_s, "run", "--detach", "--bundle", dir, &id]);
    // All of it on /dev/null: a pipe would stay open in the container, and a file outside
    // it cannot be dumped. The runtime's errors are in its --log instead.
    let err_path = log.clone();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let status = wait_for("run --detach to return", CMD_TIMEOUT, || {
        child.try_wait().unwrap()
    });
    let out = CmdOutput {
        cmdline: format!("run --detach --bundle {dir} {id}"),
        code: status.code(),
        signal: None,
        stdout: String::new(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        stdout_path: PathBuf::from("/dev/null"),
        stderr_path: err_path.clone(),
    };
    let c = env.container(&id, &out);
    out.ok();
    c
}

fn restore(env: &TestEnv, b: &Bundle, id: &str, img: &Path, extra: &[&str]) -> CmdOutput {
    let mut args = vec![
        "restore",
        "--detach",
        "--image-path",
        img.to_str().unwrap(),
        "--bundle",
        b.dir().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(id);
    env.run(&args)
}

/// The restored init is in the container's cgroup.
fn assert_in_own_cgroup(c: &Container<'_>) {
    let pid = c.pid();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.contains(c.id()),
        "restored init {pid} is not in the container's cgroup:\n{cg}"
    );
}

#[test]
fn checkpoint_fails_with_crius_reason_where_criu_cannot_work() {
    let Some(why) = criu_unusable() else {
        eprintln!("SKIP checkpoint_fails_with_crius_reason_where_criu_cannot_work: criu works on this kernel (the round trips below run instead)");
        return;
    };
    let env = TestEnv::new();
    let b = counter_bundle(&env);
    let c = run_detached(&env, &b);
    wait_counts(&b, 1);
    let img = env.dir().join("img");
    let out = c.cmd("checkpoint", &["--image-path", img.to_str().unwrap()]);
    out.fails_with("criu failed: type DUMP");
    // CRIU's own reason: the first error line `criu check` gives appears in the error.
    if !is_runc() {
        let reason = why
            .lines()
            .find_map(|l| l.split_once("): ").map(|(_, r)| r.trim().to_string()))
            .unwrap_or_else(|| panic!("no error line in criu check's output: {why}"));
        assert!(
            out.stderr_has(&reason),
            "checkpoint error lacks CRIU's reason {reason:?}: {out}"
        );
    }
    // Nothing was lost: the container still runs.
    assert_eq!(c.status(), "running");
    drop(c);
    env.finish();
}

#[test]
fn checkpoint_options_are_checked() {
    let env = TestEnv::new();
    let b = counter_bundle(&env);
    let img = env.dir().join("img");
    let img = img.to_str().unwrap();
    // Not a container.
    let out = env.run(&["checkpoint", "--image-path", img, "kt-no-such-ctr"]);
    assert_eq!(out.code, Some(1), "{out}");
    // A created container cannot be checkpointed.
    let c = env.create(&b);
    c.cmd("checkpoint", &["--image-path", img])
        .fails_with("Container cannot be checkpointed in created state");
    c.start();
    c.cmd(
        "checkpoint",
        &["--image-path", img, "--manage-cgroups-mode", "bogus"],
    )
    .fails_with("Invalid manage cgroups mode");
    c.cmd("checkpoint", &["--image-path", img, "--empty-ns", "ipc"])
        .fails_with("namespace \"ipc\" is not supported");
    c.cmd(
        "checkpoint",
        &["--image-path", img, "--parent-path", "/abs"],
    )
    .fails_with("--parent-path must be relative");
    // A flag given twice counts once (podman 4.3 passes --leave-running twice): the same
    // error as above, not a usage error.
    c.cmd(
        "checkpoint",
        &[
            "--image-path",
            img,
            "--leave-running",
            "--leave-running",
            "--parent-path",
            "/abs",
        ],
    )
    .fails_with("--parent-path must be relative");
    c.cmd(
        "checkpoint",
        &["--image-path", img, "--parent-path", "missing"],
    )
    .fails_with("invalid --parent-path");
    c.cmd(
        "checkpoint",
        &["--image-path", img, "--page-server", "nowhere"],
    )
    .fails_with("Use --page-server ADDRESS:PORT");
    if !is_runc() {
        // Where CRIU cannot work, --lazy-pages fails naming the option (CRIU's feature check
        // fails). Where it works, lazy_pages_through_a_page_server runs it.
        if criu_unusable().is_some() {
            c.cmd("checkpoint", &["--image-path", img, "--lazy-pages"])
                .fails_with("--lazy-pages");
        }
        // runc ignores a status fd without lazy pages; kakuri says why it is refused.
        c.cmd("checkpoint", &["--image-path", img, "--status-fd", "2"])
            .fails_with("--status-fd is only used with --lazy-pages");
    }
    assert_eq!(c.status(), "running");
    // containerd's go-runc spells it `-no-subreaper` (one dash), as runc's flag library takes
    // it: restore goes past the options (and fails on the missing images).
    let empty = env.dir().join("empty-img");
    let out = env.run(&[
        "restore",
        "-no-subreaper",
        "--detach",
        "--image-path",
        empty.to_str().unwrap(),
        "--bundle",
        b.dir().to_str().unwrap(),
        "kt-no-such-ctr",
    ]);
    assert_ne!(out.code, Some(0), "{out}");
    assert!(
        !out.stderr_has("unexpected argument") && !out.stderr_has("not defined"),
        "-no-subreaper was not taken: {out}"
    );
    if !is_runc() {
        out.fails_with("descriptors.json");
    }
    // restore of an id that exists.
    let out = restore(&env, &b, c.id(), Path::new(img), &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(c.status(), "running");
    drop(c);
    env.finish();
}

#[test]
fn counter_continues_after_checkpoint_and_restore() {
    if skip_without_criu("counter_continues_after_checkpoint_and_restore") {
        return;
    }
    let env = TestEnv::new();
    let b = counter_bundle(&env);
    let c = run_detached(&env, &b);
    wait_counts(&b, 3);
    let img = env.dir().join("img");
    c.cmd("checkpoint", &["--image-path", img.to_str().unwrap()])
        .ok();
    // Without --leave-running the container is gone, as with runc.
    assert_ne!(c.cmd("state", &[]).code, Some(0), "container still exists");
    let before = counts(&b);
    let last = *before.last().unwrap();
    let pid_file = env.dir().join("restored.pid");
    restore(
        &env,
        &b,
        c.id(),
        &img,
        &["--pid-file", pid_file.to_str().unwrap()],
    )
    .ok();
    assert_eq!(c.status(), "running");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        c.pid().to_string(),
        "--pid-file of restore"
    );
    assert_in_own_cgroup(&c);
    let after = wait_counts(&b, before.len() + 3);
    // One run of numbers: it went on from `last`, it did not start again.
    let expect: Vec<u64> = (1..=after.len() as u64).collect();
    assert_eq!(after, expect, "counting did not continue from {last}");
    c.delete(true).ok();
    drop(c);
    env.finish();
}

#[test]
fn leave_running_then_restore_from_the_images() {
    if skip_without_criu("leave_running_then_restore_from_the_images") {
        return;
    }
    let env = TestEnv::new();
    let b = counter_bundle(&env);
    let c = run_detached(&env, &b);
    wait_counts(&b, 3);
    let img = env.dir().join("img");
    let pid = c.pid();
    c.cmd(
        "checkpoint",
        &["--leave-running", "--image-path", img.to_str().unwrap()],
    )
    .ok();
    assert_eq!(c.status(), "running");
    assert_eq!(c.pid(), pid);
    let at = counts(&b).len();
    // Still counting.
    wait_counts(&b, at + 3);
    c.delete(true).ok();
    let before = counts(&b);
    let max = *before.last().unwrap();
    restore(&env, &b, c.id(), &img, &[]).ok();
    let after = wait_counts(&b, before.len() + 2);
    let first = after[before.len()];
    // The restored counter goes on from the value it had when the images were made: a value
    // already written, not 1 and not past what the live one reached.
    assert!(
        first > 1 && first <= max && before.contains(&(first - 1)),
        "restored counter started at {first} (live one reached {max})"
    );
    c.delete(true).ok();
    drop(c);
    env.finish();
}

#[test]
fn pre_dump_then_dump_with_parent_path_restores() {
    if skip_without_criu("pre_dump_then_dump_with_parent_path_restores") {
        return;
    }
    let env = TestEnv::new();
    let b = counter_bundle(&env);
    let c = run_detached(&env, &b);
    wait_counts(&b, 3);
    let base = env.dir().join("img");
    let pre = base.join("pre");
    let fin = base.join("final");
    c.cmd(
        "checkpoint",
        &["--pre-dump", "--image-path", pre.to_str().unwrap()],
    )
    .ok();
    // A pre-dump leaves the container running.
    assert_eq!(c.status(), "running");
    let at = counts(&b).len();
    wait_counts(&b, at + 2);
    c.cmd(
        "checkpoint",
        &[
            "--image-path",
            fin.to_str().unwrap(),
            "--parent-path",
            "../pre",
        ],
    )
    .ok();
    assert!(
        fin.join("parent").exists(),
        "the final dump has no parent link to the pre-dump"
    );
    let before = counts(&b);
    restore(&env, &b, c.id(), &fin, &[]).ok();
    let after = wait_counts(&b, before.len() + 3);
    let expect: Vec<u64> = (1..=after.len() as u64).collect();
    assert_eq!(after, expect, "counting did not continue after restore");
    c.delete(true).ok();
    drop(c);
    env.finish();
}

/// A network namespace of its own (`ip netns`), removed on drop.
struct NetNs(String);

impl NetNs {
    fn new(name: &str) -> NetNs {
        let st = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        let ns = NetNs(name.to_string());
        let st = Command::new("ip")
            .args(["-n", name, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(st.success(), "ip -n {name} link set lo up");
        ns
    }
    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.0)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn tcp_connection_survives_with_tcp_established() {
    if skip_without_criu("tcp_connection_survives_with_tcp_established") {
        return;
    }
    let env = TestEnv::new();
    let ns = NetNs::new(env.id());
    let mut b = env.bundle();
    b.remove_namespace("network");
    b.add_namespace("network", Some(&ns.path()));
    // An echo server: one connection, each line sent back.
    b.set_sh("exec nc -l -p 5000 -e cat");
    let c = run_detached(&env, &b);
    // The client: in the same network namespace, outside the container.
    let mut client = wait_for("the server to accept", WAIT_TIMEOUT, || {
        let mut ch = Command::new("ip")
            .args(["netns", "exec", &ns.0, "busybox", "nc", "127.0.0.1", "5000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = ch.stdin.take().unwrap();
        let mut out = BufReader::new(ch.stdout.take().unwrap());
        if stdin.write_all(b"one\n").is_err() {
            let _ = ch.kill();
            let _ = ch.wait();
            return None;
        }
        let mut line = String::new();
        match out.read_line(&mut line) {
            Ok(n) if n > 0 && line == "one\n" => Some((ch, stdin, out)),
            _ => {
                let _ = ch.kill();
                let _ = ch.wait();
                None
            }
        }
    });
    let img = env.dir().join("img");
    c.cmd(
        "checkpoint",
        &["--tcp-established", "--image-path", img.to_str().unwrap()],
    )
    .ok();
    restore(&env, &b, c.id(), &img, &["--tcp-established"]).ok();
    assert_eq!(c.status(), "running");
    // The same connection still answers.
    client.1.write_all(b"two\n").unwrap();
    let mut line = String::new();
    client.2.read_line(&mut line).unwrap();
    assert_eq!(
        line, "two\n",
        "the restored server did not answer on the old connection"
    );
    drop(client.1);
    let _ = client.0.kill();
    let _ = client.0.wait();
    c.delete(true).ok();
    drop(c);
    drop(ns);
    env.finish();
}

/// A config asking for an Intel RDT (resctrl) group cannot be restored: CRIU's images do not
/// describe the group. kakuri refuses it by name before it touches anything.
#[test]
fn restore_refuses_intel_rdt_by_name() {
    if is_runc() {
        eprintln!("SKIP restore_refuses_intel_rdt_by_name: kakuri's own refusal");
        return;
    }
    let env = TestEnv::new();
    let mut b = counter_bundle(&env);
    b.set(
        "/linux/intelRdt",
        serde_json::json!({"closID": "kakuri-test"}),
    );
    b.write();
    let img = env.dir().join("img");
    std::fs::create_dir_all(&img).unwrap();
    std::fs::write(
        img.join("descriptors.json"),
        "[\"/dev/null\",\"/dev/null\",\"/dev/null\"]",
    )
    .unwrap();
    let id = env.new_id();
    restore(&env, &b, &id, &img, &[]).fails_with("linux.intelRdt");
    // Nothing was made.
    assert_ne!(
        env.run(&["state", &id]).code,
        Some(0),
        "state left for {id}"
    );
    env.finish();
}

/// CRIU's lazy migration, as runc's integration test does it: `checkpoint --lazy-pages
/// --page-server 127.0.0.1:PORT --status-fd W` dumps everything but the memory pages and
/// serves those; `\0` on W says it is ready; `criu lazy-pages` connects to that page server,
/// and `restore --lazy-pages` (another id, so another cgroup) gets its pages from
/// that daemon through userfaultfd. The checkpoint ends once every page went over; the
/// restored counter goes on from where the original stopped.
#[test]
fn lazy_pages_through_a_page_server() {
    if skip_without_criu("lazy_pages_through_a_page_server") {
        return;
    }
    let env = TestEnv::new();
    let b = counter_bundle(&env);
    let c = run_detached(&env, &b);
    wait_counts(&b, 3);
    let img = env.dir().join("img");
    let work = env.dir().join("work");
    std::fs::create_dir_all(&img).unwrap();
    // Where the kernel's userfaultfd lacks what CRIU needs, the option fails by name with
    // CRIU's reason, and the container runs on.
    let probe = Command::new("criu")
        .args(["check", "--feature", "uffd-noncoop"])
        .output()
        .unwrap();
    if !probe.status.success() {
        let why = format!(
            "{}{}",
            String::from_utf8_lossy(&probe.stdout),
            String::from_utf8_lossy(&probe.stderr)
        );
        let out = c.cmd(
            "checkpoint",
            &[
                "--lazy-pages",
                "--page-server",
                "127.0.0.1:27277",
                "--image-path",
                img.to_str().unwrap(),
            ],
        );
        assert_ne!(out.code, Some(0), "{out}");
        if !is_runc() {
            out.fails_with("--lazy-pages: CRIU reports no lazy-pages support");
        }
        assert_eq!(c.status(), "running");
        eprintln!("SKIP lazy_pages_through_a_page_server round trip: criu check --feature uffd-noncoop: {why}");
        drop(c);
        env.finish();
        return;
    }
    let port = 20000 + (std::process::id() % 20000);
    let (r, w) = nix::unistd::pipe().unwrap();
    use std::os::fd::AsRawFd;
    let w_fd = w.as_raw_fd().to_string();
    let ps = format!("127.0.0.1:{port}");
    let ckpt_log = env.dir().join("checkpoint-lazy.log");
    let mut cmd = env.rt().cmd(&[
        "checkpoint",
        "--lazy-pages",
        "--page-server",
        &ps,
        "--status-fd",
        &w_fd,
        "--work-path",
        work.to_str().unwrap(),
        "--image-path",
        img.to_str().unwrap(),
        c.id(),
    ]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&ckpt_log).unwrap());
    let mut ckpt = cmd.spawn().unwrap();
    drop(w);
    // The page server is ready: one \0 on the pipe (EOF first means the checkpoint failed).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut byte = [1u8; 1];
        let mut rf = std::fs::File::from(r);
        let n = std::io::Read::read(&mut rf, &mut byte).unwrap_or(0);
        let _ = tx.send((n, byte));
    });
    let Ok((n, byte)) = rx.recv_timeout(WAIT_TIMEOUT * 8) else {
        let _ = ckpt.kill();
        let _ = ckpt.wait();
        panic!("no word on --status-fd from checkpoint --lazy-pages");
    };
    if n == 0 {
        let _ = ckpt.wait();
        let log = std::fs::read_to_string(&ckpt_log).unwrap_or_default();
        panic!("checkpoint --lazy-pages ended without signalling --status-fd: {log}");
    }
    assert_eq!(byte[0], 0, "--status-fd got {byte:?}, not \\0");
    assert!(img.join("inventory.img").exists(), "no inventory.img");
    let before = counts(&b);
    let lazy_log = env.dir().join("lazy-pages.log");
    let mut lazy = Command::new("criu")
        .args(["lazy-pages", "--page-server", "--address", "127.0.0.1"])
        .args(["--port", &port.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&lazy_log).unwrap())
        .spawn()
        .unwrap();
    let id2 = env.new_id();
    let out = restore(&env, &b, &id2, &img, &["--lazy-pages"]);
    let restored = env.container(&id2, &out);
    if out.code != Some(0) {
        // Nothing will fetch the pages: stop the page server and the daemon.
        let _ = ckpt.kill();
        let _ = lazy.kill();
        let _ = ckpt.wait();
        let _ = lazy.wait();
        panic!(
            "restore --lazy-pages failed: {out}\ncriu lazy-pages: {}",
            std::fs::read_to_string(&lazy_log).unwrap_or_default()
        );
    }
    let ckpt_status = wait_for("the lazy checkpoint to end", WAIT_TIMEOUT * 8, || {
        ckpt.try_wait().unwrap()
    });
    let lazy_status = wait_for("criu lazy-pages to end", WAIT_TIMEOUT * 8, || {
        lazy.try_wait().unwrap()
    });
    out.ok();
    assert!(
        ckpt_status.success(),
        "checkpoint --lazy-pages: {ckpt_status}: {}",
        std::fs::read_to_string(&ckpt_log).unwrap_or_default()
    );
    assert!(
        lazy_status.success(),
        "criu lazy-pages: {lazy_status}: {}",
        std::fs::read_to_string(&lazy_log).unwrap_or_default()
    );
    // The original is gone (a checkpoint without --leave-running), the copy runs.
    assert_ne!(c.cmd("state", &[]).code, Some(0), "original still exists");
    assert_eq!(restored.status(), "running");
    let after = wait_counts(&b, before.len() + 3);
    let expect: Vec<u64> = (1..=after.len() as u64).collect();
    assert_eq!(
        after, expect,
        "counting did not go on after the lazy restore"
    );
    restored.delete(true).ok();
    drop(restored);
    drop(c);
    env.finish();
}
