//! Scenarios shared by the docker and podman suites: both CLIs take the same verbs and options
//! for everything tested here. Each function is one test; `h.kind` picks the few differences.

use super::{
    cap_mask, cgroup_dir, cgroup_dirs_named, check_head_of_yes, check_loop_into_head,
    check_masked_paths, check_scope_gone, check_scope_running, in_pty, pids_with_cmdline,
    read_trim, run_cmd, status_field, wait_until, Harness, Kind, Output, HEAD_OF_YES, IMAGE,
    LOOP_INTO_HEAD, MASKED_PROBE, PIPE_WAIT,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(90);

fn exec(cmd: Command) -> Output {
    run_cmd(cmd, None, T)
}

/// `<cli> run --rm <opts> IMAGE sh -c SCRIPT`
fn run_sh(h: &Harness, opts: &[&str], script: &str) -> Output {
    let mut args = vec!["--rm"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
    exec(h.cli_run(&args))
}

/// A detached container, removed (forcibly) when dropped.
struct Detached<'a> {
    h: &'a Harness,
    name: String,
}

impl<'a> Detached<'a> {
    fn start(h: &'a Harness, what: &str, opts: &[&str], script: &str) -> Detached<'a> {
        let name = h.name(what);
        let mut args = vec!["-d", "--name", name.as_str()];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        exec(h.cli_run(&args)).ok();
        let d = Detached { h, name };
        wait_until(30, "the container to run", || {
            d.inspect("{{.State.Running}}") == "true"
        });
        d
    }

    /// `<cli> <verb> OPTS NAME ARGS`
    fn on(&self, verb: &str, opts: &[&str], args: &[&str]) -> Output {
        let mut c = self.h.cli();
        c.arg(verb).args(opts).arg(&self.name).args(args);
        exec(c)
    }

    fn inspect(&self, format: &str) -> String {
        let mut c = self.h.cli();
        c.args(["inspect", "--format", format, &self.name]);
        let out = exec(c);
        if out.code != Some(0) {
            return String::new();
        }
        out.out().trim().to_string()
    }

    fn pid(&self) -> u32 {
        let p = self.inspect("{{.State.Pid}}");
        p.parse()
            .unwrap_or_else(|_| panic!("container {} has no pid ({p:?})", self.name))
    }

    fn id(&self) -> String {
        let id = self.inspect("{{.Id}}");
        assert!(!id.is_empty(), "container {} has no id", self.name);
        id
    }

    fn logs(&self) -> String {
        let out = self.on("logs", &[], &[]);
        format!("{}{}", out.out(), out.stderr)
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        let mut c = self.h.cli();
        c.args(["rm", "-f", &self.name]);
        let _ = run_cmd(c, None, T);
    }
}

/// A long-running container whose init traps SIGTERM (prints got-term, exits 0) and SIGUSR1
/// (prints got-usr1, exits 42); `sleep & wait` lets the traps run at once.
const TRAPPING: &str = "trap 'echo got-term; exit 0' TERM; trap 'echo got-usr1; exit 42' USR1; \
                        echo started; while true; do sleep 1000 & wait; done";

fn find_dir_named(root: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let entries = fs::read_dir(root).ok()?;
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if e.file_name().to_string_lossy() == name {
            return Some(e.path());
        }
        if depth > 0 {
            if let Some(p) = find_dir_named(&e.path(), name, depth - 1) {
                return Some(p);
            }
        }
    }
    None
}

// ------------------------------------------------------------------------------- scenarios

pub fn output_and_exit_code(h: &Harness) {
    let out = run_sh(h, &[], "echo to-stdout; echo to-stderr >&2; exit 3");
    out.expect_code(3);
    assert_eq!(out.out(), "to-stdout\n", "{}", out.describe());
    assert!(out.stderr.contains("to-stderr"), "{}", out.describe());
    run_sh(h, &[], "exit 0").expect_code(0);
}

pub fn killed_exit_code(h: &Harness) {
    let name = h.name("killed");
    let mut run = h.cli_run(&["--name", &name, IMAGE, "sleep", "1000"]);
    run.stdin(std::process::Stdio::null());
    let handle = std::thread::spawn(move || run_cmd(run, None, T));
    let probe = Detached {
        h,
        name: name.clone(),
    };
    wait_until(30, "the container to run", || {
        probe.inspect("{{.State.Running}}") == "true"
    });
    probe.on("kill", &["--signal", "KILL"], &[]).ok();
    let out = handle.join().expect("run thread");
    out.expect_code(137);
}

pub fn stdin_interactive(h: &Harness) {
    let args = ["--rm", "-i", IMAGE, "sh", "-c", "tr a-z A-Z; echo done"];
    let out = run_cmd(h.cli_run(&args), Some(b"hello kakuri\nsecond line\n"), T);
    assert_eq!(
        out.ok(),
        "HELLO KAKURI\nSECOND LINE\ndone\n",
        "{}",
        out.describe()
    );
}

pub fn exec_output_code_user_cwd_env_stdin(h: &Harness) {
    let c = Detached::start(h, "exec", &[], TRAPPING);
    let out = c.on(
        "exec",
        &[],
        &["sh", "-c", "echo exec-out; echo exec-err >&2; exit 5"],
    );
    out.expect_code(5);
    assert_eq!(out.out(), "exec-out\n", "{}", out.describe());
    assert!(out.stderr.contains("exec-err"), "{}", out.describe());

    let out = c.on(
        "exec",
        &["--user", "1000:2001"],
        &["sh", "-c", "id -u; id -g"],
    );
    assert_eq!(out.ok(), "1000\n2001\n", "{}", out.describe());

    let out = c.on("exec", &["--workdir", "/tmp"], &["pwd"]);
    assert_eq!(out.ok(), "/tmp\n", "{}", out.describe());

    let out = c.on(
        "exec",
        &["--env", "KAKURI_EXEC=exec-env"],
        &["sh", "-c", "echo $KAKURI_EXEC"],
    );
    assert_eq!(out.ok(), "exec-env\n", "{}", out.describe());

    let mut cmd = h.cli();
    cmd.args(["exec", "-i", &c.name, "sh", "-c", "wc -c"]);
    let out = run_cmd(cmd, Some(&[b'x'; 100_000]), T);
    assert_eq!(out.ok().trim(), "100000", "{}", out.describe());

    // podman maps a missing binary to 127; docker 20.10 reports any failed exec start as 126.
    let out = c.on("exec", &[], &["/nonexistent"]);
    let expected = if h.kind == Kind::Docker { 126 } else { 127 };
    assert_eq!(out.code, Some(expected), "{}", out.describe());
    assert!(
        (out.out() + &out.stderr).contains("no such file or directory"),
        "the runtime's message does not reach the client: {}",
        out.describe()
    );
}

pub fn top_lists_processes(h: &Harness) {
    let c = Detached::start(h, "top", &[], TRAPPING);
    // The init starts `sleep` right after it is running: poll for up to 15 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = c.on("top", &[], &[]);
        if out.code == Some(0) && out.out().contains("sleep 1000") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "top does not list `sleep 1000`: {}",
            out.describe()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn stop_trapped_sigterm_then_rm_leaves_nothing(h: &Harness) {
    let c = Detached::start(h, "stop", &[], TRAPPING);
    let id = c.id();
    let pid = c.pid();
    let state = find_dir_named(&h.runtime_state_dir(), &id, 2);
    assert!(
        state.is_some(),
        "no runtime state for {id} under {} (is the runtime under test in use?)",
        h.runtime_state_dir().display()
    );
    if h.kind == Kind::Docker {
        assert_eq!(
            h.shim_binary_name(&id).as_deref(),
            Some(h.kakuri.to_string_lossy().as_ref()),
            "the shim of {id} does not run the runtime under test"
        );
    }
    // Rootless podman on cgroup v1 gives the container no cgroup: it stays in its caller's.
    let own_cgroup = h.kind != Kind::PodmanRootless;
    let memory_cgroup = cgroup_dir(pid, "memory");
    assert!(memory_cgroup.exists());
    let scope = check_scope_running(h, &id, pid);
    wait_until(10, "the trap to be set", || c.logs().contains("started"));

    let started = Instant::now();
    c.on("stop", &["--time", "30"], &[]).ok();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "stop took {took:?}: SIGTERM did not reach the trap"
    );
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0");
    assert!(c.logs().contains("got-term"), "logs: {}", c.logs());

    c.on("rm", &[], &[]).ok();
    assert!(
        !state.as_ref().is_some_and(|s| s.exists()),
        "runtime state {state:?} left after rm"
    );
    assert!(
        !own_cgroup || !memory_cgroup.exists(),
        "{} left",
        memory_cgroup.display()
    );
    let cgroups = cgroup_dirs_named(&h.cgroup_root, &id);
    assert!(cgroups.is_empty(), "cgroups left after rm: {cgroups:?}");
    check_scope_gone(scope);
    let procs = pids_with_cmdline(&id);
    assert!(procs.is_empty(), "processes naming {id} left: {procs:?}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || !fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .unwrap_or_default()
                .contains(&id),
        "container init {pid} still alive"
    );
}

pub fn terminal_run(h: &Harness) {
    let cmd = h.cli_run(&[
        "--rm",
        "-t",
        IMAGE,
        "sh",
        "-c",
        "tty; test -t 0 && echo stdin-is-tty",
    ]);
    let out = run_cmd(in_pty(&cmd), None, T);
    let text = out.tty_out();
    assert!(
        out.code == Some(0) && text.contains("/dev/pts/") && text.contains("stdin-is-tty"),
        "{}",
        out.describe()
    );
}

pub fn terminal_exec(h: &Harness) {
    let c = Detached::start(h, "ttyexec", &[], TRAPPING);
    let mut cmd = h.cli();
    cmd.args(["exec", "-t", &c.name, "sh", "-c", "tty; stty size; exit 4"]);
    let out = run_cmd(in_pty(&cmd), None, T);
    let text = out.tty_out();
    assert!(text.contains("/dev/pts/"), "{}", out.describe());
    assert_eq!(out.code, Some(4), "{}", out.describe());
}

pub fn pause_unpause_freezer(h: &Harness) {
    let c = Detached::start(h, "pause", &[], TRAPPING);
    let freezer = cgroup_dir(c.pid(), "freezer").join("freezer.state");
    assert_eq!(read_trim(&freezer), "THAWED");
    c.on("pause", &[], &[]).ok();
    assert_eq!(read_trim(&freezer), "FROZEN", "{}", freezer.display());
    assert_eq!(c.inspect("{{.State.Status}}"), "paused");
    c.on("unpause", &[], &[]).ok();
    assert_eq!(read_trim(&freezer), "THAWED", "{}", freezer.display());
    assert_eq!(c.inspect("{{.State.Status}}"), "running");
    let out = c.on("exec", &[], &["echo", "alive"]);
    assert_eq!(out.ok(), "alive\n");
}

pub fn stats_report_memory(h: &Harness) {
    let c = Detached::start(h, "stats", &["--memory", "64m"], TRAPPING);
    let out = match h.kind {
        Kind::Docker => c.on("stats", &["--no-stream", "--format", "{{json .}}"], &[]),
        _ => c.on("stats", &["--no-stream", "--format", "json"], &[]),
    };
    let text = out.ok();
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("stats output is not JSON ({e}): {}", out.describe()));
    let entry = if v.is_array() { &v[0] } else { &v };
    let (usage_key, pids_key) = match h.kind {
        Kind::Docker => ("MemUsage", "PIDs"),
        _ => ("mem_usage", "pids"),
    };
    let usage = entry[usage_key].as_str().unwrap_or_default().to_string();
    assert!(
        usage.contains("64MiB") || usage.contains("67.11MB") || usage.contains("64MB"),
        "memory usage/limit {usage:?} does not show the 64m limit: {text}"
    );
    let pids = entry[pids_key].to_string();
    assert!(
        pids.trim_matches('"').parse::<u64>().is_ok_and(|n| n >= 2),
        "pids {pids} (sh and sleep expected): {text}"
    );
}

