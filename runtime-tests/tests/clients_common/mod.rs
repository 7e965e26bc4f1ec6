//! Shared harness of the client suites (client_containerd.rs, client_podman.rs,
//! client_docker.rs): one private daemon per test binary, started on first use, with every
//! file it makes under one `/tmp/kakuri-<client>-<suffix>` directory, and a teardown that
//! removes everything (processes, shims, cgroups in every hierarchy, runtime state, mounts).
//!
//! The runtime under test is `$KAKURI_BIN`, else `<repo>/target/debug/kakuri`. The tests are
//! validated with `KAKURI_BIN=/usr/sbin/runc`.
//!
//! Teardown runs `runtime-tests/clients/teardown`, started as a watchdog when the daemon
//! starts: it waits on a pipe whose write end only this process holds. It is released by the
//! last test of the file (which then also checks that nothing was left), by an `atexit` hook
//! when a filtered run ends earlier, or by the kernel closing the pipe if the test process dies.

#![allow(dead_code)] // each test file uses part of this module

/// One `#[test]` per shared scenario of `dockerlike` for the client `$kind`, and `SCENARIOS`, their
/// count (the harness needs each file's number of tests to know which one is last).
#[allow(unused_macros)] // client_containerd.rs has no docker-like scenarios
macro_rules! dockerlike_scenarios {
    ($kind:expr; $($name:ident),* $(,)?) => {
        const SCENARIOS: usize = [$(stringify!($name)),*].len();
        $(
            #[test]
            fn $name() {
                clients_common::client_test($kind, TESTS, stringify!($name), clients_common::dockerlike::$name);
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use dockerlike_scenarios;

pub mod dockerlike;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Which client a test binary drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Containerd,
    Podman,
    /// podman run by the unprivileged user of the rootless suites
    /// (`runtime-tests/setup-rootless-user`), with its HOME and XDG_RUNTIME_DIR in the run's
    /// directory.
    PodmanRootless,
    Docker,
    /// containerd with its CRI plugin on, driven as a kubelet drives it (client_cri.rs):
    /// RuntimeClass handlers `kakuri` and `runc`, CNI bridge networking.
    Cri,
}

/// The user [`Kind::PodmanRootless`] runs podman as.
pub fn rootless_user() -> String {
    std::env::var("KAKURI_ROOTLESS_USER").unwrap_or_else(|_| "kakuri-rl".into())
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Containerd => "containerd",
            Kind::Podman => "podman",
            Kind::PodmanRootless => "podman-rootless",
            Kind::Docker => "docker",
            Kind::Cri => "cri",
        }
    }

    /// podman, as root or rootless.
    pub fn is_podman(self) -> bool {
        matches!(self, Kind::Podman | Kind::PodmanRootless)
    }

    fn cgroup_tag(self) -> &'static str {
        match self {
            Kind::Containerd => "ctr",
            Kind::Podman => "podman",
            Kind::PodmanRootless => "podman-rl",
            Kind::Docker => "docker",
            Kind::Cri => "cri",
        }
    }

    /// Programs the client needs on PATH.
    fn tools(self) -> &'static [&'static str] {
        match self {
            Kind::Containerd => &["containerd", "ctr", "containerd-shim-runc-v2", "script"],
            Kind::Podman => &["podman", "conmon", "script"],
            Kind::PodmanRootless => &["podman", "conmon", "script", "newuidmap", "newgidmap"],
            Kind::Docker => &["dockerd", "containerd", "containerd-shim-runc-v2", "script"],
            Kind::Cri => &[
                "containerd",
                "ctr",
                "containerd-shim-runc-v2",
                "runc",
                "cc",
                "ip",
            ],
        }
    }

    /// Paths outside the run's directory that the client creates by itself (hard-coded in the
    /// client); removed at teardown when they did not exist before the run.
    fn shared_paths(self, kakuri: &Path) -> Vec<String> {
        let mut paths: Vec<String> = self
            .fixed_shared_paths()
            .iter()
            .map(|p| p.to_string())
            .collect();
        if self == Kind::Podman {
            // The runtime's default --root (see `Harness::runtime_state_dir`), created on
            // first use (runc: /run/runc, kakuri: /run/kakuri).
            if let Some(name) = kakuri.file_name() {
                paths.push(format!("/run/{}", name.to_string_lossy()));
            }
        }
        paths
    }

    fn fixed_shared_paths(self) -> &'static [&'static str] {
        match self {
            Kind::Containerd | Kind::Cri => &["/run/containerd/s", "/run/containerd"],
            Kind::Docker => &[
                "/run/containerd/s",
                "/run/containerd",
                "/run/docker/plugins",
                "/run/docker",
                "/etc/docker/key.json",
                "/etc/docker",
            ],
            // Everything of a rootless podman is under its HOME and XDG_RUNTIME_DIR.
            Kind::PodmanRootless => &[],
            Kind::Podman => &[
                "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
                "/var/lib/containers/cache",
                "/var/lib/containers",
                "/var/cache/containers/short-name-aliases.conf.lock",
                "/var/cache/containers",
            ],
        }
    }
}

/// Where Debian's containernetworking-plugins puts the CNI plugins, and the ones the CRI suite
/// configures.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
pub const CNI_PLUGINS: &[&str] = &["bridge", "host-local", "loopback"];
/// The sandbox image of the CRI suite (runtime-tests/clients/build-pause-image).
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:kakuri";

/// Image name every client knows the test image by.
pub const IMAGE: &str = "localhost/kakuri-busybox:latest";
/// The name the OCI archive carries for `ctr images import`.
pub const CTR_IMAGE: &str = "docker.io/library/kakuri-busybox:latest";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime-tests has a parent directory")
        .to_path_buf()
}

pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// The runtime under test: `$KAKURI_BIN`, else `<repo>/target/debug/kakuri`.
pub fn kakuri_bin() -> PathBuf {
    match std::env::var_os("KAKURI_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join("target/debug/kakuri"),
    }
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| is_executable(&d.join(tool))))
        .unwrap_or(false)
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Why the suite cannot run on this machine, if it cannot.
fn unmet_prerequisite(kind: Kind) -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid_root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !euid_root {
        return Some("the client suites need root".into());
    }
    let missing: Vec<&str> = kind
        .tools()
        .iter()
        .copied()
        .filter(|t| !in_path(t))
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "{} not installed (run runtime-tests/clients/setup)",
            missing.join(", ")
        ));
    }
    if kind == Kind::Cri {
        let missing: Vec<&str> = CNI_PLUGINS
            .iter()
            .copied()
            .filter(|p| !is_executable(&Path::new(CNI_BIN_DIR).join(p)))
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "CNI plugins {} missing in {CNI_BIN_DIR} (run runtime-tests/clients/setup: \
                 containernetworking-plugins)",
                missing.join(", ")
            ));
        }
    }
    if kind == Kind::PodmanRootless
        && !Command::new("id")
            .arg(rootless_user())
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return Some(format!(
            "no user {} (run runtime-tests/setup-rootless-user)",
            rootless_user()
        ));
    }
    let bin = kakuri_bin();
    if !is_executable(&bin) {
        return Some(format!(
            "runtime binary {} is missing or not executable (build kakuri or set KAKURI_BIN)",
            bin.display()
        ));
    }
    None
}

/// Result of one command.
#[derive(Debug)]
pub struct Output {
    pub what: String,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub timed_out: bool,
}

impl Output {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stdout with terminal line endings normalised (for output that went through a pty).
    pub fn tty_out(&self) -> String {
        self.out().replace("\r\n", "\n")
    }

    pub fn describe(&self) -> String {
        let mut out = self.out();
        if out.len() > 2000 {
            out.truncate(2000);
            out.push_str(&format!("... ({} bytes in all)", self.stdout.len()));
        }
        // A writer looping on EPIPE fills stderr with one error line after another.
        let mut err = self.stderr.clone();
        if err.len() > 3000 {
            let head: String = err.chars().take(1500).collect();
            let tail: String = err
                .chars()
                .rev()
                .take(1500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            err = format!(
                "{head}\n... ({} lines in all) ...\n{tail}",
                self.stderr.lines().count()
            );
        }
        format!(
            "`{}` -> exit {:?}{}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.code,
            self.signal
                .map(|s| format!(" (signal {s})"))
                .unwrap_or_default(),
            if self.timed_out { " TIMED OUT" } else { "" },
            out,
            err
        )
    }

    /// One line: exit, signal, timeout, stdout size, stderr's first line and line count.
    pub fn summary(&self) -> String {
        format!(
            "`{}` -> exit {:?}{}{}, {} bytes on stdout, {} lines on stderr (first: {:?})",
            self.what,
            self.code,
            self.signal
                .map(|s| format!(" (signal {s})"))
                .unwrap_or_default(),
            if self.timed_out { " TIMED OUT" } else { "" },
            self.stdout.len(),
            self.stderr.lines().count(),
            self.stderr.lines().next().unwrap_or("")
        )
    }

    /// Panics unless the command exited 0; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> String {
        assert_eq!(self.code, Some(0), "command failed: {}", self.describe());
        self.out()
    }

    /// Panics unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}: {}",
            self.describe()
        );
        self
    }

    /// Panics unless the command failed and its stderr contains `needle`.
    #[track_caller]
    pub fn expect_failure_with(&self, needle: &str) -> &Self {
        assert!(
            self.code != Some(0) && self.stderr.contains(needle),
            "expected a failure mentioning {needle:?}: {}",
            self.describe()
        );
        self
    }
}

/// Runs `cmd` with `stdin` as its input, killing its process group after `timeout`.
pub fn run_cmd(cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    run_cmd_inner(cmd, stdin, None, timeout)
}

/// What the output must hold before [`run_cmd_holding_stdin`] closes stdin: (stdout, stderr).
pub type OutputReady = Box<dyn Fn(&[u8], &[u8]) -> bool + Send>;

/// Like [`run_cmd`], but stdin stays open after `data` until the output so far satisfies
/// `ready`; then `then` is written and stdin closed. A command that ends at end of input (or
/// on the `then` line) therefore exits only after its output was read: ctr 1.6 stops copying
/// a process's output as soon as the process exits.
pub fn run_cmd_holding_stdin(
    cmd: Command,
    data: &[u8],
    ready: OutputReady,
    then: &[u8],
    timeout: Duration,
) -> Output {
    run_cmd_inner(cmd, Some(data), Some((ready, then.to_vec())), timeout)
}

fn run_cmd_inner(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    ready: Option<(OutputReady, Vec<u8>)>,
    timeout: Duration,
) -> Output {
    let what = format!("{cmd:?}").replace('"', "");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Output {
                what,
                code: None,
                signal: None,
                stdout: Vec::new(),
                stderr: format!("cannot start: {e}"),
                timed_out: false,
            }
        }
    };
    let out_buf = Arc::new(Mutex::new(Vec::new()));
    let err_buf = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + timeout;
    let exited = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = stdin.map(|data| {
        let data = data.to_vec();
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let (out_buf, err_buf) = (out_buf.clone(), err_buf.clone());
        let exited = exited.clone();
        thread::spawn(move || {
            // The command may exit before reading everything; that is its business.
            let _ = pipe.write_all(&data);
            if let Some((ready, then)) = ready {
                // Hold stdin open until the output is there (or the command is gone, or the
                // time is up).
                while Instant::now() < deadline && !exited.load(Ordering::SeqCst) {
                    let done = {
                        let out = out_buf.lock().unwrap_or_else(|e| e.into_inner());
                        let err = err_buf.lock().unwrap_or_else(|e| e.into_inner());
                        ready(&out, &err)
                    };
                    if done {
                        let _ = pipe.write_all(&then);
                        break;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            }
        })
    });
    let out_pipe = child.stdout.take().expect("stdout is piped");
    let err_pipe = child.stderr.take().expect("stderr is piped");
    let reader = |mut pipe: Box<dyn Read + Send>, buf: Arc<Mutex<Vec<u8>>>| {
        thread::spawn(move || {
            let mut chunk = [0u8; 65536];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]);
            }
        })
    };
    let out_reader = reader(Box::new(out_pipe), out_buf.clone());
    let err_reader = reader(Box::new(err_pipe), err_buf.clone());
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                kill_group(&child);
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    exited.store(true, Ordering::SeqCst);
    if timed_out {
        // Background children of the command may still hold the pipes.
        kill_group(&child);
    }
    if let Some(w) = writer {
        let _ = w.join();
    }
    let _ = out_reader.join();
    let _ = err_reader.join();
    let stdout = std::mem::take(&mut *out_buf.lock().unwrap_or_else(|e| e.into_inner()));
    let stderr =
        String::from_utf8_lossy(&err_buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    Output {
        what,
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stdout,
        stderr,
        timed_out,
    }
}

