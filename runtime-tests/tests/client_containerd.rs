//! End-to-end tests of kakuri under containerd 1.6 and `ctr`: a private containerd (own root,
//! state, socket addresses and config in a temp dir, CRI plugin off) stopped by its pid at the
//! end; containers run with `ctr run --runtime io.containerd.runc.v2 --runc-binary <kakuri>`.
//! The image is an OCI archive loaded with `ctr images import`. ctr has no update, top, user
//! or hostname options; those cases live in the docker and podman suites.
//!
//! Run: `KAKURI_BIN=/usr/sbin/runc cargo test -p kakuri-runtime-tests --test client_containerd`
//! (as root, after `runtime-tests/clients/setup`). See docs/containerd.md.

mod clients_common;

use clients_common::{
    cap_mask, cgroup_dir, cgroup_dirs_named, check_head_of_yes, check_loop_into_head,
    check_masked_paths, check_scope_gone, check_scope_running, client_test, in_pty,
    pids_with_cmdline, read_trim, run_cmd, run_cmd_holding_stdin, status_field, wait_until,
    Harness, Kind, Output, OutputReady, CTR_IMAGE, HEAD_OF_YES, LOOP_INTO_HEAD, MASKED_PROBE,
    PIPE_WAIT,
};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Tests in this file; the last one to finish stops containerd and checks nothing is left.
const TESTS: usize = clients_common::count_tests(include_str!("client_containerd.rs"));
const T: Duration = Duration::from_secs(90);

fn test(name: &str, body: impl FnOnce(&Harness)) {
    client_test(Kind::Containerd, TESTS, name, body);
}

fn ctr(h: &Harness, args: &[&str]) -> Output {
    let mut c = h.ctr();
    c.args(args);
    run_cmd(c, None, T)
}

/// `ctr run <kakuri options> <opts> IMAGE ID <argv>`
fn run_cmdline(h: &Harness, id: &str, opts: &[&str], argv: &[&str]) -> Command {
    let mut c = h.ctr();
    c.arg("run")
        .args(h.ctr_runtime_args(id))
        .args(opts)
        .args([CTR_IMAGE, id])
        .args(argv);
    c
}

/// Printed on stdout and stderr by [`run_sh`]'s wrapper once the script is done.
const OUTPUT_END: &str = "kakuri-test-output-end";

/// `ctr run --rm ... IMAGE ID sh -c SCRIPT`. ctr 1.6 stops copying the output as soon as the
/// process exits, so the script runs in a subshell followed by an end marker on stdout and
/// stderr and a wait for the end of input, which the test sends once it has read both
/// markers. The markers are removed from the output; the exit code is the script's.
fn run_sh(h: &Harness, what: &str, opts: &[&str], script: &str) -> Output {
    let id = h.name(what);
    let mut all = vec!["--rm"];
    all.extend_from_slice(opts);
    let wrapped = format!(
        "( {script}\n); rc=$?; echo {OUTPUT_END}; echo {OUTPUT_END} >&2; cat >/dev/null; exit $rc"
    );
    let marker = format!("{OUTPUT_END}\n");
    let ready: OutputReady = Box::new(move |out, err| {
        String::from_utf8_lossy(out).contains(&marker)
            && String::from_utf8_lossy(err).contains(&marker)
    });
    let mut out = run_cmd_holding_stdin(
        run_cmdline(h, &id, &all, &["sh", "-c", &wrapped]),
        b"",
        ready,
        b"",
        T,
    );
    let marker = format!("{OUTPUT_END}\n");
    out.stdout = String::from_utf8_lossy(&out.stdout)
        .replace(&marker, "")
        .into_bytes();
    out.stderr = out.stderr.replace(&marker, "");
    out
}

/// A detached task, killed and deleted with its container on drop.
struct Task<'a> {
    h: &'a Harness,
    id: String,
}

const TRAPPING: &str = "trap 'echo got-term; exit 0' TERM; trap 'echo got-usr1; exit 42' USR1; \
                        echo started; while true; do sleep 1000 & wait; done";