pub fn update_memory_and_cpu_shares(h: &Harness) {
    let c = Detached::start(
        h,
        "update",
        &[
            "--memory",
            "64m",
            "--memory-swap",
            "128m",
            "--cpu-shares",
            "1024",
        ],
        TRAPPING,
    );
    let pid = c.pid();
    let mem = cgroup_dir(pid, "memory");
    let cpu = cgroup_dir(pid, "cpu");
    assert_eq!(read_trim(&mem.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(read_trim(&cpu.join("cpu.shares")), "1024");
    c.on(
        "update",
        &[
            "--memory",
            "96m",
            "--memory-swap",
            "192m",
            "--cpu-shares",
            "512",
        ],
        &[],
    )
    .ok();
    assert_eq!(
        read_trim(&mem.join("memory.limit_in_bytes")),
        (96u64 << 20).to_string()
    );
    assert_eq!(read_trim(&cpu.join("cpu.shares")), "512");
}

pub fn memory_and_pids_limits_inside(h: &Harness) {
    let out = run_sh(
        h,
        &["--memory", "64m", "--pids-limit", "50"],
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max",
    );
    assert_eq!(out.ok(), "67108864\n50\n", "{}", out.describe());
}

pub fn env_user_groups(h: &Harness) {
    let out = run_sh(
        h,
        &[
            "--env",
            "KAKURI_ENV=from-cli",
            "--user",
            "1000:1000",
            "--group-add",
            "2002",
        ],
        "echo $KAKURI_ENV; id -u; id -g; id -G",
    );
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..3],
        ["from-cli", "1000", "1000"],
        "{}",
        out.describe()
    );
    let groups: Vec<&str> = lines[3].split_whitespace().collect();
    assert!(groups.contains(&"2002"), "{}", out.describe());

    // A user name resolves through the image's /etc/passwd and /etc/group.
    let out = run_sh(h, &["--user", "kakuri"], "id -u; id -G; echo $HOME");
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "1000", "{}", out.describe());
    for g in ["1000", "2001", "2002"] {
        assert!(
            lines[1].split_whitespace().any(|x| x == g),
            "{}",
            out.describe()
        );
    }
    assert_eq!(lines[2], "/home/kakuri", "{}", out.describe());
}

