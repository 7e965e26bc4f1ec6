//! Containers and their lifecycle: create → created → (start) → running → stopped, and paused.
//!
//! A [`Runtime`] is one `--root` directory. Every operation opens the container's directory
//! under it, takes its lock, reads `state.json` and derives the status from the live system (is
//! the init alive, is the exec fifo still there, is the cgroup frozen), so the state file is
//! written once, by `create`.

pub mod check;
pub mod checkpoint;
pub mod create;
pub mod criu;
pub mod events;
pub mod exec;
pub mod features;
pub mod hooks;
pub mod notify;
pub mod resctrl;
pub mod rootless;
mod run;
pub mod state;
pub mod update;

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kakuri_cgroups::CgroupManager;
use kakuri_spec::os_error;
use serde::Serialize;

pub use create::CreateOptions;
pub use exec::ExecOptions;
pub use state::{ContainerDir, State, Status};

/// An error of a kakuri operation. The text is what the user (and clients such as containerd and
/// podman, which match runc's texts) sees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0:?} does not exist")]
    NotExist(String),
    #[error("container not running")]
    NotRunning,
    #[error("{0}")]
    Msg(String),
}

impl Error {
    pub fn msg(s: impl Into<String>) -> Error {
        Error::Msg(s.into())
    }

    pub fn io(what: impl std::fmt::Display, e: std::io::Error) -> Error {
        Error::Msg(format!("{what}: {}", os_error(&e)))
    }
}

/// The runtime: where state lives and the global options.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    /// `KAKURI_DROP_UNGRANTABLE_CAPS=1` (for nested hosts with a reduced bounding set):
    /// capabilities outside the runtime's bounding set are dropped with a warning instead of
    /// failing `create`/`exec` as runc does.
    pub drop_ungrantable_caps: bool,
    /// `--rootless` and what it decided (see [`rootless::Rootless::cgroups`]).
    pub rootless: rootless::Rootless,
    /// The caller's sd_notify socket (`NOTIFY_SOCKET` of the runtime's environment): the
    /// container gets a socket of its own whose READY is relayed there ([`notify`]).
    pub notify_socket: Option<String>,
}

/// The environment variable that sets [`Runtime::drop_ungrantable_caps`].
pub const DROP_UNGRANTABLE_CAPS_ENV: &str = "KAKURI_DROP_UNGRANTABLE_CAPS";

/// The state of a container, as `state` prints it (runc's shape and key order).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateOutput {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    /// Sorted by key, as Go prints a map.
    #[serde(
        skip_serializing_if = "std::collections::HashMap::is_empty",
        serialize_with = "sorted_map"
    )]
    pub annotations: std::collections::HashMap<String, String>,
    pub owner: String,
}

/// The state passed to hooks on stdin: the runtime-spec `state` object.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookState<'a> {
    pub oci_version: &'static str,
    pub id: &'a str,
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: &'a Path,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    pub annotations: &'a std::collections::HashMap<String, String>,
}

impl<'a> HookState<'a> {
    pub fn of(s: &'a State, status: &'a str, pid: Option<i32>) -> HookState<'a> {
        HookState {
            oci_version: kakuri_spec::OCI_VERSION,
            id: &s.id,
            status,
            pid,
            bundle: &s.bundle,
            annotations: &s.annotations,
        }
    }

    pub fn json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// One row of `list`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListEntry {
    pub oci_version: &'static str,
    pub id: String,
    pub pid: i32,
    pub status: &'static str,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    /// Sorted by key, as Go prints a map.
    #[serde(
        skip_serializing_if = "std::collections::HashMap::is_empty",
        serialize_with = "sorted_map"
    )]
    pub annotations: std::collections::HashMap<String, String>,
    pub owner: String,
}

fn sorted_map<S: serde::Serializer>(
    m: &std::collections::HashMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter().collect::<std::collections::BTreeMap<_, _>>())
}

/// The owner's name for `list`: getpwuid(3), or, in the static release binary (which cannot
/// load glibc's NSS modules), /etc/passwd only, as runc's static binaries do.
fn user_name(uid: u32) -> String {
    let name = if cfg!(target_feature = "crt-static") {
        std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|t| passwd_name(&t, uid))
    } else {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    };
    name.unwrap_or_else(|| format!("#{uid}"))
}