impl<'a> Task<'a> {
    fn start(h: &'a Harness, what: &str, opts: &[&str], script: &str) -> Task<'a> {
        let id = h.name(what);
        let mut all = vec!["--detach"];
        all.extend_from_slice(opts);
        run_cmd(run_cmdline(h, &id, &all, &["sh", "-c", script]), None, T).ok();
        let t = Task { h, id };
        wait_until(30, "the task to run", || t.status() == "RUNNING");
        t
    }

    /// (pid, status) from `ctr task ls`.
    fn ls(&self) -> Option<(u32, String)> {
        let out = ctr(self.h, &["task", "ls"]);
        out.out().lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[0] == self.id).then(|| (f[1].parse().unwrap_or(0), f[2].to_string()))
        })
    }

    fn status(&self) -> String {
        self.ls().map(|(_, s)| s).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.ls().map(|(p, _)| p).expect("task listed")
    }

    fn exec_cmd(&self, opts: &[&str], argv: &[&str]) -> Command {
        let mut c = self.h.ctr();
        c.args(["task", "exec", "--exec-id", &self.h.name("exec")])
            .arg("--fifo-dir")
            .arg(self.h.dir.join("fifo"))
            .args(opts)
            .arg(&self.id)
            .args(argv);
        c
    }

    /// `sh -c SCRIPT; cat >/dev/null` in the task, with `data` on stdin, which stays open until
    /// stdout ends with `stdout_end` and stderr holds `stderr_has`: the process exits only after
    /// its output was read (ctr 1.6 stops copying an exec's output once the process exits).
    fn exec_read_out(
        &self,
        opts: &[&str],
        script: &str,
        data: &[u8],
        stdout_end: &'static str,
        stderr_has: &'static str,
    ) -> Output {
        let script = format!("{script}; rc=$?; cat >/dev/null; exit $rc");
        let ready: OutputReady = Box::new(move |out, err| {
            out.ends_with(stdout_end.as_bytes())
                && String::from_utf8_lossy(err).contains(stderr_has)
        });
        run_cmd_holding_stdin(
            self.exec_cmd(opts, &["sh", "-c", &script]),
            data,
            ready,
            b"",
            T,
        )
    }

    fn remove(&self) {
        let _ = ctr(self.h, &["task", "kill", "--signal", "SIGKILL", &self.id]);
        let _ = ctr(self.h, &["task", "delete", "--force", &self.id]);
        let _ = ctr(self.h, &["containers", "delete", &self.id]);
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}

#[test]
fn output_and_exit_code() {
    test("output_and_exit_code", |h| {
        let out = run_sh(
            h,
            "exit3",
            &[],
            "echo to-stdout; echo to-stderr >&2; exit 3",
        );
        out.expect_code(3);
        assert_eq!(out.out(), "to-stdout\n", "{}", out.describe());
        assert!(out.stderr.contains("to-stderr"), "{}", out.describe());
    });
}

#[test]
fn killed_exit_code() {
    test("killed_exit_code", |h| {
        let id = h.name("killed");
        let run = run_cmdline(h, &id, &["--rm"], &["sleep", "1000"]);
        let handle = std::thread::spawn(move || run_cmd(run, None, T));
        let t = Task { h, id };
        wait_until(30, "the task to run", || t.status() == "RUNNING");
        ctr(h, &["task", "kill", "--signal", "SIGKILL", &t.id]).ok();
        handle.join().expect("run thread").expect_code(137);
    });
}

#[test]
fn stdin_is_forwarded() {
    test("stdin_is_forwarded", |h| {
        let id = h.name("stdin");
        // ctr run does not close the task's stdin at end of input: read one line.
        let script = "read -r line; echo \"$line\" | tr a-z A-Z; echo done";
        let cmd = run_cmdline(h, &id, &["--rm"], &["sh", "-c", script]);
        let out = run_cmd(cmd, Some(b"hello kakuri\n"), T);
        assert_eq!(out.ok(), "HELLO KAKURI\ndone\n", "{}", out.describe());
    });
}

#[test]
fn exec_output_code_user_cwd_env_stdin() {
    test("exec_output_code_user_cwd_env_stdin", |h| {
        let t = Task::start(h, "exec", &["--env", "KAKURI_ENV=from-run"], TRAPPING);
        // ctr 1.6 cancels its copy of an exec's output as soon as the process has exited:
        // each command waits for the end of its input, which comes once its output was read.
        let out = t.exec_read_out(
            &[],
            "echo exec-out; echo exec-err >&2; (exit 5)",
            b"",
            "exec-out\n",
            "exec-err",
        );
        out.expect_code(5);
        assert_eq!(out.out(), "exec-out\n", "{}", out.describe());
        assert!(out.stderr.contains("exec-err"), "{}", out.describe());
        let out = t.exec_read_out(&["--user", "1000:2001"], "id -u; id -g", b"", "2001\n", "");
        assert_eq!(out.ok(), "1000\n2001\n", "{}", out.describe());
        let out = t.exec_read_out(&["--cwd", "/tmp"], "pwd", b"", "\n", "");
        assert_eq!(out.ok(), "/tmp\n", "{}", out.describe());
        let out = t.exec_read_out(&[], "echo $KAKURI_ENV", b"", "\n", "");
        assert_eq!(out.ok(), "from-run\n", "{}", out.describe());
        // head reads exactly the data, so the count comes before the end of input.
        let out = t.exec_read_out(&[], "head -c 100000 | wc -c", &[b'x'; 100_000], "\n", "");
        assert_eq!(out.ok().trim(), "100000", "{}", out.describe());
    });
}