pub fn read_only_rootfs_and_tmpfs(h: &Harness) {
    let out = run_sh(
        h,
        &["--read-only", "--tmpfs", "/scratch:size=1m"],
        "touch /rootfs-file 2>&1; echo rc=$?; touch /scratch/f && echo tmpfs-writable; \
         grep ' /scratch ' /proc/mounts",
    );
    let text = out.ok();
    assert!(text.contains("Read-only file system"), "{}", out.describe());
    assert!(!text.contains("rc=0"), "{}", out.describe());
    assert!(text.contains("tmpfs-writable"), "{}", out.describe());
    assert!(
        text.contains("tmpfs /scratch tmpfs rw"),
        "{}",
        out.describe()
    );
}

pub fn bind_mounts_rw_ro(h: &Harness) {
    let rw = h.scratch("rw");
    let ro = h.scratch("ro");
    fs::write(ro.join("host-file"), "from-host\n").expect("write host file");
    let rw_opt = format!("{}:/rw", rw.display());
    let ro_opt = format!("{}:/ro:ro", ro.display());
    let out = run_sh(
        h,
        &["--volume", &rw_opt, "--volume", &ro_opt],
        "cat /ro/host-file; echo written > /rw/new; echo x > /ro/new; echo ro-rc=$?",
    );
    let text = out.ok() + &out.stderr;
    assert!(text.contains("from-host"), "{}", out.describe());
    assert!(text.contains("Read-only file system"), "{}", out.describe());
    assert!(!text.contains("ro-rc=0"), "{}", out.describe());
    assert_eq!(
        fs::read_to_string(rw.join("new")).expect("file written through the rw bind"),
        "written\n"
    );
    assert!(!ro.join("new").exists());
}