fn kill_group(child: &Child) {
    // `kill -KILL -PGID`: std has no killpg; the kill(1) of procps takes a negative pid.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
}

/// Number of lines of `source` that are a test attribute alone (`#` `[test]`), so that each
/// file's test count follows its source (the count decides which test tears down).
pub const fn count_tests(source: &str) -> usize {
    const ATTR: [u8; 7] = [b'#', b'[', b't', b'e', b's', b't', b']'];
    let s = source.as_bytes();
    let mut count = 0;
    let mut i = 0;
    let mut line_start = true;
    while i < s.len() {
        if s[i] == b'\n' {
            line_start = true;
            i += 1;
            continue;
        }
        if line_start && (s[i] == b' ' || s[i] == b'\t') {
            i += 1;
            continue;
        }
        if line_start && i + ATTR.len() <= s.len() {
            let mut k = 0;
            while k < ATTR.len() && s[i + k] == ATTR[k] {
                k += 1;
            }
            let end = i + ATTR.len();
            if k == ATTR.len() && (end == s.len() || s[end] == b'\n' || s[end] == b'\r') {
                count += 1;
            }
        }
        line_start = false;
        i += 1;
    }
    count
}

/// Prints to the real stderr (not captured by the test harness), for skips and teardown news.
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Runs `cmd` under a real pseudo-terminal with util-linux `script`.
pub fn in_pty(cmd: &Command) -> Command {
    let mut line = String::new();
    for part in std::iter::once(cmd.get_program()).chain(cmd.get_args()) {
        let s = part.to_string_lossy();
        line.push('\'');
        line.push_str(&s.replace('\'', "'\\''"));
        line.push_str("' ");
    }
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", &line, "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    script
}

/// Everything one test binary shares: its private daemon, directory and names.
pub struct Harness {
    pub kind: Kind,
    /// `/tmp/kakuri-<client>-<suffix>`: every file of this run lives here.
    pub dir: PathBuf,
    /// Unique per run: process id and start time.
    pub suffix: String,
    /// The runtime binary under test.
    pub kakuri: PathBuf,
    /// Cgroup parent of every container (`kakuri-<client>-<suffix>`, in each hierarchy); also
    /// the containerd namespace name.
    pub cgroup_parent: String,
    /// With `KAKURI_CLIENT_CGROUP_DRIVER=systemd`: the engine and the runtime use systemd's
    /// cgroup driver, and every container is a scope in this slice
    /// (`kakuri_<client>_<suffix>.slice`, no `-` so that it sits at the top of the tree).
    pub slice: Option<String>,
    /// The run's top cgroup directory name in each hierarchy: the slice or `cgroup_parent`.
    pub cgroup_root: String,
    /// Built test image: `rootfs/`, `rootfs.tar`, `oci-image.tar`.
    pub image_dir: PathBuf,
    /// [`Kind::Cri`]: the CNI bridge of this run (unique name, removed at teardown) and its
    /// private IPv4 /24, unused elsewhere on the host.
    pub cni_bridge: String,
    pub cni_subnet: String,
    total: usize,
    finished: AtomicUsize,
    names: AtomicUsize,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

/// How long a private daemon (containerd, dockerd) may take to answer after its start.
const DAEMON_READY: Duration = Duration::from_secs(120);

static HARNESS: OnceLock<Result<Harness, String>> = OnceLock::new();
static SKIP: OnceLock<Option<String>> = OnceLock::new();

extern "C" {
    fn atexit(cb: extern "C" fn()) -> i32;
}

extern "C" fn teardown_at_exit() {
    if let Some(Ok(h)) = HARNESS.get() {
        if let Some(report) = h.teardown() {
            if !report.is_empty() {
                note(&report);
            }
        }
    }
}

/// Runs one test of a client suite: starts the shared daemon on first use, runs `body`, and
/// after the file's last test (`total` = number of tests in the file) tears everything down and
/// fails if anything was left behind.
pub fn client_test(kind: Kind, total: usize, name: &str, body: impl FnOnce(&Harness)) {
    let skip = SKIP.get_or_init(|| unmet_prerequisite(kind));
    if let Some(why) = skip {
        if std::env::var_os("KAKURI_CLIENT_TESTS_REQUIRED").is_some() {
            panic!("{} suite cannot run: {why}", kind.name());
        }
        note(&format!("SKIP {}::{name}: {why}", kind.name()));
        return;
    }
    let h = match HARNESS.get_or_init(|| Harness::start(kind, total)) {
        Ok(h) => h,
        Err(e) => panic!("private {} could not start: {e}", kind.name()),
    };
    let result = catch_unwind(AssertUnwindSafe(|| body(h)));
    let done = h.finished.fetch_add(1, Ordering::SeqCst) + 1;
    assert!(
        done <= h.total,
        "{} tests finished but the file declares {}",
        done,
        h.total
    );
    let leftovers = if done == h.total { h.teardown() } else { None };
    if let Err(panic) = result {
        resume_unwind(panic);
    }
    if let Some(report) = leftovers {
        assert!(
            !report.contains("LEFTOVER"),
            "teardown after the last {} test left things behind:\n{report}",
            kind.name()
        );
    }
}

impl Harness {
    fn start(kind: Kind, total: usize) -> Result<Harness, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let suffix = format!("{}{:x}", std::process::id(), nanos % 0xfffff);
        let dir = PathBuf::from(format!("/tmp/kakuri-{}-{suffix}", kind.name()));
        fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let kakuri = kakuri_bin();
        let cgroup_parent = format!("kakuri-{}-{suffix}", kind.cgroup_tag());
        let slice = systemd_driver().then(|| {
            format!(
                "kakuri_{}_{suffix}.slice",
                kind.cgroup_tag().replace('-', "_")
            )
        });
        let absent: Vec<String> = kind
            .shared_paths(&kakuri)
            .into_iter()
            .filter(|p| fs::symlink_metadata(p).is_err())
            .collect();
        let (cni_bridge, cni_subnet) = if kind == Kind::Cri {
            cni_network(&suffix)?
        } else {
            (String::new(), String::new())
        };
        let env = format!(
            "KIND={}\nCGROUP_PARENT={cgroup_parent}\nSLICE={}\nKAKURI='{}'\nABSENT='{}'\nRUN_USER='{}'\n\
             CNI_BRIDGE='{cni_bridge}'\n",
            kind.name(),
            slice.as_deref().unwrap_or_default(),
            kakuri.display(),
            absent.join(" "),
            if kind == Kind::PodmanRootless {
                rootless_user()
            } else {
                String::new()
            }
        );
        write(&dir.join("teardown.env"), &env)?;
        let h = Harness {
            kind,
            image_dir: prebuilt_image().unwrap_or_else(|| dir.join("image")),
            dir,
            suffix,
            kakuri,
            cgroup_root: slice.clone().unwrap_or_else(|| cgroup_parent.clone()),
            cgroup_parent,
            cni_bridge,
            cni_subnet,
            slice,
            total,
            finished: AtomicUsize::new(0),
            names: AtomicUsize::new(0),
            watchdog: Mutex::new(None),
        };
        h.spawn_watchdog()?;
        // SAFETY: `teardown_at_exit` is a plain `extern "C" fn()` that only touches the
        // 'static harness; registering it has no other precondition.
        if unsafe { atexit(teardown_at_exit) } != 0 {
            note("warning: atexit registration failed; the watchdog will clean up at exit");
        }
        if prebuilt_image().is_none() {
            let built = run_cmd(
                {
                    let mut c = Command::new("bash");
                    c.arg(clients_dir().join("build-image")).arg(&h.image_dir);
                    c
                },
                None,
                Duration::from_secs(60),
            );
            if built.code != Some(0) {
                return Err(format!("building the test image: {}", built.describe()));
            }
        }
        match kind {
            Kind::Containerd => h.start_containerd()?,
            Kind::Cri => h.start_cri()?,
            Kind::Docker => {
                h.start_containerd()?;
                h.start_dockerd()?;
            }
            Kind::Podman | Kind::PodmanRootless => h.setup_podman()?,
        }
        Ok(h)
    }

