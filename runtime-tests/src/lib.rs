//! Support library for kakuri's integration tests.
//!
//! Every test builds a [`TestEnv`]: a private temp dir (`/tmp/kakuri-kt-<pid>-<n>`) holding the
//! runtime's `--root`, the bundles and the captured output of every runtime command. Bundles are
//! made from a busybox-static rootfs template (built once per test binary, hard-linked per
//! bundle) and a `config.json` produced by `<runtime> spec`, edited as a `serde_json::Value`.
//! Containers are wrapped in a [`Container`] guard that always runs `delete --force` on drop,
//! and [`TestEnv::finish`] checks that nothing the test made is left on the machine.
//!
//! The runtime under test is `$KAKURI_BIN`, or `<target>/debug/kakuri` after one
//! `cargo build -p kakuri`. The suite is validated against runc with `KAKURI_BIN=/usr/sbin/runc`.

pub mod seccomp_profile;
pub mod vm;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{symlink, DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Prefix of every id (container, test) the suite makes: `kt-<pid>-<counter>`.
pub const ID_PREFIX: &str = "kt-";
/// Environment variable set on every runtime command and container process of a test, with
/// the test's id as value; the leak checker finds stray processes by it.
pub const ENV_MARKER: &str = "KAKURI_TEST_ID";
/// Default time limit for one runtime command.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time limit for waiting on a condition.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(15);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh id, unique on this machine while this process lives: `kt-<pid>-<counter>`.
pub fn unique_id() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
    format!("{ID_PREFIX}{}-{n}", std::process::id())
}

/// Path of the runtime binary under test.
///
/// `$KAKURI_BIN` if set; otherwise `cargo build -p kakuri` is run once (with `$CARGO` or
/// `cargo`, in the workspace) and `<target dir>/debug/kakuri` is used, honouring
/// `$CARGO_TARGET_DIR`.
pub fn runtime_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("KAKURI_BIN").filter(|b| !b.is_empty()) {
            let bin = PathBuf::from(bin);
            assert!(bin.is_file(), "KAKURI_BIN={} is not a file", bin.display());
            return bin;
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("runtime-tests has a parent dir (the workspace)")
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(&cargo)
            .args(["build", "-p", "kakuri"])
            .current_dir(&workspace)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cargo:?} build -p kakuri: {e}"));
        assert!(status.success(), "cargo build -p kakuri failed: {status}");
        let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|t| !t.is_empty()) {
            Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
            Some(t) => workspace.join(t),
            None => workspace.join("target"),
        };
        let bin = target.join("debug").join("kakuri");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// Panics unless the tests run as root (they create namespaces, cgroups and mounts).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "the runtime tests must run as root");
}

// ---------------------------------------------------------------------------------------------
// rootfs template and base config

struct Template {
    rootfs: PathBuf,
    config: Value,
}

static TEMPLATE_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_template_dir() {
    if let Some(dir) = TEMPLATE_DIR.get() {
        let _ = fs::remove_dir_all(dir);
    }
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        require_root();
        let dir =
            std::env::temp_dir().join(format!("kakuri-{ID_PREFIX}{}-template", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        if TEMPLATE_DIR.set(dir.clone()).is_ok() {
            // SAFETY: remove_template_dir is an extern "C" fn without arguments that only reads
            // a OnceLock already set above; registering it has no other precondition.
            let rc = unsafe { libc::atexit(remove_template_dir) };
            assert_eq!(rc, 0, "atexit failed");
        }
        let rootfs = dir.join("rootfs");
        build_busybox_rootfs(&rootfs);
        let out = Command::new(runtime_bin())
            .args(["spec", "--bundle"])
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} spec: {e}", runtime_bin().display()));
        assert!(
            out.status.success(),
            "{} spec failed: {}",
            runtime_bin().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let config = read_json(&dir.join("config.json"));
        Template { rootfs, config }
    })
}

fn build_busybox_rootfs(rootfs: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing (install busybox-static)"
    );
    for d in [
        "bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/user",
        "mnt",
        "run",
        "var",
    ] {
        fs::create_dir_all(rootfs.join(d)).expect("create rootfs dir");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        symlink("busybox", rootfs.join("bin").join(applet)).expect("busybox applet symlink");
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .expect("write passwd");
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nwheel:x:10:\ntty:x:5:\nuser:x:1000:\n",
    )
    .expect("write group");
}

/// Recreates `src` at `dst`: directories are made with the same mode, regular files are
/// hard-linked (copied if linking fails), symlinks are recreated.
pub fn link_tree(src: &Path, dst: &Path) {
    let meta =
        fs::symlink_metadata(src).unwrap_or_else(|e| panic!("cannot stat {}: {e}", src.display()));
    if meta.file_type().is_symlink() {
        let target = fs::read_link(src).expect("read_link");
        symlink(target, dst).unwrap_or_else(|e| panic!("symlink {}: {e}", dst.display()));
    } else if meta.is_dir() {
        fs::DirBuilder::new()
            .mode(meta.mode() & 0o7777)
            .create(dst)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", dst.display()));
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777)).expect("chmod");
        for entry in fs::read_dir(src).expect("read_dir") {
            let entry = entry.expect("dir entry");
            link_tree(&entry.path(), &dst.join(entry.file_name()));
        }
    } else if fs::hard_link(src, dst).is_err() {
        fs::copy(src, dst).unwrap_or_else(|e| panic!("copy to {}: {e}", dst.display()));
    }
}

/// `chown` every directory under `dir` (and `dir`), leaving files and symlinks alone.
pub fn chown_dirs(dir: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
    for entry in fs::read_dir(dir).expect("read_dir").flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            chown_dirs(&entry.path(), uid, gid);
        }
    }
}