#[test]
fn task_ps_lists_processes() {
    test("task_ps_lists_processes", |h| {
        let t = Task::start(h, "ps", &[], TRAPPING);
        let init = t.pid();
        wait_until(10, "sleep to start", || {
            let out = ctr(h, &["task", "ps", &t.id]).out();
            out.lines().skip(1).count() >= 2
        });
        let out = ctr(h, &["task", "ps", &t.id]);
        let pids: Vec<u32> = out
            .ok()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        assert!(pids.contains(&init), "init {init} not in {pids:?}");
        let comms: Vec<String> = pids
            .iter()
            .map(|p| read_trim(Path::new(&format!("/proc/{p}/comm"))))
            .collect();
        assert!(comms.iter().any(|c| c == "sleep"), "{comms:?}");
    });
}

#[test]
fn sigterm_trapped_then_delete_leaves_nothing() {
    test("sigterm_trapped_then_delete_leaves_nothing", |h| {
        let t = Task::start(h, "stop", &[], TRAPPING);
        let pid = t.pid();
        let state = h.runtime_state_dir().join(&h.cgroup_parent).join(&t.id);
        assert!(
            state.join("state.json").exists(),
            "no runtime state at {} (is the runtime under test in use?)",
            state.display()
        );
        assert_eq!(
            h.shim_binary_name(&t.id).as_deref(),
            Some(h.kakuri.to_string_lossy().as_ref()),
            "the shim does not run the runtime under test"
        );
        let memory = cgroup_dir(pid, "memory");
        let leaf = match &h.slice {
            Some(slice) => format!("{slice}/kakuri-{}.scope", t.id),
            None => format!("{}/{}", h.cgroup_parent, t.id),
        };
        assert!(
            memory.ends_with(&leaf),
            "{} is not .../{leaf}",
            memory.display()
        );
        let scope = check_scope_running(h, &t.id, pid);
        ctr(h, &["task", "kill", &t.id]).ok(); // SIGTERM by default
        wait_until(20, "the task to stop after SIGTERM", || {
            t.status() == "STOPPED"
        });
        let del = ctr(h, &["task", "delete", &t.id]);
        assert!(
            !del.stderr.contains("non-zero exit code"),
            "{}",
            del.describe()
        );
        ctr(h, &["containers", "delete", &t.id]).ok();
        assert!(!state.exists(), "runtime state {} left", state.display());
        assert!(!memory.exists(), "{} left", memory.display());
        let cgroups = cgroup_dirs_named(&h.cgroup_root, &t.id);
        assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
        check_scope_gone(scope);
        let procs = pids_with_cmdline(&format!("-id {}", t.id));
        assert!(procs.is_empty(), "shim or processes left: {procs:?}");
        let fifos: Vec<_> = fs::read_dir(h.dir.join("fifo"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        let mine: Vec<_> = fifos
            .iter()
            .filter(|p| p.to_string_lossy().contains(&t.id))
            .collect();
        assert!(mine.is_empty(), "fifos left: {mine:?}");
    });
}

#[test]
fn terminal_run() {
    test("terminal_run", |h| {
        let id = h.name("tty");
        // The shell waits for a line, typed once its output was read (ctr 1.6 stops copying
        // the output as soon as the process exits).
        let cmd = run_cmdline(
            h,
            &id,
            &["--rm", "--tty"],
            &["sh", "-c", "tty; test -t 0 && echo stdin-is-tty; read _"],
        );
        let ready: OutputReady =
            Box::new(|out, _| String::from_utf8_lossy(out).contains("stdin-is-tty"));
        let out = run_cmd_holding_stdin(in_pty(&cmd), b"", ready, b"\n", T);
        let text = out.tty_out();
        assert!(
            out.code == Some(0) && text.contains("/dev/pts/") && text.contains("stdin-is-tty"),
            "{}",
            out.describe()
        );
    });
}

#[test]
fn terminal_exec() {
    test("terminal_exec", |h| {
        let t = Task::start(h, "ttyexec", &[], TRAPPING);
        let mut c = h.ctr();
        c.args(["task", "exec", "--tty", "--exec-id", &h.name("e")])
            .arg("--fifo-dir")
            .arg(h.dir.join("fifo"))
            .args([&t.id, "sh", "-c", "tty; read _; exit 4"]);
        let ready: OutputReady =
            Box::new(|out, _| String::from_utf8_lossy(out).contains("/dev/pts/"));
        let out = run_cmd_holding_stdin(in_pty(&c), b"", ready, b"\n", T);
        assert!(out.tty_out().contains("/dev/pts/"), "{}", out.describe());
        assert_eq!(out.code, Some(4), "{}", out.describe());
    });
}

#[test]
fn pause_resume_freezer() {
    test("pause_resume_freezer", |h| {
        let t = Task::start(h, "pause", &[], TRAPPING);
        let freezer = cgroup_dir(t.pid(), "freezer").join("freezer.state");
        ctr(h, &["task", "pause", &t.id]).ok();
        assert_eq!(read_trim(&freezer), "FROZEN");
        assert_eq!(t.status(), "PAUSED");
        ctr(h, &["task", "resume", &t.id]).ok();
        assert_eq!(read_trim(&freezer), "THAWED");
        assert_eq!(t.status(), "RUNNING");
    });
}

#[test]
fn metrics_report_memory_limit_and_pids() {
    test("metrics_report_memory_limit_and_pids", |h| {
        let t = Task::start(h, "metrics", &["--memory-limit", "67108864"], TRAPPING);
        let out = ctr(h, &["task", "metrics", "--format", "json", &t.id]);
        let v: serde_json::Value = serde_json::from_str(&out.ok())
            .unwrap_or_else(|e| panic!("metrics are not JSON ({e}): {}", out.describe()));
        assert_eq!(v["memory"]["usage"]["limit"], 67108864, "{v}");
        assert!(
            v["memory"]["usage"]["usage"]
                .as_u64()
                .is_some_and(|u| u > 0),
            "{v}"
        );
        assert!(v["pids"]["current"].as_u64().is_some_and(|n| n >= 1), "{v}");
    });
}

/// ctr's default spec mounts no cgroup filesystem; with one added (`--mount type=cgroup`)
/// the limit is visible inside, and on the host in the container's cgroup.
#[test]
fn memory_limit_and_cpu_shares() {
    test("memory_limit_and_cpu_shares", |h| {
        let out = run_sh(
            h,
            "limits",
            &[
                "--memory-limit",
                "67108864",
                "--mount",
                "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:nodev:noexec",
            ],
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        );
        assert_eq!(out.ok(), "67108864\n", "{}", out.describe());
        let t = Task::start(
            h,
            "shares",
            &["--cpu-shares", "512", "--memory-limit", "100663296"],
            TRAPPING,
        );
        let pid = t.pid();
        assert_eq!(read_trim(&cgroup_dir(pid, "cpu").join("cpu.shares")), "512");
        assert_eq!(
            read_trim(&cgroup_dir(pid, "memory").join("memory.limit_in_bytes")),
            "100663296"
        );
    });
}

#[test]
fn env_and_uid() {
    test("env_and_uid", |h| {
        let out = run_sh(
            h,
            "env",
            &["--env", "KAKURI_ENV=from-cli"],
            "echo $KAKURI_ENV; id -u",
        );
        assert_eq!(out.ok(), "from-cli\n0\n", "{}", out.describe());
    });
}

#[test]
fn read_only_rootfs_and_tmpfs() {
    test("read_only_rootfs_and_tmpfs", |h| {
        let out = run_sh(
            h,
            "ro",
            &["--read-only", "--mount", "type=tmpfs,src=tmpfs,dst=/scratch,options=rw:size=1m"],
            "touch /rootfs-file 2>&1; touch /scratch/f && echo tmpfs-writable; grep ' /scratch ' /proc/mounts",
        );
        let text = out.ok();
        assert!(text.contains("Read-only file system"), "{}", out.describe());
        assert!(text.contains("tmpfs-writable"), "{}", out.describe());
        assert!(
            text.contains("tmpfs /scratch tmpfs rw"),
            "{}",
            out.describe()
        );
    });
}

#[test]
fn bind_mounts_rw_ro() {
    test("bind_mounts_rw_ro", |h| {
        let rw = h.scratch("rw");
        let ro = h.scratch("ro");
        fs::write(ro.join("host-file"), "from-host\n").expect("write host file");
        let rw_opt = format!("type=bind,src={},dst=/rw,options=rbind:rw", rw.display());
        let ro_opt = format!("type=bind,src={},dst=/ro,options=rbind:ro", ro.display());
        let out = run_sh(
            h,
            "bind",
            &["--mount", &rw_opt, "--mount", &ro_opt],
            "cat /ro/host-file; echo written > /rw/new; echo x > /ro/new; echo ro-rc=$?",
        );
        let text = out.ok() + &out.stderr;
        assert!(text.contains("from-host"), "{}", out.describe());
        assert!(text.contains("Read-only file system"), "{}", out.describe());
        assert!(!text.contains("ro-rc=0"), "{}", out.describe());
        assert_eq!(
            fs::read_to_string(rw.join("new")).expect("rw bind write"),
            "written\n"
        );
        assert!(!ro.join("new").exists());
    });
}

#[test]
fn capabilities_add_drop() {
    test("capabilities_add_drop", |h| {
        const CHOWN: u64 = 1;
        const SYS_ADMIN: u64 = 1 << 21;
        let out = run_sh(
            h,
            "caps",
            &["--cap-drop", "CAP_CHOWN", "--cap-add", "CAP_SYS_ADMIN"],
            "cat /proc/self/status",
        );
        let text = out.ok();
        for field in ["CapEff:", "CapPrm:", "CapBnd:"] {
            let m = cap_mask(&text, field);
            assert!(m & CHOWN == 0 && m & SYS_ADMIN != 0, "{field} {m:x}");
        }
        let default = run_sh(h, "caps", &[], "cat /proc/self/status").ok();
        let m = cap_mask(&default, "CapEff:");
        assert!(m & CHOWN != 0 && m & SYS_ADMIN == 0, "default CapEff {m:x}");
    });
}

#[test]
fn kill_with_signal() {
    test("kill_with_signal", |h| {
        let id = h.name("usr1");
        let run = run_cmdline(h, &id, &["--rm"], &["sh", "-c", TRAPPING]);
        let handle = std::thread::spawn(move || run_cmd(run, None, T));
        let t = Task { h, id };
        wait_until(30, "the task to run", || t.status() == "RUNNING");
        wait_until(10, "the trap to be set", || {
            ctr(h, &["task", "ps", &t.id]).out().lines().count() >= 3
        });
        ctr(h, &["task", "kill", "--signal", "SIGUSR1", &t.id]).ok();
        let out = handle.join().expect("run thread");
        out.expect_code(42);
        assert!(out.out().contains("got-usr1"), "{}", out.describe());
    });
}

#[test]
fn restart_gets_new_pid() {
    test("restart_gets_new_pid", |h| {
        let t = Task::start(h, "restart", &[], TRAPPING);
        let before = t.pid();
        ctr(h, &["task", "kill", "--signal", "SIGKILL", &t.id]).ok();
        wait_until(20, "the task to stop", || t.status() == "STOPPED");
        let _ = ctr(h, &["task", "delete", &t.id]);
        let mut start = h.ctr();
        start
            .args(["task", "start", "--detach"])
            .arg("--fifo-dir")
            .arg(h.dir.join("fifo"))
            .arg(&t.id);
        run_cmd(start, None, T).ok();
        wait_until(30, "the task to run again", || t.status() == "RUNNING");
        let after = t.pid();
        assert_ne!(before, after);
        assert!(Path::new(&format!("/proc/{after}")).exists());
    });
}

#[test]
fn seccomp_default_profile_and_off() {
    test("seccomp_default_profile_and_off", |h| {
        let on = run_sh(h, "seccomp", &["--seccomp"], "cat /proc/self/status").ok();
        assert_eq!(status_field(&on, "Seccomp:"), "2");
        let off = run_sh(h, "seccomp", &[], "cat /proc/self/status").ok();
        assert_eq!(status_field(&off, "Seccomp:"), "0");
    });
}

#[test]
fn no_new_privileges() {
    test("no_new_privileges", |h| {
        let set = run_sh(h, "nnp", &[], "cat /proc/self/status").ok();
        assert_eq!(
            status_field(&set, "NoNewPrivs:"),
            "1",
            "ctr's default spec sets it"
        );
        let off = run_sh(h, "nnp", &["--allow-new-privs"], "cat /proc/self/status").ok();
        assert_eq!(status_field(&off, "NoNewPrivs:"), "0");
    });
}

#[test]
fn masked_and_readonly_paths() {
    test("masked_and_readonly_paths", |h| {
        check_masked_paths(&run_sh(h, "masked", &[], MASKED_PROBE));
    });
}

/// ctr reports a failed start as its own error (exit 1), carrying the runtime's message.
#[test]
fn missing_and_non_executable_binary() {
    test("missing_and_non_executable_binary", |h| {
        let id = h.name("missing");
        let out = run_cmd(run_cmdline(h, &id, &["--rm"], &["/nonexistent"]), None, T);
        out.expect_failure_with("no such file or directory");
        assert!(out.stderr.contains("/nonexistent"), "{}", out.describe());
        let _ = ctr(h, &["containers", "delete", &id]);
        let id = h.name("notexec");
        let out = run_cmd(run_cmdline(h, &id, &["--rm"], &["/notexec"]), None, T);
        out.expect_failure_with("permission denied");
        let _ = ctr(h, &["containers", "delete", &id]);
    });
}

/// `ctr run --rm ... IMAGE ID sh -c SCRIPT` within [`PIPE_WAIT`], holding stdin open until
/// `stdout_len` bytes are out (the script then waits for the end of its input before it exits:
/// ctr 1.6 stops copying the output once the process has exited); a task still running when
/// the wait expires is killed and removed before the checks fail.
fn run_sh_bounded(h: &Harness, what: &str, script: &str, stdout_len: usize) -> Output {
    let id = h.name(what);
    let script = format!("{script}; rc=$?; cat >/dev/null; exit $rc");
    let ready: OutputReady = Box::new(move |out, _| out.len() >= stdout_len);
    let out = run_cmd_holding_stdin(
        run_cmdline(h, &id, &["--rm"], &["sh", "-c", &script]),
        b"",
        ready,
        b"",
        PIPE_WAIT,
    );
    if out.timed_out {
        Task { h, id }.remove();
    }
    out
}

#[test]
fn ten_megabytes_of_output() {
    test("ten_megabytes_of_output", |h| {
        check_head_of_yes(&run_sh_bounded(
            h,
            "head-of-yes",
            HEAD_OF_YES,
            10 * 1024 * 1024,
        ));
    });
}

#[test]
fn endless_writer_ends_at_head() {
    test("endless_writer_ends_at_head", |h| {
        check_loop_into_head(&run_sh_bounded(h, "loop-into-head", LOOP_INTO_HEAD, 2));
    });
}

/// ctr's `--privileged` grants the capabilities of the calling process, so it works even where
/// the bounding set is not full.
#[test]
fn privileged() {
    test("privileged", |h| {
        let host = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let out = run_sh(h, "priv", &["--privileged"], "cat /proc/self/status");
        let text = out.ok();
        assert_eq!(cap_mask(&text, "CapEff:"), cap_mask(&host, "CapBnd:"));
    });
}

/// The configuration docs/containerd.md gives for CRI (a `kakuri` runtime handler through the
/// runc v2 shim's BinaryName option) is accepted by this containerd and keeps the binary path.
#[test]
fn cri_config_binary_name_is_parsed() {
    test("cri_config_binary_name_is_parsed", |h| {
        let tpl = clients_common::clients_dir().join("templates/containerd-cri.toml");
        let text = fs::read_to_string(&tpl).expect("CRI template");
        let cfg = h.dir.join("cri.toml");
        let text = text
            .replace("@DIR@", &h.dir.to_string_lossy())
            .replace("@KAKURI@", &h.kakuri.to_string_lossy())
            .replace(
                "@SYSTEMD_CGROUP@",
                if h.slice.is_some() { "true" } else { "false" },
            );
        fs::write(&cfg, text).expect("write CRI config");
        let mut c = Command::new("containerd");
        c.arg("--config").arg(&cfg).args(["config", "dump"]);
        let out = run_cmd(c, None, T);
        let dump = out.ok();
        let section = dump
            .split("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kakuri.options]")
            .nth(1)
            .unwrap_or_else(|| panic!("no kakuri runtime options in the dump:\n{dump}"));
        let binary = format!("BinaryName = \"{}\"", h.kakuri.display());
        assert!(section.contains(&binary), "{binary} missing:\n{section}");
        let systemd = format!("SystemdCgroup = {}", h.slice.is_some());
        assert!(section.contains(&systemd), "{systemd} missing:\n{section}");
        assert!(dump.contains("runtime_type = \"io.containerd.runc.v2\""));
    });
}