    fn spawn_watchdog(&self) -> Result<(), String> {
        let mut child = Command::new("bash")
            .arg(clients_dir().join("teardown"))
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting the teardown watchdog: {e}"))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        *self.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = Some((child, stdin));
        Ok(())
    }

    /// Stops the daemon and removes everything; returns the teardown report the first time.
    fn teardown(&self) -> Option<String> {
        let (mut child, mut stdin) = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let _ = stdin.write_all(b"now\n");
        drop(stdin);
        let mut report = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut report);
        }
        match child.wait() {
            Ok(s) if s.success() => {}
            Ok(s) => report.push_str(&format!("LEFTOVER: teardown exited with {s}\n")),
            Err(e) => report.push_str(&format!("LEFTOVER: teardown wait failed: {e}\n")),
        }
        Some(report)
    }

    /// A container name unique in this run.
    pub fn name(&self, what: &str) -> String {
        let n = self.names.fetch_add(1, Ordering::SeqCst);
        format!("kakuri-{what}-{}-{n}", self.suffix)
    }

    /// A fresh directory inside the run's directory (for bind mounts).
    pub fn scratch(&self, what: &str) -> PathBuf {
        let p = self.dir.join("scratch").join(self.name(what));
        fs::create_dir_all(&p).expect("create scratch dir");
        if let Some(u) = self.run_as() {
            // The container's root is the rootless user on the host.
            for d in [p.parent().unwrap_or(&p), &p] {
                std::os::unix::fs::chown(d, Some(u.uid), Some(u.gid)).expect("chown scratch");
            }
        }
        p
    }

    fn spawn_daemon(&self, name: &str, mut cmd: Command) -> Result<u32, String> {
        let log = fs::File::create(self.dir.join(format!("{name}.log")))
            .map_err(|e| format!("{name}.log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        let pid = child.id();
        write(&self.dir.join(format!("{name}.pid")), &pid.to_string())?;
        // The Child is not waited for here: teardown stops the daemon by its pid; reap it
        // from a thread so that it does not stay a zombie.
        thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        Ok(pid)
    }

    fn wait_for(
        &self,
        what: &str,
        pid: u32,
        log: &str,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        // A guard against a hang, not a timing guess: the loop ends as soon as the daemon
        // answers or exits. dockerd under qemu TCG with a loaded host took over 30 s.
        let deadline = Instant::now() + DAEMON_READY;
        let mut exited = false;
        while Instant::now() < deadline && !exited {
            if ready() {
                return Ok(());
            }
            exited = !Path::new(&format!("/proc/{pid}")).exists();
            thread::sleep(Duration::from_millis(100));
        }
        let log = fs::read_to_string(self.dir.join(log)).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        Err(format!(
            "{what} {}; log tail:\n{}",
            if exited {
                "exited".to_string()
            } else {
                format!("not ready after {} s", DAEMON_READY.as_secs())
            },
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }

    fn template(&self, name: &str) -> Result<String, String> {
        let path = clients_dir().join("templates").join(name);
        let t = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let bin_name = self
            .kakuri
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let systemd = self.slice.is_some();
        Ok(t.replace("@DIR@", &self.dir.to_string_lossy())
            .replace(
                "@CGROUP_DRIVER@",
                if systemd { "systemd" } else { "cgroupfs" },
            )
            .replace("@SYSTEMD_CGROUP@", if systemd { "true" } else { "false" })
            .replace("@KAKURI@", &self.kakuri.to_string_lossy())
            .replace("@KAKURI_NAME@", &bin_name))
    }

    // ---------------------------------------------------------------- containerd

    pub fn containerd_sock(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// Starts the run's containerd with the config `cfg` and waits until it answers.
    fn launch_containerd(&self, cfg: &Path) -> Result<(), String> {
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(cfg);
        let pid = self.spawn_daemon("containerd", cmd)?;
        let sock = self.containerd_sock();
        self.wait_for("containerd", pid, "containerd.log", || {
            sock.exists()
                && self
                    .ctr_bare()
                    .arg("version")
                    .output()
                    .is_ok_and(|o| o.status.success())
        })
    }

    fn start_containerd(&self) -> Result<(), String> {
        let cfg = self.dir.join("containerd.toml");
        write(&cfg, &self.template("containerd.toml")?)?;
        self.launch_containerd(&cfg)?;
        if self.kind == Kind::Containerd {
            let out = run_cmd(
                {
                    let mut c = self.ctr();
                    c.args(["images", "import"])
                        .arg(self.image_dir.join("oci-image.tar"));
                    c
                },
                None,
                Duration::from_secs(60),
            );
            if out.code != Some(0) {
                return Err(format!("ctr images import: {}", out.describe()));
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- containerd CRI

    /// containerd with the CRI plugin (templates/containerd-k8s.toml), a CNI bridge network
    /// in the run's directory, and the busybox and pause images imported into `k8s.io`, the
    /// namespace the CRI plugin uses.
    fn start_cri(&self) -> Result<(), String> {
        let built = run_cmd(
            {
                let mut c = Command::new("bash");
                c.arg(clients_dir().join("build-pause-image"))
                    .arg(&self.image_dir)
                    .arg(PAUSE_IMAGE);
                c
            },
            None,
            Duration::from_secs(60),
        );
        if built.code != Some(0) {
            return Err(format!("building the pause image: {}", built.describe()));
        }
        let cni_conf = self.dir.join("cni/net.d");
        fs::create_dir_all(&cni_conf).map_err(|e| format!("{}: {e}", cni_conf.display()))?;
        write(&cni_conf.join("10-kakuri.conflist"), &self.cni_conflist())?;
        let cfg = self.dir.join("containerd.toml");
        write(
            &cfg,
            &self
                .template("containerd-k8s.toml")?
                .replace("@PAUSE_IMAGE@", PAUSE_IMAGE)
                .replace("@CNI_CONF@", &cni_conf.to_string_lossy()),
        )?;
        self.launch_containerd(&cfg)?;
        for archive in ["oci-image.tar", "pause-image.tar"] {
            let mut c = self.ctr_bare();
            c.args(["--namespace", "k8s.io", "images", "import"])
                .arg(self.image_dir.join(archive));
            let out = run_cmd(c, None, Duration::from_secs(60));
            if out.code != Some(0) {
                return Err(format!("ctr images import {archive}: {}", out.describe()));
            }
        }
        Ok(())
    }

    /// The CNI network of [`Kind::Cri`]: a bridge without an address on the host (pods reach
    /// each other on it and nothing else: no gateway, no masquerading, no default route) and
    /// host-local IPAM with its state in the run's directory.
    fn cni_conflist(&self) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("kakuri-{}", self.suffix),
            "plugins": [{
                "type": "bridge",
                "bridge": self.cni_bridge,
                "isGateway": false,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": self.dir.join("cni/ipam"),
                    "ranges": [[{ "subnet": self.cni_subnet }]],
                },
            }],
        })
        .to_string()
    }

    fn ctr_bare(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.containerd_sock());
        c
    }

    /// `ctr` talking to the private containerd, in this run's namespace.
    pub fn ctr(&self) -> Command {
        let mut c = self.ctr_bare();
        c.args(["--namespace", &self.cgroup_parent]);
        c
    }

    /// Options of `ctr run` that select the runtime under test and keep its state, fifos and
    /// cgroup inside this run.
    pub fn ctr_runtime_args(&self, id: &str) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--runtime".into(),
            "io.containerd.runc.v2".into(),
            "--runc-binary".into(),
            self.kakuri.to_string_lossy().into_owned(),
            "--runc-root".into(),
            self.dir.join("runtime-root").to_string_lossy().into_owned(),
            "--fifo-dir".into(),
            self.dir.join("fifo").to_string_lossy().into_owned(),
            "--cgroup".into(),
            match &self.slice {
                // runc's systemd form slice:prefix:name, the scope kakuri-<id>.scope
                Some(slice) => format!("{slice}:kakuri:{id}"),
                None => format!("/{}/{id}", self.cgroup_parent),
            },
        ];
        if self.slice.is_some() {
            args.push("--runc-systemd-cgroup".into());
        }
        args
    }

    /// The engine's `--cgroup-parent`: `/kakuri-<client>-<suffix>`, or the slice.
    pub fn cgroup_parent_arg(&self) -> String {
        match &self.slice {
            Some(slice) => slice.clone(),
            None => format!("/{}", self.cgroup_parent),
        }
    }

    // ---------------------------------------------------------------- docker

    pub fn docker_sock(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    fn start_dockerd(&self) -> Result<(), String> {
        let cfg = self.dir.join("daemon.json");
        write(&cfg, &self.template("daemon.json")?)?;
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(&cfg)
            .arg("--data-root")
            .arg(self.dir.join("docker-data"))
            .arg("--exec-root")
            .arg(self.dir.join("docker-exec"))
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pidfile"))
            .arg("--host")
            .arg(format!("unix://{}", self.docker_sock().display()))
            .arg("--containerd")
            .arg(self.containerd_sock())
            .args(["--containerd-namespace", &self.cgroup_parent])
            .args([
                "--containerd-plugins-namespace",
                &format!("{}-plugins", self.cgroup_parent),
            ])
            .args(["--cgroup-parent", &self.cgroup_parent_arg()])
            .arg("--add-runtime")
            .arg(format!("kakuri={}", self.kakuri.display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--userland-proxy=false",
            ]);
        let pid = self.spawn_daemon("docker", cmd)?;
        self.wait_for("dockerd", pid, "docker.log", || {
            self.docker()
                .args(["version", "--format", "{{.Server.Version}}"])
                .output()
                .is_ok_and(|o| o.status.success())
        })?;
        self.import_rootfs(self.docker(), "docker")
    }

    /// `<client> import rootfs.tar IMAGE` (docker and podman take the same arguments).
    fn import_rootfs(&self, mut client: Command, name: &str) -> Result<(), String> {
        client
            .arg("import")
            .arg(self.image_dir.join("rootfs.tar"))
            .arg(IMAGE);
        let out = run_cmd(client, None, Duration::from_secs(60));
        if out.code != Some(0) {
            return Err(format!("{name} import: {}", out.describe()));
        }
        Ok(())
    }

    /// The docker client (Debian's, /usr/bin/docker) talking to the private dockerd.
    pub fn docker(&self) -> Command {
        let bin = if is_executable(Path::new("/usr/bin/docker")) {
            "/usr/bin/docker"
        } else {
            "docker"
        };
        let mut c = Command::new(bin);
        c.env("DOCKER_CONFIG", self.dir.join("docker-cli"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .arg("--host")
            .arg(format!("unix://{}", self.docker_sock().display()));
        c
    }

    // ---------------------------------------------------------------- podman

    fn setup_podman(&self) -> Result<(), String> {
        for d in ["image-tmp", "libpod-tmp", "cni", "home", "xdg"] {
            fs::create_dir_all(self.dir.join(d)).map_err(|e| format!("{d}: {e}"))?;
        }
        if let Some(u) = self.run_as() {
            // The run's directory is the rootless user's: storage, HOME, XDG_RUNTIME_DIR.
            fs::set_permissions(self.dir.join("xdg"), fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("chmod xdg: {e}"))?;
            let out = Command::new("chown")
                .args(["-R", &format!("{}:{}", u.uid, u.gid)])
                .arg(&self.dir)
                .output()
                .map_err(|e| format!("chown: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "chown {}: {}",
                    self.dir.display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let ulimits = match podman_ulimits() {
            Some((line, why)) => {
                note(&format!("podman suite: {why}"));
                line
            }
            None => String::new(),
        };
        write(
            &self.dir.join("containers.conf"),
            &self
                .template("containers.conf")?
                .replace("@ULIMITS@", &ulimits),
        )?;
        write(
            &self.dir.join("storage.conf"),
            &self.template("storage.conf")?,
        )?;
        write(
            &self.dir.join("registries.conf"),
            "# no registries: the test image is imported\nunqualified-search-registries = []\n",
        )?;
        self.import_rootfs(self.podman(), "podman")
    }

    /// podman with this run's private configuration, storage and runtime.
    pub fn podman(&self) -> Command {
        // Rootless: through setpriv, so that wrappers such as `in_pty` keep the user.
        let mut c = match self.run_as() {
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={}", u.uid))
                    .arg(format!("--regid={}", u.gid))
                    .args(["--clear-groups", "--", "podman"]);
                c
            }
            None => Command::new("podman"),
        };
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.join("registries.conf"),
            )
            .env_remove("CONTAINER_HOST")
            .env_remove("CONTAINER_CONNECTION")
            .arg("--runtime")
            .arg(&self.kakuri);
        if let Some(u) = self.run_as() {
            c.env("USER", &u.name)
                .env("LOGNAME", &u.name)
                .env("HOME", &u.home)
                .env("XDG_RUNTIME_DIR", &u.xdg_runtime_dir);
            c.current_dir(&self.dir);
        }
        c
    }

    /// The unprivileged user podman runs as ([`Kind::PodmanRootless`]).
    pub fn run_as(&self) -> Option<kakuri_runtime_tests::RunAs> {
        if self.kind != Kind::PodmanRootless {
            return None;
        }
        let name = rootless_user();
        let out = Command::new("getent")
            .args(["passwd", &name])
            .output()
            .ok()?;
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let f: Vec<&str> = line.trim().split(':').collect();
        Some(kakuri_runtime_tests::RunAs {
            name,
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
            xdg_runtime_dir: self.dir.join("xdg"),
            home: self.dir.join("home"),
        })
    }

    // ---------------------------------------------------------------- docker-like CLIs

    /// `docker` or `podman`, configured for this run.
    pub fn cli(&self) -> Command {
        match self.kind {
            Kind::Docker => self.docker(),
            Kind::Podman | Kind::PodmanRootless => self.podman(),
            Kind::Containerd | Kind::Cri => {
                panic!("cli() is for docker and podman; use ctr() or the CRI client")
            }
        }
    }

    /// `<cli> run <options that select kakuri and keep cgroups in this run> <args>`.
    pub fn cli_run(&self, args: &[&str]) -> Command {
        self.cli_verb("run", args)
    }

    /// `<cli> create|run ...` with the options every container of this run gets.
    pub fn cli_verb(&self, verb: &str, args: &[&str]) -> Command {
        let mut c = self.cli();
        c.arg(verb);
        match self.kind {
            Kind::Docker => {
                c.args(["--runtime", "kakuri"]);
            }
            Kind::Podman => {
                c.args(["--cgroup-parent", &self.cgroup_parent_arg()]);
            }
            // Rootless on cgroup v1: podman asks for no cgroup at all.
            Kind::PodmanRootless => {}
            Kind::Containerd | Kind::Cri => unreachable!("cli() already refused containerd"),
        }
        c.args(["--network", "none"]).args(args);
        c
    }

    /// The directory where the runtime keeps its state for this run's containers (its
    /// `--root`). Docker 20.10 names it after runc whatever the runtime's name. podman runs
    /// the runtime with its default root, `/run/<binary name>` for runc and kakuri: podman
    /// 4.3 does not forward `--runtime-flag` to the cleanup command conmon runs when a
    /// container exits, so a private root would be missed there.
    pub fn runtime_state_dir(&self) -> PathBuf {
        match self.kind {
            Kind::Docker => self.dir.join("docker-exec/runtime-runc"),
            Kind::Containerd => self.dir.join("runtime-root"),
            // The `Root` option of the `kakuri` handler in templates/containerd-k8s.toml.
            Kind::Cri => self.dir.join("kakuri-root"),
            Kind::Podman => Path::new("/run").join(self.kakuri.file_name().unwrap_or_default()),
            // The runtime's rootless default: $XDG_RUNTIME_DIR/<binary name>.
            Kind::PodmanRootless => self
                .dir
                .join("xdg")
                .join(self.kakuri.file_name().unwrap_or_default()),
        }
    }

    /// The runtime binary the runc v2 shim of container `id` was told to use (`binary_name`
    /// of the task's options.json in containerd's state), for containerd and docker.
    pub fn shim_binary_name(&self, id: &str) -> Option<String> {
        let options = self
            .dir
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.cgroup_parent)
            .join(id)
            .join("options.json");
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(options).ok()?).ok()?;
        v["binary_name"].as_str().map(str::to_string)
    }
}

/// A bridge name (at most 15 bytes) and a private /24 for one CRI run: `10.234.N.0/24` with the
/// first N (from the run's suffix) that no route or address on the host uses yet.
fn cni_network(suffix: &str) -> Result<(String, String), String> {
    let hash = suffix
        .bytes()
        .fold(5381u32, |h, b| h.wrapping_mul(33) ^ u32::from(b));
    let bridge = format!("kkcri{:06x}", hash & 0xff_ffff);
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .map_err(|e| format!("ip route: {e}"))?;
    let addrs = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .map_err(|e| format!("ip addr: {e}"))?;
    for i in 0..250u32 {
        let n = (hash >> 8).wrapping_add(i) % 250 + 1;
        let prefix = format!("10.234.{n}.");
        if !routes.contains(&prefix) && !addrs.contains(&prefix) && !routes.contains("10.234.0.0") {
            return Ok((bridge, format!("10.234.{n}.0/24")));
        }
    }
    Err("no free 10.234.N.0/24 subnet for the CNI bridge".into())
}

/// On a machine whose bounding set lacks CAP_SYS_RESOURCE podman's default nofile/nproc
/// rlimits (1048576 and more) cannot be set by any runtime: returns a `default_ulimits` line
/// with this process's hard limits (capped by kernel.pid_max, which podman's own nproc limit
/// does not exceed) and the reason, or None when the capability is there.
fn podman_ulimits() -> Option<(String, String)> {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())?;
    if bnd & (1 << CAP_SYS_RESOURCE) != 0 {
        return None;
    }
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let hard = |label: &str| -> Option<u64> {
        let line = limits.lines().find(|l| l.starts_with(label))?;
        let rest = line[label.len()..].split_whitespace().nth(1)?;
        if rest == "unlimited" {
            Some(1 << 20)
        } else {
            rest.parse().ok()
        }
    };
    let nofile = hard("Max open files")?;
    let pid_max: u64 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    let nproc = hard("Max processes")?.min(pid_max);
    Some((
        format!("default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]"),
        format!(
            "the capability bounding set lacks CAP_SYS_RESOURCE, so podman's default ulimits are \
             lowered to nofile={nofile} nproc={nproc} (this process's hard limits)"
        ),
    ))
}

pub fn write(path: &Path, content: &str) -> Result<(), String> {
    fs::write(path, content).map_err(|e| format!("write {}: {e}", path.display()))
}

/// The container's cgroup directory in the `controller` v1 hierarchy, from /proc/PID/cgroup;
/// on a pure cgroup v2 host (no v1 line), its cgroup2 directory.
pub fn cgroup_dir(pid: u32, controller: &str) -> PathBuf {
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/cgroup: {e}"));
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        if let Some(path) = cg.lines().find_map(|l| l.strip_prefix("0::")) {
            return Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        }
    }
    for line in cg.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next(), parts.next());
        if let (Some(ctrls), Some(path)) = (ctrls, path) {
            if ctrls.split(',').any(|c| c == controller) {
                return Path::new("/sys/fs/cgroup")
                    .join(controller)
                    .join(path.trim_start_matches('/'));
            }
        }
    }
    panic!("process {pid} has no {controller} cgroup in:\n{cg}");
}