pub fn capabilities_add_drop(h: &Harness) {
    const CHOWN: u64 = 1 << 0;
    const SYS_ADMIN: u64 = 1 << 21;
    let default = run_sh(h, &[], "cat /proc/self/status").ok();
    let eff = cap_mask(&default, "CapEff:");
    assert!(
        eff & CHOWN != 0 && eff & SYS_ADMIN == 0,
        "default CapEff {eff:x}"
    );
    let changed = run_sh(
        h,
        &["--cap-drop", "CHOWN", "--cap-add", "SYS_ADMIN"],
        "cat /proc/self/status",
    )
    .ok();
    for field in ["CapEff:", "CapPrm:", "CapBnd:"] {
        let m = cap_mask(&changed, field);
        assert!(m & CHOWN == 0, "{field} {m:x} still has CAP_CHOWN");
        assert!(m & SYS_ADMIN != 0, "{field} {m:x} lacks CAP_SYS_ADMIN");
    }
    let out = run_sh(
        h,
        &["--cap-drop", "CHOWN"],
        "chown 1000 /tmp 2>&1; echo rc=$?",
    );
    assert!(
        out.ok().contains("Operation not permitted"),
        "{}",
        out.describe()
    );
}

pub fn hostname(h: &Harness) {
    let out = run_sh(
        h,
        &["--hostname", "kakuri-host"],
        "hostname; cat /etc/hostname",
    );
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, ["kakuri-host", "kakuri-host"], "{}", out.describe());
}