/// The name of `uid` in passwd(5) text.
fn passwd_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && !f[0].is_empty() && f[2].parse::<u32>().ok() == Some(uid))
            .then(|| f[0].to_string())
    })
}

/// Wait until process `pid` (not necessarily our child) has exited, up to `timeout`.
fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let fd = match kakuri_isolate::sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(_) => return true,
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return true,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return true,
        }
    }
}

/// Make sure the runtime binary this process (and every process it forks) runs from cannot be
/// written through `/proc/<pid>/exe` (CVE-2019-5736): re-executes this process once from a
/// read-only view of it when it is not (see `kakuri_isolate::selfexe`). `create`, `run` and
/// `exec` do this themselves first; the command line calls it earlier, before it parses its
/// arguments, so that they are parsed once. Must be called while single-threaded.
pub fn protect_runtime_binary() -> Result<(), Error> {
    kakuri_isolate::selfexe::protect().map_err(Error::msg)
}

/// Parse a signal as runc does: a name with or without `SIG`, or a number (0 only checks that
/// the process exists, as kill(2)).
pub fn parse_signal(s: &str) -> Result<i32, Error> {
    if let Ok(n) = s.parse::<i32>() {
        if n >= 0 && n <= libc::SIGRTMAX() {
            return Ok(n);
        }
        return Err(Error::msg(format!("unknown signal {s:?}")));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up.clone()
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| Error::msg(format!("unknown signal {s:?}")))
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            root: root.into(),
            systemd_cgroup: false,
            drop_ungrantable_caps: false,
            rootless: rootless::Rootless::default(),
            notify_socket: None,
        }
    }

    /// Capabilities the process asks for that the runtime cannot grant (not in its bounding
    /// set; only asked for a process that stays in the runtime's user namespace). As runc: one
    /// in the effective, permitted or inheritable set fails with runc's text (`capset` would
    /// fail with EPERM); with `drop_ungrantable_caps` they are dropped with a warning instead.
    /// One only in the bounding or ambient set is left out, with a warning (runc says nothing).
    pub(crate) fn settle_caps(&self, caps: &mut kakuri_isolate::CapSets) -> Result<(), String> {
        let missing = caps.ungrantable();
        if missing == 0 {
            return Ok(());
        }
        let names = kakuri_isolate::process::cap_names(missing);
        let refused = caps.refused_by_capset(missing);
        if refused != 0 && !self.drop_ungrantable_caps {
            log::warn!(
                "process.capabilities: [{}] not in the runtime's bounding set: cannot be granted (set {DROP_UNGRANTABLE_CAPS_ENV}=1 to drop them instead)",
                kakuri_isolate::process::cap_names(refused)
            );
            return Err("unable to apply caps: operation not permitted".into());
        }
        if refused != 0 {
            log::warn!(
                "dropping capabilities the runtime cannot grant (not in its bounding set; {DROP_UNGRANTABLE_CAPS_ENV}=1): [{names}]"
            );
        } else {
            log::warn!(
                "leaving out capabilities the runtime does not have (not in its bounding set) from the bounding and ambient sets: [{names}]"
            );
        }
        caps.remove(missing);
        Ok(())
    }

    pub fn open(&self, id: &str) -> Result<(ContainerDir, State, Status), Error> {
        let dir = ContainerDir::open(&self.root, id)?;
        let st = dir.load().map_err(|e| match e {
            Error::NotExist(_) => Error::NotExist(id.to_string()),
            e => e,
        })?;
        let status = state::status(&dir.path, &st);
        kakuri_timings::mark("state dir, lock, state.json, status");
        Ok((dir, st, status))
    }

    /// `state ID`.
    pub fn state(&self, id: &str) -> Result<StateOutput, Error> {
        let (_dir, st, status) = self.open(id)?;
        Ok(StateOutput {
            oci_version: kakuri_spec::OCI_VERSION.to_string(),
            id: st.id.clone(),
            pid: if status == Status::Stopped { 0 } else { st.pid },
            status: status.to_string(),
            bundle: st.bundle.clone(),
            rootfs: st.rootfs.clone(),
            created: st.created.clone(),
            owner: st.owner.clone(),
            annotations: st.annotations.clone(),
        })
    }

    /// `start ID`: release a created container's init to exec the user process.
    pub fn start(&self, id: &str) -> Result<(), Error> {
        let (dir, st, status) = self.open(id)?;
        match status {
            Status::Created => {}
            Status::Stopped => return Err(Error::msg("cannot start a container that has stopped")),
            Status::Running | Status::Paused => {
                return Err(Error::msg("cannot start an already running container"))
            }
            Status::Creating => {
                return Err(Error::msg(
                    "cannot start a container that is still being created",
                ))
            }
        }
        let Some(host) = &self.notify_socket else {
            return start_created(&dir.path, &st);
        };
        // As runc: the container's socket is bound now (the container could not send before
        // it runs) and the caller's reached; unlike runc, before the container starts, so a
        // caller socket that cannot be reached leaves the container created, not running
        // with nobody to hear it.
        let mut relay = notify::Relay::bind(&dir.path)?;
        if let Err(e) = relay.connect(host) {
            relay.unlink();
            return Err(e);
        }
        start_created(&dir.path, &st)?;
        // The lock is not held while waiting: the container may be killed or deleted
        // meanwhile, which ends the wait.
        drop(dir);
        relay.wait_and_relay(st.pid, st.pid)
    }

    /// `kill ID SIGNAL [--all]`.
    pub fn kill(&self, id: &str, sig: i32, all: bool) -> Result<(), Error> {
        self.kill_with(id, || Ok(sig), all)
    }

    /// `kill ID SIGNAL [--all]` with the signal as the user wrote it: as runc, an unknown
    /// container is reported before a bad signal.
    pub fn kill_named(&self, id: &str, signal: &str, all: bool) -> Result<(), Error> {
        self.kill_with(id, || parse_signal(signal), all)
    }

    fn kill_with(
        &self,
        id: &str,
        sig: impl FnOnce() -> Result<i32, Error>,
        all: bool,
    ) -> Result<(), Error> {
        let dir = ContainerDir::open(&self.root, id)?;
        let st = dir.load().map_err(|e| match e {
            Error::NotExist(_) => Error::NotExist(id.to_string()),
            e => e,
        })?;
        kakuri_timings::mark("state dir, lock, state.json");
        let sig = sig()?;
        // No init yet (a create that has not finished, or was killed before it did).
        let creating = st.pid == 0;
        if !all {
            if creating {
                return Err(Error::NotRunning);
            }
            // Checks, with the init pinned by a pidfd, that it is still the container's:
            // a stopped container is "not running" there. Created, running and paused
            // containers are all signalled: the exec fifo and the freezer are not looked at.
            return signal_init(&st, sig);
        }
        if creating {
            // Nothing to signal; runc >= 1.2 ignores "not running" with --all.
            return Ok(());
        }
        if !state::init_alive(&st) {
            // As runc: `--all` on a container whose init has exited signals what is left in
            // its cgroup (processes of a container without its own pid namespace), which is
            // usually nothing, and succeeds. containerd calls it after every exit. A cgroup
            // shared with other processes holds nothing of a stopped container.
            if st.shared_cgroup || st.cgroup.pids().map(|p| p.is_empty()).unwrap_or(true) {
                return Ok(());
            }
        }
        st.cgroup
            .kill_all(sig)
            .map_err(|e| Error::msg(format!("kill all processes of {id}: {e}")))
    }

    /// `delete ID [--force]`.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        let dir = match ContainerDir::open(&self.root, id) {
            Ok(d) => d,
            Err(Error::NotExist(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let st = match dir.load() {
            Ok(s) => s,
            // A create that died before writing its state leaves only the directory.
            Err(Error::NotExist(_)) => {
                if force {
                    return dir.remove();
                }
                return Err(Error::NotExist(id.to_string()));
            }
            Err(e) => return Err(e),
        };
        let status = state::status(&dir.path, &st);
        kakuri_timings::mark("state dir, lock, state.json, status");
        match status {
            Status::Stopped => kill_leftovers(&st)?,
            Status::Created | Status::Creating => stop_init(&st)?,
            Status::Running | Status::Paused => {
                if !force {
                    return Err(Error::msg(format!(
                        "cannot delete container {id} that is not stopped: {status}"
                    )));
                }
                stop_init(&st)?;
            }
        }
        kakuri_timings::mark("stop leftover processes");
        destroy(dir, &st)
    }

    /// `pause ID`: freeze every process of a running container.
    pub fn pause(&self, id: &str) -> Result<(), Error> {
        let (_dir, st, status) = self.open(id)?;
        match status {
            Status::Running => st
                .cgroup
                .freeze()
                .map_err(|e| Error::msg(format!("pause {id}: {e}"))),
            Status::Paused => Err(Error::msg("container already paused")),
            _ => Err(Error::NotRunning),
        }
    }

    /// `resume ID`: thaw a paused container.
    pub fn resume(&self, id: &str) -> Result<(), Error> {
        let (_dir, st, status) = self.open(id)?;
        match status {
            Status::Paused => st
                .cgroup
                .thaw()
                .map_err(|e| Error::msg(format!("resume {id}: {e}"))),
            _ => Err(Error::msg("container not paused")),
        }
    }

    /// `ps ID`: the host pids of every process in the container's cgroup.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>, Error> {
        let (_dir, st, _status) = self.open(id)?;
        st.cgroup
            .pids()
            .map_err(|e| Error::msg(format!("list processes of {id}: {e}")))
    }

    /// `list`: every container under the root, sorted by id.
    ///
    /// Per entry: one `openat` of `<id>/state.json` relative to the root's descriptor, one
    /// `read`, one `close`, and one `kill(pid, 0)` (a stopped container's pid is usually gone;
    /// only a live one costs a read of /proc/<pid>/stat, and only a live init a full parse of
    /// the state for its fifo and freezer). No lock: the state file is replaced atomically.
    pub fn list(&self) -> Result<Vec<ListEntry>, Error> {
        use nix::fcntl::OFlag;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = match nix::dir::Dir::open(&self.root, flags, nix::sys::stat::Mode::empty()) {
            Ok(d) => d,
            Err(nix::errno::Errno::ENOENT) => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::io(
                    format!("read {}", self.root.display()),
                    std::io::Error::from(e),
                ))
            }
        };
        // SAFETY: the descriptor belongs to `dir`, which outlives every use of it below.
        let root = unsafe { std::os::fd::BorrowedFd::borrow_raw(dir.as_raw_fd()) };
        let mut out = Vec::new();
        // Owners are looked up once per uid, not once per container (getpwuid reads
        // /etc/passwd each time).
        let mut names: std::collections::HashMap<u32, String> = std::collections::HashMap::new();
        let mut buf = Vec::with_capacity(16 << 10);
        let mut name = Vec::with_capacity(128);
        let mut ids: Vec<Vec<u8>> = Vec::new();
        for ent in dir.iter() {
            let Ok(ent) = ent else { continue };
            let id = ent.file_name().to_bytes();
            if id == b"." || id == b".." {
                continue;
            }
            use nix::dir::Type;
            if matches!(ent.file_type(), Some(t) if t != Type::Directory && t != Type::Symlink) {
                continue;
            }
            ids.push(id.to_vec());
        }
        // A long list is mostly stopped containers: one walk of /proc (a few system calls)
        // then tells them apart instead of a kill(2) each. Not worth its dozen calls for a
        // short one.
        let live = if ids.len() >= 32 {
            state::ProcSnapshot::take()
        } else {
            None
        };
        for id in &ids {
            let id = id.as_slice();
            name.clear();
            name.extend_from_slice(id);
            name.extend_from_slice(b"/state.json\0");
            let Ok(path) = std::ffi::CStr::from_bytes_with_nul(&name) else {
                continue;
            };
            let Ok(Some(sum)) = state::read_parsed_at(root, path, &mut buf, state::Summary::parse)
            else {
                continue;
            };
            // Only a live container needs the rest: the fifo (created) and the freezer (paused).
            let status = if sum.pid == 0 {
                Status::Creating
            } else if live
                .as_ref()
                .is_some_and(|l| l.surely_dead(sum.pid, sum.start_time))
                || !sum.init_alive()
            {
                Status::Stopped
            } else {
                match serde_json::from_slice::<State>(&buf) {
                    Ok(st) => state::status(&self.root.join(std::ffi::OsStr::from_bytes(id)), &st),
                    Err(_) => continue,
                }
            };
            let owner = match sum.owner_uid {
                Some(u) => u,
                None => {
                    let id = std::ffi::OsStr::from_bytes(id);
                    let path = self.root.join(id);
                    std::os::unix::fs::MetadataExt::uid(
                        &std::fs::metadata(&path).map_err(|e| Error::io(path.display(), e))?,
                    )
                }
            };
            out.push(ListEntry {
                oci_version: kakuri_spec::OCI_VERSION,
                id: sum.id,
                pid: if status == Status::Stopped {
                    0
                } else {
                    sum.pid
                },
                status: status.as_str(),
                bundle: sum.bundle,
                rootfs: sum.rootfs,
                created: sum.created,
                annotations: sum.annotations,
                owner: names
                    .entry(owner)
                    .or_insert_with(|| user_name(owner))
                    .clone(),
            });
        }
        out.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// Release the init of a created container (one byte into its exec fifo) and return once it