pub fn read_trim(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// A `/proc/self/status` capability mask line (`CapEff:` ...) from command output.
pub fn cap_mask(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {field} line in:\n{status}"))
}

/// Shell script printing what a container sees of the masked and read-only paths of the
/// default specs; checked by [`check_masked_paths`].
pub const MASKED_PROBE: &str = "echo keys=$(wc -c < /proc/keys); \
     echo timer_list=$(wc -c < /proc/timer_list); \
     echo firmware=$(ls -A /sys/firmware | wc -l); \
     grep -E ' /proc/(sys|sysrq-trigger|keys|timer_list) | /sys/firmware ' /proc/self/mountinfo; \
     echo x > /proc/sys/kernel/domainname 2>/dev/null; echo domainname_rc=$?";

/// Checks the output of [`MASKED_PROBE`]: masked files read empty (where the host has them),
/// /sys/firmware is an empty read-only tmpfs, /proc/sys is mounted read-only and refuses writes.
#[track_caller]
pub fn check_masked_paths(out: &Output) {
    let text = out.ok();
    let value = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in {}", out.describe()))
            .trim()
            .to_string()
    };
    for f in ["keys", "timer_list"] {
        if Path::new(&format!("/proc/{f}")).exists() {
            assert_eq!(value(f), "0", "/proc/{f} is not masked: {}", out.describe());
        }
    }
    assert_eq!(
        value("firmware"),
        "0",
        "/sys/firmware is not masked: {}",
        out.describe()
    );
    let mount_opts = |point: &str| -> String {
        text.lines()
            .find(|l| l.split(' ').nth(4) == Some(point))
            .and_then(|l| l.split(' ').nth(5))
            .unwrap_or_else(|| panic!("{point} is not a mount point: {}", out.describe()))
            .to_string()
    };
    for point in ["/proc/sys", "/proc/sysrq-trigger", "/sys/firmware"] {
        if !Path::new(point).exists() {
            continue; // not on this kernel: nothing to protect
        }
        assert!(
            mount_opts(point).split(',').any(|o| o == "ro"),
            "{point} is not read-only: {}",
            out.describe()
        );
    }
    assert_ne!(
        value("domainname_rc"),
        "0",
        "/proc/sys accepted a write: {}",
        out.describe()
    );
}