pub fn kill_with_signal(h: &Harness) {
    let c = Detached::start(h, "kill", &[], TRAPPING);
    wait_until(10, "the trap to be set", || c.logs().contains("started"));
    c.on("kill", &["--signal", "USR1"], &[]).ok();
    let out = c.on("wait", &[], &[]);
    assert_eq!(out.ok().trim(), "42", "{}", out.describe());
    assert!(c.logs().contains("got-usr1"), "{}", c.logs());
}

pub fn restart_gets_new_pid(h: &Harness) {
    let c = Detached::start(h, "restart", &[], TRAPPING);
    let before = c.pid();
    c.on("restart", &["--time", "10"], &[]).ok();
    wait_until(30, "the container to run again", || {
        c.inspect("{{.State.Running}}") == "true"
    });
    let after = c.pid();
    assert_ne!(before, after, "restart kept pid {before}");
    assert!(Path::new(&format!("/proc/{after}")).exists());
    assert!(
        !Path::new(&format!("/proc/{before}/cgroup")).exists()
            || !fs::read_to_string(format!("/proc/{before}/cgroup"))
                .unwrap_or_default()
                .contains(&h.cgroup_root)
    );
}

pub fn seccomp_default_and_unconfined(h: &Harness) {
    let on = run_sh(h, &[], "cat /proc/self/status").ok();
    assert_eq!(
        status_field(&on, "Seccomp:"),
        "2",
        "default profile not active"
    );
    let off = run_sh(
        h,
        &["--security-opt", "seccomp=unconfined"],
        "cat /proc/self/status",
    )
    .ok();
    assert_eq!(
        status_field(&off, "Seccomp:"),
        "0",
        "seccomp=unconfined still filtered"
    );
}