/// has exec'd the program, as runc 1.1 does: a signal sent after `start` then reaches the
/// program, never kakuri's init, and the poststart hooks run only after the execve. A failed
/// startContainer hook or execve fails `start` with the init's error (the init then exits and
/// the container is stopped). A failing poststart hook fails `start` too and stops the
/// container (runtime-spec 1.3, runc 1.2+).
fn start_created(dir: &Path, st: &State) -> Result<(), Error> {
    let fifo = dir.join(state::FIFO);
    let status_path = dir.join(state::EXEC_STATUS);
    // Opened before the init is released, so that nothing it reports can be missed. Read-only
    // and non-blocking (the open must not wait for a writer); the reads below block.
    let report = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&status_path)
    {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("open {}", status_path.display()), e)),
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo);
    let mut f = match f {
        Ok(f) => f,
        // No reader: the init is gone.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Err(Error::NotRunning),
        Err(e) => return Err(Error::io(format!("open exec fifo {}", fifo.display()), e)),
    };
    use std::io::{Read, Write};
    f.write_all(b"0")
        .map_err(|e| Error::io("release the container init", e))?;
    drop(f);
    kakuri_timings::mark("release the init (exec fifo)");
    // The init's end of the status fifo is close-on-exec: end-of-file comes at its execve, or
    // when it exits after writing why it could not get there.
    let mut why = Vec::new();
    if let Some(mut r) = report {
        nix::fcntl::fcntl(
            r.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )
        .map_err(|e| Error::io(format!("read {}", status_path.display()), e.into()))?;
        r.read_to_end(&mut why)
            .map_err(|e| Error::io(format!("read {}", status_path.display()), e))?;
    }
    kakuri_timings::mark("wait: init execs the program");
    // With timings on, the init's own phases after `start` come first (see kakuri_timings).
    let (timeline, why) = kakuri_timings::split_frame(&why);
    if let Some(t) = timeline {
        kakuri_timings::absorb(t);
    }
    std::fs::remove_file(&fifo).map_err(|e| Error::io(format!("remove {}", fifo.display()), e))?;
    let _ = std::fs::remove_file(&status_path);
    if !why.is_empty() {
        return Err(Error::msg(String::from_utf8_lossy(why).into_owned()));
    }
    if let Some(h) = st.hooks.as_ref().and_then(|h| h.poststart().as_ref()) {
        let json = HookState::of(st, "running", Some(st.pid)).json();
        // In the bundle directory, where runc runs it.
        let ctx = hooks::HookContext {
            default_env: None,
            cwd: Some(&st.bundle),
        };
        if let Err(e) = hooks::run("poststart", h, &json, ctx) {
            // runtime-spec 1.3: "generate an error, stop the container"; runc 1.2+ kills it.
            if let Err(k) = stop_init(st) {
                log::warn!("stop {} after its poststart hook failed: {k}", st.id);
            }
            return Err(Error::msg(e));
        }
    }
    Ok(())
}