/// Reads and parses a JSON file, panicking with the file name on error.
pub fn read_json(path: &Path) -> Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}\n{text}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// command output

/// What a runtime command did.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit code, None when killed by a signal.
    pub code: Option<i32>,
    /// Terminating signal, if any.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Files stdout/stderr were written to (a detached container keeps writing there).
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics (with the command line and its output) unless the command exited 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panics unless the command exited with `code`.
    #[track_caller]
    pub fn code_is(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit status: {self}");
        self
    }

    /// Panics unless the command failed (exit 1, like runc) and its error message contains
    /// `needle` (see [`CmdOutput::stderr_has`]).
    #[track_caller]
    pub fn fails_with(&self, needle: &str) -> &Self {
        assert_eq!(self.code, Some(1), "expected exit 1: {self}");
        assert!(
            self.stderr_has(needle),
            "stderr does not contain {needle:?}: {self}"
        );
        self
    }

    /// True if stderr contains `needle`, either verbatim or inside a text-format log line
    /// (`msg="..."` escapes `"` and `\\` like runc's logrus output).
    pub fn stderr_has(&self, needle: &str) -> bool {
        self.stderr.contains(needle) || unescape_log(&self.stderr).contains(needle)
    }
}

/// Undoes the quoting of text-format log values: `\\"` becomes `"`, `\\\\` becomes `\\`.
pub fn unescape_log(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('"' | '\\')) => out.push(n),
                Some(n) => {
                    out.push(c);
                    out.push(n);
                }
                None => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> code {:?} signal {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.code, self.signal, self.stdout, self.stderr
        )
    }
}

/// A command started in the background (e.g. a foreground `run` killed from another thread).
pub struct Spawned {
    child: Child,
    cmdline: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the command (killing it after `timeout`, then panicking).
    #[track_caller]
    pub fn wait(self, timeout: Duration) -> CmdOutput {
        self.wait_result(timeout).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for the command; after `timeout` it is killed and an error describes it.
    pub fn wait_result(mut self, timeout: Duration) -> Result<CmdOutput, String> {
        let start = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() > timeout => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!(
                        "`{}` did not finish within {timeout:?}; stdout: {}; stderr: {}",
                        self.cmdline,
                        fs::read_to_string(&self.stdout_path).unwrap_or_default(),
                        fs::read_to_string(&self.stderr_path).unwrap_or_default()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("waiting for `{}`: {e}", self.cmdline)),
            }
        };
        Ok(CmdOutput {
            cmdline: self.cmdline.clone(),
            code: status.code(),
            signal: status.signal(),
            stdout: fs::read_to_string(&self.stdout_path).unwrap_or_default(),
            stderr: fs::read_to_string(&self.stderr_path).unwrap_or_default(),
            stdout_path: self.stdout_path.clone(),
            stderr_path: self.stderr_path.clone(),
        })
    }
}

/// Starts the runtime with every signal at its default action and none blocked, as the engines
/// (containerd's and podman's fork+exec) start it. Without this, std's `Command` spawns through
/// glibc's posix_spawn, which leaves glibc's internal signals 32 and 33 *ignored* in the new
/// program; runc passes that on to the container, which would make a runc-vs-kakuri comparison
/// of `SigIgn` measure the test harness instead of the runtimes.
pub fn clean_signals(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (rt_sigaction, sigprocmask) with pointers to its own stack values; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            // The raw system call: glibc's sigaction refuses its internal signals 32 and 33.
            // The kernel's struct: handler (SIG_DFL = 0), flags, restorer, mask.
            let dfl = [0u64; 4];
            for sig in 1..=64 {
                if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                    continue;
                }
                libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), 0usize, 8usize);
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// The cgroup directory of `pid` in every hierarchy (v1 controllers, `name=systemd`, the v2
/// one as "unified"), keyed by the hierarchy's directory name under /sys/fs/cgroup; hierarchies
/// whose directory does not exist (not mounted here) are left out.
pub fn cgroup_dirs_of(pid: i32) -> Vec<(String, PathBuf)> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            let hier = match ctrls {
                "" => "unified".to_string(),
                c => c.strip_prefix("name=").unwrap_or(c).to_string(),
            };
            let dir = PathBuf::from(format!("/sys/fs/cgroup/{hier}{path}"));
            dir.is_dir().then_some((hier, dir))
        })
        .collect()
}

/// Makes `src` (an fd open in the test process) appear as `dst` in the child, without
/// close-on-exec.
pub fn pass_fd(cmd: &mut Command, src: RawFd, dst: RawFd) {
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
    // functions (dup2, fcntl) on fds; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if src == dst {
                let flags = libc::fcntl(dst, libc::F_GETFD);
                if flags < 0 || libc::fcntl(dst, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(src, dst) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

// ---------------------------------------------------------------------------------------------
// runtime wrapper

/// Runs the runtime under test with a fixed `--root`, capturing output to files.
#[derive(Debug, Clone)]
pub struct Runtime {
    bin: PathBuf,
    root: PathBuf,
    out_dir: PathBuf,
    marker: String,
    seq: std::sync::Arc<AtomicUsize>,
    /// Every command runs as this unprivileged user ([`TestEnv::as_user`]).
    user: Option<RunAs>,
    /// ... started in this cgroup v2 directory ([`TestEnv::in_cgroup`]).
    user_cgroup: Option<PathBuf>,
}

/// An unprivileged user the runtime runs as: ids, and the `XDG_RUNTIME_DIR`/`HOME` it gets.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub xdg_runtime_dir: PathBuf,
    pub home: PathBuf,
}

impl RunAs {
    /// Make `cmd` run as this user (no supplementary groups) with its own environment.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.uid(self.uid).gid(self.gid);
        self.set_env(cmd);
    }

    /// Like [`RunAs::apply`], but the process first moves itself, still as root, into the
    /// cgroup v2 directory `dir` (writing its `cgroup.procs`), then drops to the user: an
    /// unprivileged process can move processes only within a subtree it is already in (the
    /// cgroup v2 delegation containment rule), so the user's commands must start there.
    pub fn apply_in_cgroup(&self, cmd: &mut Command, dir: &Path) {
        self.set_env(cmd);
        let procs = std::ffi::CString::new(dir.join("cgroup.procs").into_os_string().into_vec())
            .expect("a cgroup path without NUL");
        let (uid, gid) = (self.uid, self.gid);
        // SAFETY: the closure runs in the forked child before exec; it only makes
        // async-signal-safe system calls (open, write, close, setgroups, setgid, setuid) on
        // data prepared before the fork, and allocates nothing (io::Error::last_os_error
        // holds a plain errno).
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
    }

    fn set_env(&self, cmd: &mut Command) {
        cmd.env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.xdg_runtime_dir);
    }
}