/// Value of a `Key:\tvalue` line of /proc/PID/status-like text.
/// The bounded wait of the SIGPIPE scenarios: each normally ends in a few seconds; a writer
/// left running after its reader (`head`) exited keeps the container up until this expires.
pub const PIPE_WAIT: Duration = Duration::from_secs(40);
/// 10 MiB through `head -c`: `yes` must end on SIGPIPE once `head` has its bytes.
pub const HEAD_OF_YES: &str = "yes 0123456789abcdef | head -c 10485760";
/// A shell loop that only ends on SIGPIPE: the builtin `echo` reports a write error and the
/// loop goes on.
pub const LOOP_INTO_HEAD: &str = "while :; do echo y; done | head -1";

/// `HEAD_OF_YES` ended within [`PIPE_WAIT`], exited 0 and delivered all 10 MiB intact.
#[track_caller]
pub fn check_head_of_yes(out: &Output) {
    assert!(
        !out.timed_out,
        "the bounded wait ({PIPE_WAIT:?}) expired: `yes` did not end when `head` exited \
         (SIGPIPE not delivered in the container?): {}",
        out.summary()
    );
    assert_eq!(out.code, Some(0), "exit code: {}", out.summary());
    assert_eq!(
        out.stdout.len(),
        10 * 1024 * 1024,
        "bytes delivered: {}",
        out.summary()
    );
    let line = b"0123456789abcdef\n";
    assert!(
        out.stdout.chunks(line.len()).all(|c| line.starts_with(c)),
        "output corrupted"
    );
}