use std::os::unix::fs::OpenOptionsExt;

fn signal_init(st: &State, sig: i32) -> Result<(), Error> {
    let fd = match kakuri_isolate::sys::pidfd_open(st.pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(Error::NotRunning),
        Err(e) => return Err(Error::io("pidfd_open", e)),
    };
    // The pidfd pins the process: check it is still our init before signalling.
    if !state::init_alive(st) {
        return Err(Error::NotRunning);
    }
    kakuri_isolate::sys::pidfd_send_signal(fd.as_fd(), sig).map_err(|e| {
        if e.raw_os_error() == Some(libc::ESRCH) {
            Error::NotRunning
        } else {
            Error::io(format!("send signal {sig} to the container init"), e)
        }
    })
}

/// SIGKILL the init (and, through the cgroup, everything else in the container) and wait.
fn stop_init(st: &State) -> Result<(), Error> {
    if st.shared_cgroup {
        // Only the init: the kernel kills the rest of its pid namespace; the cgroup's other
        // processes are not the container's.
    } else if let Err(e) = st.cgroup.kill_all(libc::SIGKILL) {
        log::debug!("kill all through the cgroup: {e}");
    }
    if st.pid <= 0 {
        // A create that never got as far as an init: the cgroup kill was all there was to do.
        return Ok(());
    }
    match signal_init(st, libc::SIGKILL) {
        Ok(()) | Err(Error::NotRunning) => {}
        Err(e) => return Err(e),
    }
    // A paused container must be thawed for SIGKILL to take effect.
    if st.cgroup.is_frozen().unwrap_or(false) {
        let _ = st.cgroup.thaw();
    }
    if !wait_gone(st.pid, Duration::from_secs(10)) {
        return Err(Error::msg(format!(
            "container {} init (pid {}) did not exit after SIGKILL",
            st.id, st.pid
        )));
    }
    Ok(())
}