impl Runtime {
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<bin> --root <root> <args>` with stdin from /dev/null and the test marker in the env.
    pub fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        self.cmd_of(&self.bin, args)
    }

    /// [`Runtime::cmd`] with another binary (a copy of the runtime, say) on the same `--root`.
    pub fn cmd_of<S: AsRef<OsStr>>(&self, bin: &Path, args: &[S]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("--root").arg(&self.root);
        cmd.args(args);
        cmd.env(ENV_MARKER, &self.marker);
        cmd.stdin(Stdio::null());
        clean_signals(&mut cmd);
        self.apply_user(&mut cmd);
        cmd
    }

    /// Make `cmd` run as the user of this runtime, if any (in its cgroup, if one was given).
    pub fn apply_user(&self, cmd: &mut Command) {
        match (&self.user, &self.user_cgroup) {
            (Some(u), Some(dir)) => u.apply_in_cgroup(cmd, dir),
            (Some(u), None) => u.apply(cmd),
            _ => {}
        }
    }

    /// The user commands run as, if not root.
    pub fn user(&self) -> Option<&RunAs> {
        self.user.as_ref()
    }

    /// Same as [`Runtime::cmd`] without the `--root` option (for global-option tests).
    pub fn bare_cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        cmd.env(ENV_MARKER, &self.marker);
        cmd.stdin(Stdio::null());
        self.apply_user(&mut cmd);
        cmd
    }

    fn out_files(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let n = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        (
            dir.join(format!("cmd-{n}.out")),
            dir.join(format!("cmd-{n}.err")),
        )
    }

    /// Starts `cmd` with stdout/stderr going to fresh files.
    #[track_caller]
    pub fn spawn(&self, cmd: Command) -> Spawned {
        self.try_spawn(cmd).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Runtime::spawn`], with the output files in `dir` (e.g. a bundle dir, so a
    /// detached container's output lands next to its config).
    #[track_caller]
    pub fn spawn_in(&self, cmd: Command, dir: &Path) -> Spawned {
        self.try_spawn_in(cmd, dir)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_spawn(&self, cmd: Command) -> Result<Spawned, String> {
        self.try_spawn_in(cmd, &self.out_dir)
    }

    fn try_spawn_in(&self, mut cmd: Command, dir: &Path) -> Result<Spawned, String> {
        let (out, err) = self.out_files(dir);
        let cmdline = describe(&cmd);
        let open = |p: &Path| File::create(p).map_err(|e| format!("create {}: {e}", p.display()));
        cmd.stdout(open(&out)?);
        cmd.stderr(open(&err)?);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot spawn `{cmdline}`: {e}"))?;
        Ok(Spawned {
            child,
            cmdline,
            stdout_path: out,
            stderr_path: err,
        })
    }

    /// `delete --force <id>` for clean-up paths: never panics (it may run while unwinding).
    fn force_delete(&self, id: &str) {
        if let Ok(s) = self.try_spawn(self.cmd(&["delete", "--force", id])) {
            let _ = s.wait_result(CMD_TIMEOUT);
        }
    }

    /// Runs `cmd` to completion (time limit [`CMD_TIMEOUT`]).
    pub fn output(&self, cmd: Command) -> CmdOutput {
        self.spawn(cmd).wait(CMD_TIMEOUT)
    }

    /// Runs `<bin> --root <root> <args>` to completion.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> CmdOutput {
        self.output(self.cmd(args))
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

// ---------------------------------------------------------------------------------------------
// test environment

/// Per-test state: id, temp dir, runtime root, ids to clean up.
pub struct TestEnv {
    id: String,
    dir: PathBuf,
    rt: Runtime,
    ids: Mutex<Vec<String>>,
    bundles: AtomicUsize,
    cleaned: std::sync::atomic::AtomicBool,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    pub fn new() -> Self {
        require_root();
        let _ = template();
        let id = unique_id();
        let dir = std::env::temp_dir().join(format!("kakuri-{id}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let rt = Runtime {
            bin: runtime_bin().to_path_buf(),
            root: dir.join("root"),
            out_dir: dir.clone(),
            marker: id.clone(),
            seq: Default::default(),
            user: None,
            user_cgroup: None,
        };
        TestEnv {
            id,
            dir,
            rt,
            ids: Mutex::new(Vec::new()),
            bundles: AtomicUsize::new(0),
            cleaned: Default::default(),
        }
    }

    /// Like [`TestEnv::new`], but every command runs `bin` instead of the runtime under test
    /// (e.g. `/usr/sbin/runc`, for tests that compare two runtimes on one bundle). Bundles still
    /// come from the runtime under test's `spec`.
    pub fn with_runtime(bin: &Path) -> Self {
        let mut env = Self::new();
        env.rt.bin = bin.to_path_buf();
        env
    }

    /// Every runtime command of this test runs as `user` (from `getent passwd`; see
    /// `runtime-tests/setup-rootless-user`), with `XDG_RUNTIME_DIR` and `HOME` in the test dir.
    /// The test dir is given to the user; it goes with the test.
    pub fn as_user(mut self, user: &str) -> Self {
        let out = Command::new("getent")
            .args(["passwd", user])
            .output()
            .expect("run getent");
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let f: Vec<&str> = line.trim().split(':').collect();
        assert!(
            f.len() >= 4,
            "no user {user}: run runtime-tests/setup-rootless-user (setup-host does)"
        );
        let (uid, gid) = (f[2].parse().expect("uid"), f[3].parse().expect("gid"));
        let xdg = self.dir.join("xdg");
        let home = self.dir.join("home");
        for d in [&xdg, &home] {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(d)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        for d in [&self.dir, &xdg, &home] {
            std::os::unix::fs::chown(d, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", d.display()));
        }
        self.rt.user = Some(RunAs {
            name: user.to_string(),
            uid,
            gid,
            xdg_runtime_dir: xdg,
            home,
        });
        self
    }

    /// Every runtime command of this (rootless) test starts in the cgroup v2 directory `dir`
    /// (see [`RunAs::apply_in_cgroup`]): a user's shell in a delegated subtree.
    pub fn in_cgroup(mut self, dir: &Path) -> Self {
        assert!(self.rt.user.is_some(), "in_cgroup needs as_user first");
        self.rt.user_cgroup = Some(dir.to_path_buf());
        self
    }

    /// A private copy of the runtime binary in the test's directory, so that an attack that got
    /// through could only ever change the copy.
    pub fn runtime_copy(&self) -> PathBuf {
        let copy = self.dir.join("kakuri-copy");
        fs::copy(runtime_bin(), &copy).expect("copy the runtime binary");
        copy
    }

    /// The test's id (also the value of [`ENV_MARKER`]).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The test's private temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn rt(&self) -> &Runtime {
        &self.rt
    }

    /// A fresh container id, recorded for clean-up and leak checks.
    pub fn new_id(&self) -> String {
        let id = unique_id();
        self.track(&id);
        id
    }

    /// Records an id for clean-up (`delete --force`) and leak checks.
    pub fn track(&self, id: &str) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
        }
    }

    /// A new bundle: busybox rootfs + the runtime's `spec` output with test defaults.
    pub fn bundle(&self) -> Bundle {
        let n = self.bundles.fetch_add(1, Ordering::SeqCst) + 1;
        let dir = self.dir.join(format!("bundle-{n}"));
        fs::create_dir(&dir).expect("mkdir bundle");
        let t = template();
        link_tree(&t.rootfs, &dir.join("rootfs"));
        let mut b = Bundle {
            dir,
            config: t.config.clone(),
            marker: self.id.clone(),
        };
        b.set("/process/terminal", json!(false));
        b.set_args(&["true"]);
        b.add_env(&format!("{ENV_MARKER}={}", self.id));
        b.set("/root/path", json!("rootfs"));
        b.set("/root/readonly", json!(false));
        if let Some(u) = &self.rt.user {
            // The rootfs directories (never the hard-linked files) belong to the user, as an
            // unpacked image of its own would.
            chown_dirs(&b.dir, u.uid, u.gid);
        }
        b
    }

    /// Runs `<bin> --root <root> <args>`.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> CmdOutput {
        self.rt.run(args)
    }

    /// `create --bundle <bundle> <fresh id>`; panics if it fails.
    pub fn create(&self, bundle: &Bundle) -> Container<'_> {
        let id = self.new_id();
        let out = self.create_raw(bundle, &id, &[]);
        out.ok();
        self.container(&id, &out)
    }

    /// `create --bundle <bundle> [extra] <id>`; the id is tracked. The command's (and so the
    /// container's) stdout/stderr go to `cmd-<n>.out`/`.err` files in the bundle dir.
    pub fn create_raw(&self, bundle: &Bundle, id: &str, extra: &[&str]) -> CmdOutput {
        self.track(id);
        bundle.write();
        let mut args: Vec<&OsStr> = vec![OsStr::new("create"), OsStr::new("--bundle")];
        args.push(bundle.dir().as_os_str());
        args.extend(extra.iter().map(OsStr::new));
        args.push(OsStr::new(id));
        self.rt
            .spawn_in(self.rt.cmd(&args), bundle.dir())
            .wait(CMD_TIMEOUT)
    }

    /// `run --bundle <bundle> [extra] <fresh id>` in the foreground; returns the id and output.
    pub fn run_container(&self, bundle: &Bundle, extra: &[&str]) -> (String, CmdOutput) {
        let id = self.new_id();
        bundle.write();
        let mut args: Vec<&OsStr> = vec![OsStr::new("run"), OsStr::new("--bundle")];
        args.push(bundle.dir().as_os_str());
        args.extend(extra.iter().map(OsStr::new));
        args.push(OsStr::new(&id));
        let out = self
            .rt
            .spawn_in(self.rt.cmd(&args), bundle.dir())
            .wait(CMD_TIMEOUT);
        (id, out)
    }

    /// `create` of a bundle with `process.terminal` through a fresh `--console-socket`: the
    /// created container's guard and the pty master it sent.
    #[track_caller]
    pub fn create_with_console(&self, bundle: &Bundle) -> (Container<'_>, OwnedFd) {
        let id = self.new_id();
        let sock = ConsoleSocket::bind(&self.dir.join(format!("console-{id}.sock")));
        let out = self.create_raw(
            bundle,
            &id,
            &["--console-socket", sock.path().to_str().unwrap()],
        );
        out.ok();
        let c = self.container(&id, &out);
        let (master, _) = sock.receive_master(CMD_TIMEOUT);
        (c, master)
    }

    /// Wraps an existing container (created by `out`) in a guard.
    pub fn container(&self, id: &str, out: &CmdOutput) -> Container<'_> {
        self.track(id);
        Container {
            env: self,
            id: id.to_string(),
            stdout_path: out.stdout_path.clone(),
            stderr_path: out.stderr_path.clone(),
        }
    }

    /// Everything this test left behind (without cleaning up first), retried for a few
    /// seconds because killed processes and cgroups take a moment to disappear.
    pub fn leaks(&self) -> Vec<String> {
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut tokens = ids.clone();
        tokens.push(self.id.clone());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut found = scan_leaks(
                &|s: &str| tokens.iter().any(|t| contains_token(s, t)),
                std::slice::from_ref(&self.dir),
                Some(&self.id),
            );
            // State left in the root dir for our ids.
            if let Ok(rd) = fs::read_dir(self.rt.root()) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if ids.iter().any(|i| contains_token(&name, i)) {
                        found.push(format!("state left: {}", e.path().display()));
                    }
                }
            }
            if found.is_empty() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics if [`TestEnv::leaks`] finds anything.
    #[track_caller]
    pub fn assert_no_leaks(&self) {
        let leaks = self.leaks();
        assert!(leaks.is_empty(), "test {} left: {leaks:#?}", self.id);
    }

    /// Deletes (`--force`) every container id of this test, then asserts nothing is left.
    #[track_caller]
    pub fn finish(&self) {
        self.cleanup();
        let leaks = self.leaks();
        if leaks.is_empty() {
            self.cleaned.store(true, Ordering::SeqCst);
        }
        assert!(leaks.is_empty(), "test {} left: {leaks:#?}", self.id);
    }

    fn cleanup(&self) {
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for id in ids {
            self.rt.force_delete(&id);
        }
    }
}