/// `LOOP_INTO_HEAD` ended within [`PIPE_WAIT`] with exit 0 and one line.
#[track_caller]
pub fn check_loop_into_head(out: &Output) {
    assert!(
        !out.timed_out,
        "the bounded wait ({PIPE_WAIT:?}) expired: the `while` loop did not end when `head` \
         exited (SIGPIPE not delivered in the container?): {}",
        out.summary()
    );
    assert_eq!(out.code, Some(0), "exit code: {}", out.summary());
    assert_eq!(out.out(), "y\n", "{}", out.summary());
}

pub fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {field} line in:\n{status}"))
}

/// Waits until `cond` holds (checked every 50 ms), panicking with `what` after `secs`.
#[track_caller]
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// Processes whose command line contains `needle` (for leak checks of single containers).
pub fn pids_with_cmdline(needle: &str) -> BTreeSet<u32> {
    let mut found = BTreeSet::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            if let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                if cmd.contains(needle) {
                    found.insert(pid);
                }
            }
        }
    }
    found
}

/// Cgroup directories named `leaf` below this run's parent, in every v1 hierarchy and cgroup2.
pub fn cgroup_dirs_named(parent: &str, leaf_contains: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for h in hierarchies.flatten() {
        let base = h.path().join(parent);
        let mut stack = vec![base];
        while let Some(d) = stack.pop() {
            let Ok(entries) = fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let p = e.path();
                    if e.file_name().to_string_lossy().contains(leaf_contains) {
                        found.push(p.clone());
                    }
                    stack.push(p);
                }
            }
        }
    }
    found
}