/// A stopped container whose init did not own its pid namespace (it had none of its own, or
/// joined one) can still have processes in its cgroup, which the kernel did not kill with the
/// init: kill them, as runc does, so that the cgroup can be removed.
fn kill_leftovers(st: &State) -> Result<(), Error> {
    if st.shared_cgroup || st.cgroup.pids().map(|p| p.is_empty()).unwrap_or(true) {
        return Ok(());
    }
    st.cgroup
        .kill_all(libc::SIGKILL)
        .map_err(|e| Error::msg(format!("kill the processes left in {}: {e}", st.id)))?;
    // Frozen processes die only once thawed.
    if st.cgroup.is_frozen().unwrap_or(false) {
        let _ = st.cgroup.thaw();
    }
    Ok(())
}

/// Remove everything of a stopped container: cgroups, state, then the poststop hooks.
fn destroy(dir: ContainerDir, st: &State) -> Result<(), Error> {
    if let Some(holder) = st.rootfs_mount_holder {
        kakuri_isolate::hostmount::release(&st.rootfs, holder)
            .map_err(|e| Error::msg(format!("remove the rootfs mounts of {}: {e}", st.id)))?;
    }
    if st.shared_cgroup {
        let kept = st
            .cgroup
            .destroy_leaving_busy()
            .map_err(|e| Error::msg(format!("remove cgroups of {}: {e}", st.id)))?;
        for k in kept {
            log::warn!(
                "cgroup {} of {} not removed: it holds processes that are not the container's",
                k.display(),
                st.id
            );
        }
    } else {
        st.cgroup
            .destroy()
            .map_err(|e| Error::msg(format!("remove cgroups of {}: {e}", st.id)))?;
    }
    if let Some(r) = &st.intel_rdt {
        r.remove()
            .map_err(|e| Error::msg(format!("remove the resctrl group of {}: {e}", st.id)))?;
    }
    dir.remove()?;
    kakuri_timings::mark("remove the state dir");
    if let Some(h) = st.hooks.as_ref().and_then(|h| h.poststop().as_ref()) {
        let json = HookState::of(st, "stopped", None).json();
        hooks::run_warn("poststop", h, &json, hooks::HookContext::default());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_names() {
        let pw = "root:x:0:0:root:/root:/bin/sh\n# comment\nbad\nkakuri:x:1000:1000::/h:/bin/sh\n";
        assert_eq!(passwd_name(pw, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(pw, 1000).as_deref(), Some("kakuri"));
        assert_eq!(passwd_name(pw, 5), None);
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("kill").unwrap(), 9);
        assert_eq!(parse_signal("15").unwrap(), 15);
        assert_eq!(parse_signal("TERM").unwrap(), 15);
        assert!(parse_signal("FOO").is_err());
        assert_eq!(parse_signal("0").unwrap(), 0);
        assert!(parse_signal("-1").is_err());
        assert!(parse_signal("1000").is_err());
    }
}