impl TestEnv {
    /// Last resort after a failed test: SIGKILL processes carrying this test's marker, remove
    /// cgroup dirs named after its ids. Never panics.
    fn force_cleanup(&self) {
        let me = std::process::id() as i32;
        let marker = format!("{ENV_MARKER}={}", self.id);
        if let Ok(rd) = fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                if pid != me && environ.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
                    // SAFETY: kill(2) with a pid read from /proc and a valid signal number;
                    // the process runs with this test's marker, so this test started it.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let leftovers: Vec<PathBuf> = scan_leaks(
                &|s: &str| ids.iter().any(|t| contains_token(s, t)) || contains_token(s, &self.id),
                &[],
                None,
            )
            .into_iter()
            .filter_map(|l| l.strip_prefix("cgroup: ").map(PathBuf::from))
            .collect();
            // Deepest first, so children go before parents.
            let mut sorted = leftovers;
            sorted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for dir in &sorted {
                let _ = fs::remove_dir(dir);
            }
            if sorted.is_empty() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // After a clean finish() everything is already gone; otherwise clean up hard.
        if !self.cleaned.load(Ordering::SeqCst) {
            self.cleanup();
            self.force_cleanup();
        }
        // Never recurse into a mount left under the test dir (it could be a host directory):
        // keep the dir and say so; the leak check has already failed the test.
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounted = mountinfo.lines().any(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| Path::new(p).starts_with(&self.dir))
        });
        if mounted {
            eprintln!(
                "NOT removing {}: mounts are left under it (see the leak report)",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// True if `hay` contains `id` not followed by a digit (so `kt-1-1` does not match `kt-1-10`).
pub fn contains_token(hay: &str, id: &str) -> bool {
    hay.match_indices(id).any(|(i, _)| {
        !hay[i + id.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// True if a (non-zombie) process with this pid exists.
pub fn process_alive(pid: i32) -> bool {
    pid_alive(pid)
}

/// Scans the machine for things matching `matches`: mounts (any line of mountinfo, or mount
/// points under `dirs`), cgroup directories in every cgroup hierarchy, live processes whose
/// cmdline matches or whose environment carries `ENV_MARKER=<marker>`.
pub fn scan_leaks(
    matches: &dyn Fn(&str) -> bool,
    dirs: &[PathBuf],
    marker: Option<&str>,
) -> Vec<String> {
    let mut found = Vec::new();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut cgroup_roots = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let mount_point = fields.get(4).copied().unwrap_or("");
        if matches(line) || dirs.iter().any(|d| Path::new(mount_point).starts_with(d)) {
            found.push(format!("mount: {line}"));
        }
        let fstype = line
            .split(" - ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or("");
        if fstype == "cgroup" || fstype == "cgroup2" {
            cgroup_roots.push(PathBuf::from(mount_point));
        }
    }
    for root in cgroup_roots {
        walk_cgroups(&root, matches, &mut found);
    }
    let me = std::process::id() as i32;
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == me || !pid_alive(pid) {
                continue;
            }
            let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let env_hit = String::from_utf8_lossy(&environ).split('\0').any(|kv| {
                kv.strip_prefix(ENV_MARKER)
                    .and_then(|r| r.strip_prefix('='))
                    .is_some_and(|v| marker.map_or_else(|| matches(v), |m| v == m))
            });
            if (matches(&cmdline) || env_hit) && pid_alive(pid) {
                found.push(format!("process {pid}: {cmdline}"));
            }
        }
    }
    found
}

fn walk_cgroups(dir: &Path, matches: &dyn Fn(&str) -> bool, found: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if matches(&name) {
            found.push(format!("cgroup: {}", e.path().display()));
        }
        walk_cgroups(&e.path(), matches, found);
    }
}

/// Leftovers of the whole suite: anything named `kt-<pid>-...` (or a `/tmp/kakuri-kt-<pid>-...`
/// dir) whose test process `<pid>` is gone, or which belongs to the calling process.
pub fn suite_leaks() -> Vec<String> {
    let me = std::process::id() as i32;
    let stale = |s: &str| -> bool {
        s.match_indices(ID_PREFIX).any(|(i, _)| {
            let rest = &s[i + ID_PREFIX.len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if digits.is_empty() || !rest[digits.len()..].starts_with('-') {
                return false;
            }
            let preceded_ok = i == 0
                || !s[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric());
            preceded_ok
                && digits
                    .parse::<i32>()
                    .is_ok_and(|pid| pid == me || !pid_alive(pid))
        })
    };
    let mut found = scan_leaks(&stale, &[], None);
    if let Ok(rd) = fs::read_dir(std::env::temp_dir()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("kakuri-") && stale(&name) {
                found.push(format!("temp dir: {}", e.path().display()));
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// bundle

/// A bundle dir with a busybox rootfs and a config.json kept in memory until
/// [`Bundle::write`] (called automatically by the create/run helpers).
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    config: Value,
    marker: String,
}

impl Bundle {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The rootfs dir. Its regular files are hard links to the per-binary template: replace
    /// files (write a new file, rename over) rather than modifying them in place.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    pub fn config_mut(&mut self) -> &mut Value {
        &mut self.config
    }

    /// Writes config.json.
    pub fn write(&self) {
        let path = self.dir.join("config.json");
        fs::write(
            &path,
            serde_json::to_vec_pretty(&self.config).expect("serialize config"),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Sets the value at a JSON pointer, creating missing objects on the way.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        let mut cur = &mut self.config;
        for part in pointer.split('/').skip(1) {
            if !cur.is_object() {
                *cur = json!({});
            }
            cur = cur
                .as_object_mut()
                .expect("object")
                .entry(part.to_string())
                .or_insert(Value::Null);
        }
        *cur = value;
        self
    }

    /// Removes the value at a JSON pointer (if present).
    pub fn remove(&mut self, pointer: &str) -> &mut Self {
        let (parent, key) = pointer.rsplit_once('/').expect("pointer has a '/'");
        if let Some(obj) = self
            .config
            .pointer_mut(parent)
            .and_then(|p| p.as_object_mut())
        {
            obj.remove(key);
        }
        self
    }

    fn array_mut(&mut self, pointer: &str) -> &mut Vec<Value> {
        if !self.config.pointer(pointer).is_some_and(|v| v.is_array()) {
            self.set(pointer, json!([]));
        }
        self.config
            .pointer_mut(pointer)
            .and_then(|v| v.as_array_mut())
            .expect("array")
    }

    pub fn set_args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }

    /// `sh -c <script>`.
    pub fn set_sh(&mut self, script: &str) -> &mut Self {
        self.set_args(&["sh", "-c", script])
    }

    /// Replaces process.env (the test marker and a PATH are always kept).
    pub fn set_env(&mut self, env: &[&str]) -> &mut Self {
        let mut all = vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            format!("{ENV_MARKER}={}", self.marker),
        ];
        all.extend(env.iter().map(|s| s.to_string()));
        self.set("/process/env", json!(all))
    }

    pub fn add_env(&mut self, kv: &str) -> &mut Self {
        self.array_mut("/process/env").push(json!(kv));
        self
    }

    pub fn set_cwd(&mut self, cwd: &str) -> &mut Self {
        self.set("/process/cwd", json!(cwd))
    }

    pub fn set_terminal(&mut self, on: bool) -> &mut Self {
        self.set("/process/terminal", json!(on))
    }

    pub fn set_hostname(&mut self, name: &str) -> &mut Self {
        self.set("/hostname", json!(name))
    }

    pub fn set_user(&mut self, uid: u32, gid: u32, additional_gids: &[u32]) -> &mut Self {
        self.set("/process/user/uid", json!(uid));
        self.set("/process/user/gid", json!(gid));
        if additional_gids.is_empty() {
            self.remove("/process/user/additionalGids")
        } else {
            self.set("/process/user/additionalGids", json!(additional_gids))
        }
    }

    /// Sets one capability set ("bounding", "effective", "permitted", "inheritable", "ambient").
    pub fn set_caps(&mut self, set: &str, caps: &[&str]) -> &mut Self {
        self.set(&format!("/process/capabilities/{set}"), json!(caps))
    }

    pub fn set_rlimit(&mut self, kind: &str, soft: u64, hard: u64) -> &mut Self {
        let v = self.array_mut("/process/rlimits");
        v.retain(|r| r["type"] != kind);
        v.push(json!({"type": kind, "soft": soft, "hard": hard}));
        self
    }

    pub fn add_mount(&mut self, mount: Value) -> &mut Self {
        self.array_mut("/mounts").push(mount);
        self
    }

    /// A bind mount of a host path (`ro` adds the "ro" option; `recursive` uses rbind).
    pub fn add_bind(&mut self, src: &Path, dst: &str, ro: bool, recursive: bool) -> &mut Self {
        let mut opts = vec![if recursive { "rbind" } else { "bind" }];
        if ro {
            opts.push("ro");
        }
        self.add_mount(json!({
            "destination": dst, "type": "bind", "source": src, "options": opts
        }))
    }

    /// Adds (or replaces) a namespace entry; `path` joins an existing namespace.
    pub fn add_namespace(&mut self, kind: &str, path: Option<&Path>) -> &mut Self {
        let v = self.array_mut("/linux/namespaces");
        v.retain(|n| n["type"] != kind);
        let mut ns = json!({ "type": kind });
        if let Some(p) = path {
            ns["path"] = json!(p);
        }
        v.push(ns);
        self
    }

    /// A new user namespace mapping container ids 0.. to host ids `host_id`.. (`size` ids), for
    /// both uids and gids.
    pub fn add_user_namespace(&mut self, host_id: u32, size: u32) -> &mut Self {
        self.add_namespace("user", None);
        let map = json!([{"containerID": 0, "hostID": host_id, "size": size}]);
        self.set("/linux/uidMappings", map.clone());
        self.set("/linux/gidMappings", map)
    }

    pub fn remove_namespace(&mut self, kind: &str) -> &mut Self {
        self.array_mut("/linux/namespaces")
            .retain(|n| n["type"] != kind);
        self
    }

    pub fn set_readonly_root(&mut self, ro: bool) -> &mut Self {
        self.set("/root/readonly", json!(ro))
    }

    pub fn set_masked_paths(&mut self, paths: &[&str]) -> &mut Self {
        self.set("/linux/maskedPaths", json!(paths))
    }

    pub fn set_readonly_paths(&mut self, paths: &[&str]) -> &mut Self {
        self.set("/linux/readonlyPaths", json!(paths))
    }

    pub fn set_cgroups_path(&mut self, path: &str) -> &mut Self {
        self.set("/linux/cgroupsPath", json!(path))
    }

    pub fn set_annotation(&mut self, key: &str, value: &str) -> &mut Self {
        self.set(&format!("/annotations/{key}"), json!(value))
    }

    /// Appends a hook of `kind` (prestart, createRuntime, ...).
    pub fn add_hook(
        &mut self,
        kind: &str,
        path: &str,
        args: &[&str],
        env: &[&str],
        timeout: Option<u32>,
    ) -> &mut Self {
        let mut hook = json!({ "path": path, "args": args });
        let mut env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        env.push(format!("{ENV_MARKER}={}", self.marker));
        hook["env"] = json!(env);
        if let Some(t) = timeout {
            hook["timeout"] = json!(t);
        }
        self.array_mut(&format!("/hooks/{kind}")).push(hook);
        self
    }

    /// Writes an executable file (mode 0755) at `path` (host path).
    pub fn write_script(&self, path: &Path, body: &str) {
        fs::write(path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    }
}

// ---------------------------------------------------------------------------------------------
// container guard

/// A created container; `delete --force` runs when the guard is dropped.
pub struct Container<'a> {
    env: &'a TestEnv,
    id: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Container<'_> {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs `<bin> --root <root> <verb> [args..] <id>`.
    pub fn cmd(&self, verb: &str, args: &[&str]) -> CmdOutput {
        let mut all = vec![verb];
        all.extend_from_slice(args);
        all.push(&self.id);
        self.env.run(&all)
    }

    #[track_caller]
    pub fn start(&self) {
        self.cmd("start", &[]).ok();
    }

    /// `kill <id> <signal>`.
    pub fn kill(&self, signal: &str) -> CmdOutput {
        self.env.run(&["kill", &self.id, signal])
    }

    pub fn delete(&self, force: bool) -> CmdOutput {
        if force {
            self.cmd("delete", &["--force"])
        } else {
            self.cmd("delete", &[])
        }
    }

    /// Parsed `state <id>`; panics if the command fails.
    #[track_caller]
    pub fn state(&self) -> Value {
        let out = self.cmd("state", &[]);
        out.ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state output is not JSON ({e}): {out}"))
    }

    #[track_caller]
    pub fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .expect("state has a string status")
            .to_string()
    }

    /// Host pid of the container's init process.
    #[track_caller]
    pub fn pid(&self) -> i32 {
        let pid = self.state()["pid"]
            .as_i64()
            .expect("state has a numeric pid");
        pid as i32
    }

    /// Waits until `state` reports `status`.
    #[track_caller]
    pub fn wait_status(&self, status: &str) {
        wait_for(
            &format!("container {} to be {status}", self.id),
            WAIT_TIMEOUT,
            || (self.status() == status).then_some(()),
        );
    }

    /// What the container (and the create command) wrote on stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits until the container's stdout contains `needle`; returns all of stdout.
    #[track_caller]
    pub fn wait_stdout(&self, needle: &str) -> String {
        wait_for(
            &format!("container {} to print {needle:?}", self.id),
            WAIT_TIMEOUT,
            || {
                let s = self.stdout();
                s.contains(needle).then_some(s)
            },
        )
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        self.env.rt.force_delete(&self.id);
    }
}

// ---------------------------------------------------------------------------------------------
// helpers

/// Polls `f` every 20ms until it returns Some, panicking after `timeout`.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `path` exists and contains `needle`; returns its content.
#[track_caller]
pub fn wait_file(path: &Path, needle: &str) -> String {
    wait_for(
        &format!("{} to contain {needle:?}", path.display()),
        WAIT_TIMEOUT,
        || fs::read_to_string(path).ok().filter(|s| s.contains(needle)),
    )
}

/// `readlink /proc/<pid>/ns/<kind>` (e.g. "net:[4026531840]").
pub fn ns_link(pid: &str, kind: &str) -> String {
    let p = format!("/proc/{pid}/ns/{kind}");
    fs::read_link(&p)
        .unwrap_or_else(|e| panic!("readlink {p}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// Parses a `/proc/<pid>/status` style "Key:\tvalue" field.
pub fn status_field(status: &str, key: &str) -> Option<String> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// Bit mask of capability names, as printed in /proc/<pid>/status.
pub fn cap_mask(caps: &[&str]) -> String {
    let mut mask: u64 = 0;
    for c in caps {
        mask |= 1u64 << cap_number(c).unwrap_or_else(|| panic!("unknown capability {c}"));
    }
    format!("{mask:016x}")
}

/// Number of a capability name ("CAP_KILL" -> 5).
pub fn cap_number(name: &str) -> Option<u32> {
    const NAMES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let short = name.strip_prefix("CAP_").unwrap_or(name);
    NAMES.iter().position(|n| *n == short).map(|i| i as u32)
}

/// A unix socket the runtime connects to with `--console-socket` to hand over the pty master.
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn bind(path: &Path) -> Self {
        let listener =
            UnixListener::bind(path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        ConsoleSocket {
            path: path.to_path_buf(),
            listener,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and receives exactly one fd via SCM_RIGHTS (in one
    /// message). Returns the fd and the message payload.
    pub fn receive_master(&self, timeout: Duration) -> (OwnedFd, Vec<u8>) {
        let stream = wait_for(
            "the runtime to connect to the console socket",
            timeout,
            || match self.listener.accept() {
                Ok((s, _)) => Some(s),
                Err(e) if e.kind() == ErrorKind::WouldBlock => None,
                Err(e) => panic!("accept on console socket: {e}"),
            },
        );
        stream.set_nonblocking(false).expect("blocking stream");
        stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let msg = nix::sys::socket::recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg on console socket");
        let mut fds = Vec::new();
        for c in msg.cmsgs().expect("control messages not truncated") {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(v) = c {
                fds.extend(v);
            }
        }
        let len = msg.bytes;
        assert_eq!(
            fds.len(),
            1,
            "expected exactly one fd over the console socket, got {fds:?}"
        );
        // SAFETY: the fd was just received via SCM_RIGHTS and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        (fd, buf[..len].to_vec())
    }
}

/// Reads from a pty master until `needle` shows up, EOF/EIO, or `timeout`; returns the text.
pub fn read_pty_until(master: &OwnedFd, needle: &str, timeout: Duration) -> String {
    let mut out = Vec::new();
    let start = Instant::now();
    let mut file = File::from(master.try_clone().expect("dup pty master"));
    loop {
        if String::from_utf8_lossy(&out).contains(needle) || start.elapsed() > timeout {
            break;
        }
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a valid pollfd for the duration of the call; nfds is 1.
        let n = unsafe { libc::poll(&mut pfd, 1, 100) };
        if n <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break, // EIO: the slave side is closed
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A pipe (read end, write end), both close-on-exec.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 succeeded, both fds are new and owned only here.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Lines of `text` as a set (handy for `ls` output).
pub fn line_set(text: &str) -> BTreeSet<String> {
    text.split_whitespace().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// sd_notify helper

/// Sends its arguments, joined by newlines, as one datagram to `$NOTIFY_SOCKET` (`@name`:
/// abstract), as sd_notify(3) does.
pub const SDNOTIFY_C: &str = r#"
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
int main(int argc, char **argv) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || argc < 2) { fprintf(stderr, "sdnotify: no NOTIFY_SOCKET or message\n"); return 2; }
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof a.sun_path) return 2;
    memcpy(a.sun_path, path, n);
    if (a.sun_path[0] == '@') a.sun_path[0] = 0;
    char buf[4096];
    size_t len = 0;
    for (int i = 1; i < argc; i++) {
        size_t l = strlen(argv[i]);
        if (len + l + 1 > sizeof buf) return 2;
        if (i > 1) buf[len++] = '\n';
        memcpy(buf + len, argv[i], l);
        len += l;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || sendto(fd, buf, len, 0, (struct sockaddr *)&a,
                         offsetof(struct sockaddr_un, sun_path) + n) < 0) {
        fprintf(stderr, "sdnotify: %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}
"#;

/// Compile [`SDNOTIFY_C`] statically into `dst` (gcc is part of the test host's setup), with its
/// source written in `scratch`.
pub fn build_sdnotify(dst: &Path, scratch: &Path) {
    let src = scratch.join(format!("sdnotify-{}.c", unique_id()));
    fs::write(&src, SDNOTIFY_C).expect("write sdnotify.c");
    let out = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(dst)
        .arg(&src)
        .output()
        .expect("run cc (install gcc)");
    let _ = fs::remove_file(&src);
    assert!(
        out.status.success(),
        "cc -static sdnotify.c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Why CRIU cannot work on this machine (the gist of `criu check`'s output), or None when it
/// can; asked once per test binary.
pub fn criu_unusable() -> Option<String> {
    static R: OnceLock<Option<String>> = OnceLock::new();
    R.get_or_init(|| match Command::new("criu").arg("check").output() {
        Err(e) => Some(format!("criu not runnable: {e}")),
        Ok(o) if o.status.success() => None,
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            Some(format!(
                "criu check failed: {}",
                text.lines().find(|l| l.contains("Error")).unwrap_or(&text)
            ))
        }
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matching_respects_digit_boundaries() {
        assert!(contains_token("cgroup kt-12-3", "kt-12-3"));
        assert!(contains_token("kakuri-kt-12-3-escape", "kt-12-3"));
        assert!(!contains_token("kt-12-30", "kt-12-3"));
        assert!(contains_token("kt-12-30 kt-12-3/", "kt-12-3"));
    }

    #[test]
    fn log_unescaping() {
        let line = r#"level=error msg="container \"kt-1-2\" does not exist \\o/""#;
        assert_eq!(
            unescape_log(line),
            r#"level=error msg="container "kt-1-2" does not exist \o/""#
        );
    }

    #[test]
    fn capability_masks() {
        assert_eq!(
            cap_mask(&["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]),
            "0000000020000420"
        );
        assert_eq!(cap_number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(cap_number("CAP_NOPE"), None);
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tsh\nNoNewPrivs:\t1\nCapEff:\t0000000000000020\n";
        assert_eq!(status_field(s, "NoNewPrivs").as_deref(), Some("1"));
        assert_eq!(
            status_field(s, "CapEff").as_deref(),
            Some("0000000000000020")
        );
        assert_eq!(status_field(s, "Cap"), None);
    }
}