/// `KAKURI_CLIENT_CGROUP_DRIVER`: `systemd` configures every engine and the runtime for
/// systemd's cgroup driver (transient scopes over D-Bus); unset or `cgroupfs`: cgroupfs.
pub fn systemd_driver() -> bool {
    match std::env::var("KAKURI_CLIENT_CGROUP_DRIVER").as_deref() {
        Ok("systemd") => true,
        Ok("cgroupfs") | Ok("") | Err(_) => false,
        Ok(other) => {
            panic!("KAKURI_CLIENT_CGROUP_DRIVER={other:?}: expected \"systemd\" or \"cgroupfs\"")
        }
    }
}

/// The container's cgroup path in systemd's tree (`name=systemd` on v1/hybrid, else cgroup2).
fn systemd_cgroup_path(pid: u32) -> String {
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/cgroup: {e}"));
    let line = |prefix: &str| {
        cg.lines()
            .find_map(|l| l.split_once(prefix).map(|(_, p)| p.to_string()))
    };
    line(":name=systemd:")
        .or_else(|| line("0::"))
        .unwrap_or_else(|| panic!("process {pid} has no systemd cgroup in:\n{cg}"))
}

fn systemctl(args: &[&str]) -> Output {
    let mut c = Command::new("systemctl");
    c.arg("--no-pager").args(args);
    run_cmd(c, None, Duration::from_secs(30))
}

/// With the systemd driver: container `id` (init `pid`) runs in a transient scope of this run's
/// slice whose name holds the id, which `systemctl list-units --type=scope` lists as active and
/// `systemctl status` shows holding `pid`. Returns the scope's name (for
/// [`check_scope_gone`]); None with cgroupfs.
#[track_caller]
pub fn check_scope_running(h: &Harness, id: &str, pid: u32) -> Option<String> {
    let slice = h.slice.as_deref()?;
    let path = systemd_cgroup_path(pid);
    let (parent, scope) = path.rsplit_once('/').unwrap_or_default();
    assert!(
        scope.ends_with(".scope") && scope.contains(id),
        "container {id} (pid {pid}) is not in a scope named after it: {path}"
    );
    assert_eq!(
        parent,
        format!("/{slice}"),
        "the scope of {id} is not in the run's slice"
    );
    let listed = systemctl(&[
        "list-units",
        "--type=scope",
        "--plain",
        "--no-legend",
        scope,
    ]);
    assert!(
        listed
            .out()
            .split_whitespace()
            .collect::<Vec<_>>()
            .starts_with(&[scope, "loaded", "active", "running"]),
        "systemctl list-units --type=scope does not show {scope} running: {}",
        listed.describe()
    );
    let status = systemctl(&["status", scope]);
    assert_eq!(status.code, Some(0), "{}", status.describe());
    let text = status.out();
    assert!(
        text.contains(&format!(
            "Loaded: loaded (/run/systemd/transient/{scope}; transient)"
        )) && text.contains(&pid.to_string()),
        "systemctl status {scope} does not show a transient scope holding {pid}: {text}"
    );
    Some(scope.to_string())
}

/// With the systemd driver, after the container's removal: systemd has no unit `scope` left
/// (polled for 10 s: systemd drops the unit once it sees the cgroup empty).
#[track_caller]
pub fn check_scope_gone(scope: Option<String>) {
    let Some(scope) = scope else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = systemctl(&[
            "list-units",
            "--all",
            "--type=scope",
            "--plain",
            "--no-legend",
            &scope,
        ]);
        if listed.code == Some(0) && listed.out().trim().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "scope {scope} still known to systemd 10 s after the container's removal: {}",
            listed.describe()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// `KAKURI_CLIENT_IMAGE_DIR`: a test image already made by `clients/build-image` (its
/// `rootfs.tar` and `oci-image.tar` are only read), used instead of building one per run; the
/// systemd guest's runner builds it once on the host, where it takes a second instead of a
/// minute of emulated forks.
fn prebuilt_image() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("KAKURI_CLIENT_IMAGE_DIR")?);
    for f in ["rootfs.tar", "oci-image.tar"] {
        assert!(
            dir.join(f).is_file(),
            "KAKURI_CLIENT_IMAGE_DIR={}: no {f} (make it with runtime-tests/clients/build-image)",
            dir.display()
        );
    }
    Some(dir)
}