pub fn no_new_privileges(h: &Harness) {
    let default = run_sh(h, &[], "cat /proc/self/status").ok();
    assert_eq!(status_field(&default, "NoNewPrivs:"), "0");
    let set = run_sh(
        h,
        &["--security-opt", "no-new-privileges"],
        "cat /proc/self/status",
    )
    .ok();
    assert_eq!(status_field(&set, "NoNewPrivs:"), "1");
}

pub fn masked_and_readonly_paths(h: &Harness) {
    check_masked_paths(&run_sh(h, &[], MASKED_PROBE));
}

pub fn missing_binary_127(h: &Harness) {
    let out = exec(h.cli_run(&["--rm", IMAGE, "/nonexistent"]));
    out.expect_code(127);
    assert!(
        out.stderr.contains("/nonexistent") && out.stderr.contains("no such file or directory"),
        "the runtime's message does not reach the client: {}",
        out.describe()
    );
}

pub fn not_executable_126(h: &Harness) {
    let out = exec(h.cli_run(&["--rm", IMAGE, "/notexec"]));
    out.expect_code(126);
    assert!(
        out.stderr.contains("/notexec") && out.stderr.contains("permission denied"),
        "the runtime's message does not reach the client: {}",
        out.describe()
    );
}

/// `<cli> run --rm --name NAME IMAGE sh -c SCRIPT` within [`PIPE_WAIT`]; a container still
/// running when the wait expires is removed before the checks fail.
fn run_sh_bounded(h: &Harness, what: &str, script: &str) -> Output {
    let name = h.name(what);
    let out = run_cmd(
        h.cli_run(&["--rm", "--name", &name, IMAGE, "sh", "-c", script]),
        None,
        PIPE_WAIT,
    );
    if out.timed_out {
        let mut c = h.cli();
        c.args(["rm", "-f", &name]);
        let _ = exec(c);
    }
    out
}

pub fn ten_megabytes_of_output(h: &Harness) {
    check_head_of_yes(&run_sh_bounded(h, "head-of-yes", HEAD_OF_YES));
}

pub fn endless_writer_ends_at_head(h: &Harness) {
    check_loop_into_head(&run_sh_bounded(h, "loop-into-head", LOOP_INTO_HEAD));
}

/// `--privileged` gives every capability the host can give: the container's effective set is
/// the host's bounding set, and seccomp is off. podman asks only for the bounding set. docker
/// 20.10 asks for all it knows: where the host's bounding set lacks some (this VM has no
/// CAP_SYS_RESOURCE), no runtime can grant them and the runtime's refusal must reach the
/// client, with runc's text (kakuri fails as runc does unless KAKURI_DROP_UNGRANTABLE_CAPS=1).
pub fn privileged(h: &Harness) {
    let host = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let bnd = cap_mask(&host, "CapBnd:");
    let last_cap: u32 = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    let all = (1u64 << (last_cap + 1)) - 1;
    // docker 20.10's list of capabilities ends at CAP_AUDIT_READ (37): it never asks for
    // CAP_PERFMON, CAP_BPF or CAP_CHECKPOINT_RESTORE.
    let asked = if h.kind == Kind::Docker {
        (1u64 << 38) - 1
    } else {
        all & bnd
    };
    let out = run_sh(h, &["--privileged"], "cat /proc/self/status");
    if asked & !bnd != 0 {
        super::note(&format!(
            "{:?}::privileged: bounding set {bnd:x} lacks {:x}; checking the refusal instead",
            h.kind,
            asked & !bnd
        ));
        assert!(
            out.code != Some(0)
                && out
                    .stderr
                    .contains("unable to apply caps: operation not permitted"),
            "--privileged without a full bounding set must fail with runc's error: {}",
            out.describe()
        );
        return;
    }
    let text = out.ok();
    assert_eq!(cap_mask(&text, "CapEff:"), bnd & asked, "privileged CapEff");
    assert_eq!(status_field(&text, "Seccomp:"), "0");
}
