//! Building the isolated container process.
//!
//! The runtime process (the parent) forks the container's init directly with `clone(2)`, passing
//! the namespace flags — no re-exec of the runtime binary, no helper process in between. The two
//! talk over a [`channel::Channel`]:
//!
//! ```text
//! parent                                   init (child)
//! ------                                   ------------
//! clone(CLONE_NEW*) ─────────────────────► waits for Go
//! cgroup placement, uid/gid maps,
//! oom_score_adj; send Go ────────────────► joins namespaces by path, new cgroupns,
//!                                          hostname, mounts, devices, console
//!                          ◄─────────────── RunHooks
//! createRuntime + prestart hooks;
//! send HooksDone ────────────────────────► createContainer hooks, pivot_root,
//!                                          masked/readonly paths, sysctl, rlimits,
//!                                          executable lookup, seccomp, user, capabilities
//!                          ◄─────────────── SeccompFd + listener fd (SCMP_ACT_NOTIFY only)
//! send it to listenerPath with the
//! container state; SeccompDone ──────────►
//!                          ◄─────────────── Ready
//! write state, exit (create done)          blocks reading the exec fifo until `start`,
//!                                          startContainer hooks, execve
//! ```
//!
//! Hardening on this path: the init is non-dumpable from its first instruction until execve, so
//! nothing in the container can open its `/proc/<pid>/exe` (the kakuri binary), memory or fds;
//! every runtime descriptor is close-on-exec and all above the preserved ones are marked so
//! before exec; sysctl and oom_score_adj writes go through a verified procfs handle
//! ([`procfs`]); the cwd is checked to be reachable from the container root after chdir.
//!
//! Any error in the child is sent as [`channel::Msg::Error`] and the child exits; the parent then
//! reports it, so `create` fails with the real reason and nothing is left running.

pub mod channel;
pub mod exec;
pub mod hostmount;
pub mod idmap;
pub mod lsm;
pub mod mountopts;
pub mod netdev;
pub mod process;
pub mod procfs;
pub mod rootfs;
pub mod selfexe;
pub mod sys;
mod usermaps;

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use kakuri_spec::oci::{self, LinuxNamespaceType};
use kakuri_spec::os_error;

use channel::{Channel, Msg};
pub use mountopts::MountOptions;
pub use process::{CapSets, ProcessPlan};

/// One mount of the config, parsed.
#[derive(Debug, Clone)]
pub struct MountPlan {
    pub destination: PathBuf,
    pub source: Option<PathBuf>,
    pub fstype: String,
    pub options: MountOptions,
    /// `idmap`/`ridmap` or per-mount id mappings: how the bind is idmapped ([`idmap`]).
    pub idmap: Option<idmap::IdmapPlan>,
}

/// A device node to create in the container.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    pub path: PathBuf,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: u32,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Where a container `cgroup` mount takes each hierarchy from (given by the cgroup manager).
#[derive(Debug, Clone)]
pub struct CgroupMountSource {
    /// Directory name under the mount point ("memory", "cpu", "systemd", "unified"; unused on v2).
    pub name: String,
    /// "cgroup" or "cgroup2".
    pub fs_type: &'static str,
    /// v1 mount data ("memory", "none,name=systemd").
    pub options: String,
    /// The container's cgroup directory on the host.
    pub host_path: PathBuf,
}

/// Which namespaces to make and join.
#[derive(Debug, Clone, Default)]
pub struct NamespacePlan {
    /// `CLONE_NEW*` flags given to clone (user, pid, mount, network, ipc, uts).
    pub clone_flags: libc::c_int,
    /// Namespaces to join by path in the child, in order (user first).
    pub join: Vec<(libc::c_int, PathBuf)>,
    /// A pid namespace to join: entered by the parent before the clone.
    pub join_pid: Option<PathBuf>,
    /// A time namespace to join: entered by the parent before the clone.
    pub join_time: Option<PathBuf>,
    /// A new time namespace, with offsets (clock, secs, nanosecs).
    pub new_time: Option<Vec<(String, i64, u32)>>,
}

/// Everything the container's init needs, resolved from the spec before the clone.
#[derive(Debug)]
pub struct InitPlan {
    pub id: String,
    pub rootfs: PathBuf,
    pub root_readonly: bool,
    pub root_propagation: Option<libc::c_ulong>,
    pub no_pivot: bool,
    pub namespaces: NamespacePlan,
    pub new_mountns: bool,
    /// No mount namespace of its own: the rootfs (already bound onto itself by the runtime, see
    /// [`hostmount`]) is set up in the runtime's mount namespace and entered with chroot.
    pub shared_mountns: bool,
    pub new_cgroupns: bool,
    pub in_new_userns: bool,
    pub uid_mappings: Vec<oci::LinuxIdMapping>,
    pub gid_mappings: Vec<oci::LinuxIdMapping>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub mounts: Vec<MountPlan>,
    /// Bind sources opened by the runtime before the clone ([`rootfs::open_bind_sources`]), by
    /// index into `mounts`: in a user namespace the init could not reach sources under
    /// directories only the host's root may enter; idmapped ones are idmapped on these.
    pub bind_sources: Vec<(usize, OwnedFd)>,
    pub cgroup_mounts: Vec<CgroupMountSource>,
    pub default_devices: bool,
    pub devices: Vec<DevicePlan>,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub sysctl: Vec<(String, String)>,
    pub process: ProcessPlan,
    pub no_new_keyring: bool,
    /// Connected `--console-socket`, to send the pty master over.
    pub console_socket: Option<OwnedFd>,
    pub preserve_fds: u32,
    /// The exec fifo, open read-write: init blocks reading one byte from it until `start`.
    pub exec_fifo: Option<OwnedFd>,
    /// The exec status fifo, open read-write and close-on-exec: after `start` released it, the
    /// init writes here why it could not exec the program (a startContainer hook or the execve
    /// failed). `start` reads it to end-of-file, which comes when the init's descriptor closes:
    /// at the execve, or when the init exits after reporting.
    pub exec_status: Option<OwnedFd>,
    /// Descriptors of the runtime that the init must not keep (e.g. the state directory lock,
    /// which would otherwise stay held for the container's whole life).
    pub close_in_child: Vec<std::os::fd::RawFd>,
    /// The container's cgroup2 directory (`O_PATH|O_DIRECTORY`): the init is cloned straight
    /// into it where the kernel can ([`clone_child`]); [`ParentSteps::placed`] is told.
    pub cgroup2_dir: Option<OwnedFd>,
    /// The `tasks` files of the container's v1 cgroups, opened for writing by the runtime
    /// ([`open_v1_tasks`]): the init joins those cgroups itself, first thing after the clone
    /// (see [`join_v1_cgroups`]); empty when the runtime places it through `cgroup.procs`.
    pub cgroup_v1_tasks: Vec<(PathBuf, OwnedFd)>,
    /// prestart or createRuntime hooks are configured: the init stops before pivot_root for
    /// the runtime to run them (a round trip that is left out without them).
    pub runtime_hooks: bool,
}

/// The environment variable that, set to `0`, makes the runtime move a new container process
/// into its v1 cgroups through `cgroup.procs` instead of letting the process join them itself
/// through their `tasks` files ([`open_v1_tasks`]): for tests and measurements of that path.
pub const V1_SELF_JOIN_ENV: &str = "KAKURI_V1_SELF_JOIN";

/// Open the `tasks` file of each v1 cgroup directory in `dirs` for writing, for a child to join
/// them itself ([`join_v1_cgroups`]). Why: moving another process (`cgroup.procs` with its
/// pid) write-locks the kernel's global `cgroup_threadgroup_rwsem`, and the first such write
/// after a quiet spell waits for an RCU grace period (10-20 ms here, most of a `run`); a
/// single-threaded process writing `0` (itself) to `tasks` moves only the calling thread, for
/// which the kernel skips that lock (Linux 6.0, "cgroup: Optimize single thread migration").
/// For a single-threaded process, as a freshly cloned init or exec'd process is, the result is
/// the same as writing its pid to `cgroup.procs`. Returns nothing (the caller then uses
/// `cgroup.procs`) when turned off with [`V1_SELF_JOIN_ENV`]`=0` or when any file cannot be
/// opened (e.g. a rootless runtime): all or none.
pub fn open_v1_tasks<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Vec<(PathBuf, OwnedFd)> {
    use std::os::unix::fs::OpenOptionsExt;
    if std::env::var_os(V1_SELF_JOIN_ENV).is_some_and(|v| v == "0") {
        log::debug!("{V1_SELF_JOIN_ENV}=0: v1 cgroups joined through cgroup.procs");
        return Vec::new();
    }
    let mut out = Vec::new();
    for dir in dirs {
        let path = dir.join("tasks");
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => out.push((path, OwnedFd::from(f))),
            Err(e) => {
                log::debug!(
                    "open {}: {e}: v1 cgroups joined through cgroup.procs",
                    path.display()
                );
                return Vec::new();
            }
        }
    }
    out
}

/// In a freshly cloned child (single-threaded): join the v1 cgroups whose `tasks` files the
/// runtime opened ([`open_v1_tasks`]) by writing `0` (this thread) to each, then close them.
pub(crate) fn join_v1_cgroups(tasks: &[(PathBuf, OwnedFd)]) -> Result<(), String> {
    for (path, fd) in tasks {
        if let Err(e) = nix::unistd::write(fd, b"0") {
            return Err(format!(
                "join the container's cgroup: write {}: {}",
                path.display(),
                os_error(&std::io::Error::from(e))
            ));
        }
    }
    for (_, fd) in tasks {
        // SAFETY: the runtime's descriptors inherited by this child, which never returns to
        // drop their owners; nothing else in the child uses them.
        unsafe { libc::close(fd.as_raw_fd()) };
    }
    if !tasks.is_empty() {
        kakuri_timings::mark("join its v1 cgroups (tasks)");
    }
    Ok(())
}

/// The environment variable that, set to `0`, turns `CLONE_INTO_CGROUP` off (the child is then
/// always moved into its cgroup2 directory through `cgroup.procs`): for tests of that path.
pub const CLONE_INTO_CGROUP_ENV: &str = "KAKURI_CLONE_INTO_CGROUP";

/// Clone a child of the runtime (fork semantics, `flags` as [`sys::fork_clone`]), straight into
/// the cgroup2 directory `cgroup` when one is given and the kernel takes it (`clone3` with
/// `CLONE_INTO_CGROUP`, Linux 5.7); any error of that falls back to a plain clone, as runc
/// does for exec. Returns which side this is, and whether the child started in `cgroup`.
///
/// # Safety
/// As [`sys::fork_clone`]: the caller must be single-threaded.
pub(crate) unsafe fn clone_child(
    flags: libc::c_int,
    cgroup: Option<BorrowedFd>,
) -> std::io::Result<(sys::Forked, bool)> {
    let off = std::env::var_os(CLONE_INTO_CGROUP_ENV).is_some_and(|v| v == "0");
    if let Some(fd) = cgroup.filter(|_| !off) {
        // SAFETY: the caller is single-threaded (this function's contract).
        match unsafe { sys::fork_clone_into_cgroup(flags, fd) } {
            Ok(sys::Forked::Child) => return Ok((sys::Forked::Child, true)),
            Ok(parent) => {
                log::debug!("clone3: child started in its cgroup2 directory (CLONE_INTO_CGROUP)");
                return Ok((parent, true));
            }
            Err(e) => log::debug!(
                "clone3 with CLONE_INTO_CGROUP failed ({e}): plain clone, then cgroup.procs"
            ),
        }
    } else if off && cgroup.is_some() {
        log::debug!("{CLONE_INTO_CGROUP_ENV}=0: plain clone, then cgroup.procs");
    }
    // SAFETY: the caller is single-threaded (this function's contract).
    unsafe { sys::fork_clone(flags) }.map(|f| (f, false))
}

/// Steps of the container's init that belong to other crates (hooks, seccomp); they run in the
/// init process.
pub trait InitSteps {
    /// createContainer hooks: in the container's namespaces, before pivot_root.
    fn create_container(&self) -> Result<(), String>;
    /// startContainer hooks: after `start`, before the user process runs.
    fn start_container(&self) -> Result<(), String>;
    /// Load the seccomp filter. Called as late as the kernel allows: without noNewPrivileges the
    /// filter needs CAP_SYS_ADMIN, so it is loaded just before the user and capabilities change;
    /// with it, as the last step before execve (for the init: after `start` released it and
    /// before the startContainer hooks, which run under the filter as with runc). A filter with
    /// SCMP_ACT_NOTIFY rules is loaded before the process reports ready instead: its listener
    /// is returned and handed to the parent over the sync channel.
    fn load_seccomp(&self) -> Result<Option<OwnedFd>, String>;
    /// Whether the filter has SCMP_ACT_NOTIFY rules (its listener must reach the runtime).
    fn seccomp_needs_listener(&self) -> bool;
}

/// Steps of `create` that run in the runtime (parent) process.
pub trait ParentSteps {
    /// The child exists (host pid): put it in its cgroups. With `in_cgroup2` it was cloned
    /// into its cgroup2 directory already (CLONE_INTO_CGROUP): only the v1 hierarchies (of a
    /// hybrid host) are left; with `v1_joined` the child joined its v1 cgroups itself (through
    /// the `tasks` files of the plan): only the cgroup2 one, if any, is left.
    fn placed(&mut self, pid: i32, in_cgroup2: bool, v1_joined: bool) -> Result<(), String>;
    /// Mounts are done, pivot_root is next: run the createRuntime and prestart hooks.
    fn create_runtime(&mut self, pid: i32) -> Result<(), String>;
    /// The process `pid` loaded a seccomp filter with a notify listener: hand `listener` to
    /// the seccomp agent (`linux.seccomp.listenerPath`).
    fn seccomp_listener(&mut self, pid: i32, listener: OwnedFd) -> Result<(), String>;
}

/// Load the seccomp filter in the container process; a notify listener goes to the parent,
/// which hands it to the seccomp agent, and is closed here once the parent has it.
pub(crate) fn load_seccomp(steps: &dyn InitSteps, ch: &Channel) -> Result<(), String> {
    let Some(listener) = steps.load_seccomp()? else {
        return Ok(());
    };
    ch.send_with_fd(&Msg::SeccompFd, listener.as_fd())
        .map_err(|e| format!("send the seccomp listener to the runtime: {e}"))?;
    drop(listener);
    match ch.recv().map_err(|e| format!("sync with runtime: {e}"))? {
        Some(Msg::SeccompDone) => Ok(()),
        Some(Msg::Error(e)) => Err(e),
        _ => sys::exit_now(1),
    }
}

/// Answer a [`Msg::SeccompFd`] from the container process `pid` (parent side).
pub(crate) fn handle_seccomp_fd(
    ch: &Channel,
    pid: i32,
    fd: Option<OwnedFd>,
    parent: &mut dyn ParentSteps,
) -> Result<(), String> {
    let fd = fd.ok_or("sync: seccomp listener message without a descriptor")?;
    if let Err(e) = parent.seccomp_listener(pid, fd) {
        let _ = ch.send(&Msg::Error(e.clone()));
        return Err(e);
    }
    ch.send(&Msg::SeccompDone)
        .map_err(|e| format!("sync with init: {e}"))
}

/// Refuse a working directory that is not inside the container's root (CVE-2024-21626 class:
/// a `process.cwd` such as `/proc/self/fd/N` naming a descriptor of the runtime). Called right
/// after chdir: the kernel reports a cwd unreachable from the root as an error (or, with old
/// libcs, as a path starting with "(unreachable)").
pub(crate) fn check_cwd_inside_root(cwd: &Path) -> Result<(), String> {
    // runc's text: clients and users search for it.
    let breakout = || {
        log::debug!("process cwd {cwd:?} resolves outside of the container's root");
        "current working directory is outside of container mount namespace root -- possible container breakout detected".to_string()
    };
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        Ok(_) => Err(breakout()),
        Err(nix::errno::Errno::ENOENT) => Err(breakout()),
        Err(e) => Err(format!("getcwd after chdir to {cwd:?}: {e}")),
    }
}

/// Make the calling process non-dumpable: until it execs the user program, no other process
/// (in particular none in the container, even root without CAP_SYS_PTRACE over the host user
/// namespace) can open `/proc/<pid>/exe` (the kakuri binary), its memory or its fds
/// (CVE-2019-5736 class). execve makes the process dumpable again as usual.
pub fn make_non_dumpable() -> Result<(), String> {
    sys::prctl(libc::PR_SET_DUMPABLE, 0).map_err(|e| format!("set non-dumpable: {e}"))?;
    Ok(())
}

/// Map a namespace type to its `CLONE_NEW*` flag.
pub fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

fn open_ns(path: &Path) -> Result<OwnedFd, String> {
    std::fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| format!("open namespace {path:?}: {}", os_error(&e)))
}

/// Id mapping lines (containerID, hostID, size), sorted.
pub type IdLines = Vec<[u32; 3]>;

/// The uid and gid mappings of the user namespace at `path`, as (containerID, hostID, size)
/// lines: a short-lived child joins it and reads its own `uid_map` and `gid_map` (a namespace
/// file says nothing of its mappings). Only for a config that joins a user namespace by path
/// and gives mappings too.
pub fn userns_mappings(path: &Path) -> Result<(IdLines, IdLines), String> {
    let ns = open_ns(path)?;
    let (r, w) = sys::pipe_cloexec().map_err(|e| format!("pipe: {}", os_error(&e)))?;
    // SAFETY: kakuri is single-threaded while it creates a container.
    let forked = unsafe { sys::fork_clone(0) }.map_err(|e| format!("fork: {}", os_error(&e)))?;
    let pid = match forked {
        sys::Forked::Child => {
            use std::io::Write;
            drop(r);
            let text = sys::setns(ns.as_fd(), libc::CLONE_NEWUSER)
                .and_then(|()| {
                    let u = std::fs::read_to_string("/proc/self/uid_map")?;
                    let g = std::fs::read_to_string("/proc/self/gid_map")?;
                    Ok(format!("{u}\0{g}"))
                })
                .unwrap_or_else(|e| format!("E{}", os_error(&e)));
            let _ = std::fs::File::from(w).write_all(text.as_bytes());
            sys::exit_now(0);
        }
        sys::Forked::Parent(pid) => pid,
    };
    drop(w);
    let mut text = String::new();
    let read = std::fs::File::from(r).read_to_string(&mut text);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    read.map_err(|e| format!("read the mappings of {path:?}: {e}"))?;
    let (u, g) = text.split_once('\0').ok_or_else(|| {
        format!(
            "read the mappings of {path:?}: {}",
            text.trim_start_matches('E')
        )
    })?;
    let parse = |t: &str| {
        let mut v: Vec<[u32; 3]> = t
            .lines()
            .filter_map(|l| {
                let n: Vec<u32> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                (n.len() == 3).then(|| [n[0], n[1], n[2]])
            })
            .collect();
        v.sort_unstable();
        v
    };
    Ok((parse(u), parse(g)))
}

/// Write id mappings of a child in a new user namespace (see [`usermaps`]).
fn write_id_maps(pid: i32, plan: &InitPlan) -> Result<(), String> {
    usermaps::write(pid, usermaps::UID, &plan.uid_mappings)?;
    usermaps::write(pid, usermaps::GID, &plan.gid_mappings)
}

/// The new namespaces the init makes itself, with `unshare` after joining a user namespace by
/// path, instead of the clone: a namespace belongs to the user namespace of the process that
/// makes it, and only the joined one gives the container rights over its mount, network, UTS
/// and IPC namespaces (runc's nsexec also joins first and unshares after). A new pid namespace
/// cannot be made that way (the init would not be in it): see [`needs_intermediate`].
fn made_by_init(ns: &NamespacePlan) -> libc::c_int {
    if ns.join.iter().any(|(f, _)| *f == libc::CLONE_NEWUSER) {
        ns.clone_flags
            & (libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC)
    } else {
        0
    }
}

/// `/proc/self/setgroups` says `deny` (an unprivileged caller's own gid map): the additional
/// gids are then left alone, as runc does for rootless containers.
pub(crate) fn setgroups_denied() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny")
}

/// unshare(CLONE_NEWTIME) (`made()` runs once it succeeded) and write `offsets` into
/// /proc/self/timens_offsets: they apply to the children made after (and, since Linux 6.0, to
/// the caller from its next execve).
fn new_time_namespace(offsets: &[(String, i64, u32)], made: impl FnOnce()) -> Result<(), String> {
    sys::unshare(libc::CLONE_NEWTIME)
        .map_err(|e| format!("new time namespace: {}", os_error(&e)))?;
    made();
    let text: String = offsets
        .iter()
        .map(|(c, s, n)| format!("{c} {s} {n}\n"))
        .collect();
    if !text.is_empty() {
        std::fs::write("/proc/self/timens_offsets", text).map_err(|e| {
            format!(
                "linux.timeOffsets: write /proc/self/timens_offsets: {}",
                os_error(&e)
            )
        })?;
    }
    Ok(())
}

/// Linux >= 6.0: execve moves a process whose time_for_children differs from its own time
/// namespace into it (before, only children entered it).
fn execve_enters_time_namespace() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    release
        .split('.')
        .next()
        .and_then(|m| m.trim().parse::<u32>().ok())
        .is_some_and(|major| major >= 6)
}

/// The clone makes a user namespace whose maps an unprivileged runtime writes (or has
/// newuidmap/newgidmap write): only the child's owner may, while it is dumpable.
fn owner_writes_maps(plan: &InitPlan) -> bool {
    // SAFETY: geteuid cannot fail.
    plan.namespaces.clone_flags & libc::CLONE_NEWUSER != 0 && unsafe { libc::geteuid() } != 0
}

/// A user namespace joined by path together with a new pid namespace: the pid namespace must
/// belong to the joined user namespace (its `proc` can be mounted from there, as under runc),
/// so it is made after the join, which the runtime cannot do for itself (it could not come
/// back). An intermediate process joins the user namespace, unshares the pid namespace and
/// clones the init with `CLONE_PARENT` (the init is the runtime's child), reports its pid and
/// exits: runc's nsexec stage-1/stage-2. Every other container is cloned directly.
fn needs_intermediate(ns: &NamespacePlan) -> bool {
    ns.clone_flags & libc::CLONE_NEWPID != 0
        && ns.join.iter().any(|(f, _)| *f == libc::CLONE_NEWUSER)
}

/// The intermediate process of [`needs_intermediate`]: returns in the init, never in itself.
fn intermediate(plan: &InitPlan, ch: &Channel) -> Result<(), String> {
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
        .map_err(|e| format!("set parent death signal: {e}"))?;
    make_non_dumpable()?;
    if let Some((_, path)) = plan
        .namespaces
        .join
        .iter()
        .find(|(f, _)| *f == libc::CLONE_NEWUSER)
    {
        let fd = open_ns(path)?;
        sys::setns(fd.as_fd(), libc::CLONE_NEWUSER)
            .map_err(|e| format!("join namespace {path:?}: {}", os_error(&e)))?;
    }
    sys::unshare(libc::CLONE_NEWPID).map_err(|e| {
        format!(
            "new pid namespace in the joined user namespace: {}",
            os_error(&e)
        )
    })?;
    // SAFETY: this process is a fork of the single-threaded runtime and started no thread.
    match unsafe { sys::fork_clone(libc::CLONE_PARENT) }
        .map_err(|e| format!("clone the init: {}", os_error(&e)))?
    {
        sys::Forked::Child => {
            kakuri_timings::child(kakuri_timings::Process::Init);
            Ok(())
        }
        sys::Forked::Parent(pid) => {
            if ch.send(&Msg::Pid(pid)).is_err() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
                sys::exit_now(1);
            }
            sys::exit_now(0);
        }
    }
}

/// A created container init (or its failure already cleaned up).
pub struct Spawned {
    pub pid: i32,
}

/// Fork the container init and drive it to the point where it waits for `start`.
///
/// On error the child is killed and reaped before this returns.
///
/// # Safety-relevant contract
/// Must be called while the process is single-threaded (kakuri never starts threads).
pub fn spawn(
    plan: &InitPlan,
    steps: &dyn InitSteps,
    parent: &mut dyn ParentSteps,
) -> Result<Spawned, String> {
    let (pch, cch) = Channel::pair().map_err(|e| format!("socketpair: {e}"))?;
    let ns = &plan.namespaces;
    // Namespaces that apply only to children are entered by the parent around the clone.
    let mut restore: Vec<(OwnedFd, libc::c_int)> = Vec::new();
    let enter = |restore: &mut Vec<(OwnedFd, libc::c_int)>, path: &Path, flag| {
        let own = open_ns(Path::new(if flag == libc::CLONE_NEWPID {
            "/proc/self/ns/pid_for_children"
        } else {
            "/proc/self/ns/time_for_children"
        }))?;
        let target = open_ns(path)?;
        sys::setns(target.as_fd(), flag)
            .map_err(|e| format!("join namespace {path:?}: {}", os_error(&e)))?;
        restore.push((own, flag));
        Ok::<(), String>(())
    };
    let pre = (|| {
        if let Some(p) = &ns.join_pid {
            enter(&mut restore, p, libc::CLONE_NEWPID)?;
        }
        if let Some(p) = &ns.join_time {
            enter(&mut restore, p, libc::CLONE_NEWTIME)?;
        }
        if let Some(offsets) = ns.new_time.as_ref().filter(|_| !owner_writes_maps(plan)) {
            let own = open_ns(Path::new("/proc/self/ns/time_for_children"))?;
            new_time_namespace(offsets, || restore.push((own, libc::CLONE_NEWTIME)))?;
        }
        Ok::<(), String>(())
    })();
    let undo = |restore: &mut Vec<(OwnedFd, libc::c_int)>| {
        for (fd, flag) in restore.drain(..).rev() {
            if let Err(e) = sys::setns(fd.as_fd(), flag) {
                log::warn!("restore namespace: {e}");
            }
        }
    };
    if let Err(e) = pre {
        undo(&mut restore);
        return Err(e);
    }
    // An unprivileged runtime writes the id maps of the new user namespace as the child's
    // owner: the child must be dumpable from its first instruction until `Go` (init_main), so it
    // inherits that from the runtime, which becomes non-dumpable again right after the clone.
    let maps_by_owner = owner_writes_maps(plan);
    if maps_by_owner {
        sys::prctl(libc::PR_SET_DUMPABLE, 1).map_err(|e| format!("set dumpable: {e}"))?;
    }
    let two_step = needs_intermediate(ns);
    // The init joins its v1 cgroups itself, except behind an intermediate process (which would
    // then be in them too, and charged to their pids limit).
    let self_join = !two_step && !plan.cgroup_v1_tasks.is_empty();
    let mut flags = ns.clone_flags & !made_by_init(ns);
    if two_step {
        flags &= !libc::CLONE_NEWPID;
    }
    // SAFETY: kakuri is single-threaded here (documented contract of this function).
    let forked = unsafe { clone_child(flags, plan.cgroup2_dir.as_ref().map(|f| f.as_fd())) };
    let in_cgroup2 = matches!(forked, Ok((_, true)));
    let forked = forked.map(|(f, _)| f);
    if maps_by_owner && !matches!(forked, Ok(sys::Forked::Child)) {
        make_non_dumpable()?;
    }
    if !matches!(forked, Ok(sys::Forked::Child)) {
        // Only the parent goes back: the child stays in the namespaces entered for it.
        undo(&mut restore);
    }
    let pid = match forked.map_err(|e| format!("clone: {}", os_error(&e)))? {
        sys::Forked::Child => {
            kakuri_timings::child(if two_step {
                kakuri_timings::Process::Intermediate
            } else {
                kakuri_timings::Process::Init
            });
            drop(pch);
            drop(restore);
            if self_join {
                if let Err(e) = join_v1_cgroups(&plan.cgroup_v1_tasks) {
                    let _ = cch.send(&Msg::Error(e));
                    sys::exit_now(1);
                }
            }
            if let Err(e) = close_inherited(plan, &cch) {
                let _ = cch.send(&Msg::Error(e));
                sys::exit_now(1);
            }
            if two_step {
                if let Err(e) = intermediate(plan, &cch) {
                    let _ = cch.send(&Msg::Error(e));
                    sys::exit_now(1);
                }
            }
            let err = match init_main(plan, &cch, steps, two_step, maps_by_owner) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            if cch.send(&Msg::Error(err.clone())).is_err() {
                // The runtime is gone (after Ready): the container's stderr is all there is.
                // Best effort: a write error must not panic (its stderr may be a closed pipe).
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "kakuri: container init: {err}");
            }
            sys::exit_now(1);
        }
        sys::Forked::Parent(pid) => pid,
    };
    kakuri_timings::mark("clone");
    drop(cch);
    let pid = if two_step {
        // The intermediate reports the init's pid and exits.
        let got = pch.recv();
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        match got {
            Ok(Some(Msg::Pid(init))) => {
                kakuri_timings::mark("wait: intermediate clones the init");
                init
            }
            Ok(Some(Msg::Error(e))) => return Err(e),
            Ok(_) => return Err("container init exited during setup".to_string()),
            Err(e) => return Err(format!("sync with init: {e}")),
        }
    } else {
        pid
    };
    let kill_child = |pid: i32| {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    };
    let result = (|| {
        if plan.namespaces.clone_flags & libc::CLONE_NEWUSER != 0 {
            write_id_maps(pid, plan)?;
            idmap::apply_container(&plan.mounts, &plan.bind_sources, pid)?;
            kakuri_timings::mark("id maps");
        }
        if let Some(adj) = plan.process.oom_score_adj {
            let proc = procfs::ProcRoot::open().map_err(|e| format!("process.oomScoreAdj: {e}"))?;
            let p = format!("{pid}/oom_score_adj");
            proc.write(&p, adj.to_string().as_bytes()).map_err(|e| {
                // Without CAP_SYS_RESOURCE (rootless) the value cannot go below the caller's.
                let own = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
                let hint = match own.trim().parse::<i32>() {
                    Ok(own) if e.raw_os_error() == Some(libc::EACCES) && adj < own => format!(
                        " ({adj} is below the caller's {own}: lowering it needs CAP_SYS_RESOURCE)"
                    ),
                    _ => String::new(),
                };
                format!(
                    "process.oomScoreAdj: write /proc/{p}: {}{hint}",
                    os_error(&e)
                )
            })?;
            kakuri_timings::mark("oom_score_adj");
        }
        pch.send(&Msg::Go)
            .map_err(|e| format!("sync with init: {e}"))?;
        // The child sets up what does not need its cgroups while the parent places it.
        parent.placed(pid, in_cgroup2, self_join)?;
        // A child that failed meanwhile has closed its end: its error is read below.
        let _ = pch.send(&Msg::Placed);
        loop {
            let got = pch
                .recv_with_fd()
                .map_err(|e| format!("sync with init: {e}"))?;
            let (m, fd) = match got {
                Some((m, fd)) => (Some(m), fd),
                None => (None, None),
            };
            if kakuri_timings::enabled() {
                wait_mark("init", m.as_ref());
            }
            match m {
                Some(Msg::Timeline(t)) => kakuri_timings::absorb(&t),
                Some(Msg::SeccompFd) => handle_seccomp_fd(&pch, pid, fd, parent)?,
                Some(Msg::RunHooks) => {
                    parent.create_runtime(pid)?;
                    pch.send(&Msg::HooksDone)
                        .map_err(|e| format!("sync with init: {e}"))?;
                }
                Some(Msg::Ready) => return Ok(()),
                Some(Msg::Error(e)) => return Err(e),
                Some(m) => return Err(format!("unexpected message from init: {m:?}")),
                None => return Err("container init exited during setup".to_string()),
            }
        }
    })();
    match result {
        Ok(()) => Ok(Spawned { pid }),
        Err(e) => {
            kill_child(pid);
            Err(e)
        }
    }
}

/// The parent's timings mark for a wait on the channel that ended with `m` (`who` is the peer).
pub(crate) fn wait_mark(who: &str, m: Option<&Msg>) {
    let what = match m {
        Some(Msg::Go) => "Go",
        Some(Msg::Placed) => "Placed",
        Some(Msg::RunHooks) => "RunHooks (mounts done)",
        Some(Msg::HooksDone) => "HooksDone",
        Some(Msg::Ready) => "Ready",
        Some(Msg::SeccompFd) => "seccomp listener",
        Some(Msg::SeccompDone) => "SeccompDone",
        Some(Msg::Pid(_)) => "pid",
        Some(Msg::Timeline(_)) => "timeline",
        Some(Msg::Error(_)) => "error",
        None => "exec or exit (end of channel)",
    };
    kakuri_timings::mark_parts(&["wait: ", who, " ", what]);
}

/// Send this process's timeline so far to the runtime (timings on only).
pub(crate) fn send_timeline(ch: &Channel) {
    if let Some(t) = kakuri_timings::unsent() {
        let _ = ch.send(&Msg::Timeline(t));
    }
}

/// In the fresh child: close every descriptor it inherited except stdio, the preserved ones
/// (`3 .. 3 + preserve_fds`) and those the plan hands it. A created container waits for
/// `start` for as long as its engine likes: it must not hold the caller's other descriptors
/// (pipes an engine waits on for EOF), the runtime's state lock or its log file, as runc's
/// init, which is exec'd with only these, does not. Logging is switched off first: the log
/// file's descriptor is among those closed, and its number may be reused by the next open.
fn close_inherited(plan: &InitPlan, ch: &Channel) -> Result<(), String> {
    log::set_max_level(log::LevelFilter::Off);
    let mut keep = vec![ch.as_raw_fd()];
    keep.extend(plan.exec_fifo.iter().map(|f| f.as_raw_fd()));
    keep.extend(plan.exec_status.iter().map(|f| f.as_raw_fd()));
    keep.extend(plan.console_socket.iter().map(|f| f.as_raw_fd()));
    keep.extend(plan.bind_sources.iter().map(|(_, f)| f.as_raw_fd()));
    sys::close_from_except(3 + plan.preserve_fds, &keep)
        .map_err(|e| format!("close inherited descriptors: {}", os_error(&e)))?;
    // The runtime's own descriptors that fell among the preserved numbers (a caller that asked
    // for more --preserve-fds than it passed).
    for &fd in &plan.close_in_child {
        if !keep.contains(&fd) && fd >= 3 && (fd as u32) < 3 + plan.preserve_fds {
            // SAFETY: a descriptor of the parent's objects (the state lock), which this child
            // never uses; closing its copy here cannot affect the parent.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// The container init: runs in the cloned child; returns only with an error.
/// Waits (once) for the parent's Placed message and then makes the cgroup namespace, whose root
/// is the cgroup the process is in at that moment. Everything that depends on the container's
/// cgroups (the cgroup namespace, cgroup mounts, the hooks, the user process) comes after it.
pub(crate) struct Placement<'a> {
    ch: &'a Channel,
    new_cgroupns: bool,
    done: std::cell::Cell<bool>,
}

impl Placement<'_> {
    pub(crate) fn ensure(&self) -> Result<(), String> {
        if self.done.get() {
            return Ok(());
        }
        match self
            .ch
            .recv()
            .map_err(|e| format!("sync with runtime: {e}"))?
        {
            Some(Msg::Placed) => {}
            Some(Msg::Error(e)) => return Err(e),
            _ => sys::exit_now(1),
        }
        kakuri_timings::mark("wait: Placed (in its cgroups)");
        if self.new_cgroupns {
            sys::unshare(libc::CLONE_NEWCGROUP)
                .map_err(|e| format!("new cgroup namespace: {}", os_error(&e)))?;
            kakuri_timings::mark("new cgroup namespace");
        }
        self.done.set(true);
        Ok(())
    }
}

fn init_main(
    plan: &InitPlan,
    ch: &Channel,
    steps: &dyn InitSteps,
    userns_joined: bool,
    maps_by_owner: bool,
) -> Result<std::convert::Infallible, String> {
    // Die with the runtime while setting up: a killed `create` must leave no process behind.
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
        .map_err(|e| format!("set parent death signal: {e}"))?;
    // An unprivileged runtime can write the id maps of a new user namespace only while the
    // child's /proc files are its own, i.e. while the child is dumpable (runc's nsexec does the
    // same); the child becomes non-dumpable as soon as the maps are written. `maps_by_owner`
    // is the runtime's decision, taken before the clone: the child cannot ask geteuid() itself,
    // since it reads 0 as soon as the runtime has written the uid map, which raced with the
    // gid map and setgroups writes (EACCES on /proc/<pid>/setgroups in a slow guest).
    if !maps_by_owner {
        make_non_dumpable()?;
    }
    kakuri_timings::mark("close inherited fds, death signal");
    match ch.recv().map_err(|e| format!("sync with runtime: {e}"))? {
        Some(Msg::Go) => {}
        Some(Msg::Error(e)) => return Err(e),
        _ => sys::exit_now(1),
    }
    kakuri_timings::mark("wait: Go (id maps)");
    if maps_by_owner {
        // An unprivileged runtime cannot make a time namespace (that needs CAP_SYS_ADMIN in
        // its own user namespace): the init makes it, with the full capabilities the clone gave
        // it in the container's new user namespace, which then owns it (runc 1.2's nsexec also
        // makes it after the user namespace). Still dumpable here, so /proc/self/timens_offsets
        // is its own to open. The init enters it at its execve (Linux >= 6.0 switches to
        // time_for_children there); nothing runs in the container before that.
        if let Some(offsets) = &plan.namespaces.new_time {
            if !execve_enters_time_namespace() {
                return Err(
                    "a time namespace without root privileges needs Linux >= 6.0 \
                     (the init enters it at its execve)"
                        .into(),
                );
            }
            new_time_namespace(offsets, || {})?;
        }
        make_non_dumpable()?;
    }
    for (flag, path) in &plan.namespaces.join {
        if userns_joined && *flag == libc::CLONE_NEWUSER {
            // The intermediate process joined it already.
            continue;
        }
        let fd = open_ns(path)?;
        sys::setns(fd.as_fd(), *flag)
            .map_err(|e| format!("join namespace {path:?}: {}", os_error(&e)))?;
    }
    if plan.in_new_userns {
        sys::setresgid(0).map_err(|e| format!("setgid 0 in the user namespace: {e}"))?;
        sys::setresuid(0).map_err(|e| format!("setuid 0 in the user namespace: {e}"))?;
    }
    let late = made_by_init(&plan.namespaces);
    if late != 0 {
        sys::unshare(late).map_err(|e| {
            format!(
                "new namespaces in the joined user namespace: {}",
                os_error(&e)
            )
        })?;
    }
    // A new network namespace has only `lo`, down: bring it up as runc does (a failure is fatal
    // there too).
    kakuri_timings::mark("join and make namespaces");
    if plan.namespaces.clone_flags & libc::CLONE_NEWNET != 0 {
        sys::link_up("lo")
            .map_err(|e| format!("bring up the loopback interface lo: {}", os_error(&e)))?;
        kakuri_timings::mark("loopback up");
    }
    // The procfs handle for sysctl writes and for the descriptor paths of masked and read-only
    // paths and of the read-only remounts at the end, taken before the container mounts
    // anything.
    let proc_root = if plan.sysctl.is_empty()
        && plan.masked_paths.is_empty()
        && plan.readonly_paths.is_empty()
        && !plan.mounts.iter().any(rootfs::ro_later)
    {
        None
    } else {
        let what = if plan.sysctl.is_empty() {
            "maskedPaths/readonlyPaths/read-only mounts"
        } else {
            "linux.sysctl"
        };
        Some(procfs::ProcRoot::open().map_err(|e| format!("{what}: {e}"))?)
    };
    let placement = Placement {
        ch,
        new_cgroupns: plan.new_cgroupns,
        done: std::cell::Cell::new(false),
    };
    if let Some(h) = &plan.hostname {
        nix::unistd::sethostname(h).map_err(|e| format!("sethostname {h:?}: {e}"))?;
    }
    if let Some(d) = &plan.domainname {
        let c = CString::new(d.as_str()).map_err(|_| "domainname has a NUL byte")?;
        // SAFETY: valid pointer and length of a NUL-free string.
        if unsafe { libc::setdomainname(c.as_ptr(), d.len()) } != 0 {
            return Err(format!(
                "setdomainname {d:?}: {}",
                os_error(&std::io::Error::last_os_error())
            ));
        }
    }
    if !plan.no_new_keyring {
        let name = CString::new(format!("_ses.{}", plan.id)).unwrap_or_default();
        if let Err(e) = sys::join_session_keyring(Some(&name)) {
            if e.raw_os_error() != Some(libc::ENOSYS) {
                return Err(format!("join session keyring: {}", os_error(&e)));
            }
        }
    }
    kakuri_timings::mark("procfs handle, hostname, keyring");
    let (root, console) = rootfs::prepare(plan, &placement)?;
    placement.ensure()?;
    // The cwd is created if missing, as runc does.
    {
        // Only a missing one: anything else (e.g. a magic link such as /proc/self/fd/N, which
        // the in-root lookup refuses) is left to the chdir and its check below.
        let cwd = &plan.process.cwd;
        match rootfs::open_in(root.as_fd(), cwd, libc::O_PATH) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                rootfs::mkdir_all(root.as_fd(), cwd)
                    .map_err(|e| format!("create cwd {cwd:?} in the rootfs: {}", os_error(&e)))?;
            }
            _ => {}
        }
    }
    kakuri_timings::mark("cwd");
    if plan.runtime_hooks {
        ch.send(&Msg::RunHooks)
            .map_err(|e| format!("sync with runtime: {e}"))?;
        match ch.recv().map_err(|e| format!("sync with runtime: {e}"))? {
            Some(Msg::HooksDone) => {}
            Some(Msg::Error(e)) => return Err(e),
            _ => sys::exit_now(1),
        }
        kakuri_timings::mark("wait: HooksDone (prestart, createRuntime)");
    }
    steps.create_container()?;
    rootfs::pivot(plan, &root)?;
    drop(root);
    kakuri_timings::mark("pivot_root");
    if plan.default_devices {
        rootfs::reopen_dev_null()?;
    }
    // sysctls go through the verified procfs handle, never through the container's /proc
    // (which the config or a container process may have covered with other mounts).
    if let Some(proc_root) = &proc_root {
        for (k, v) in &plan.sysctl {
            let p = procfs::sysctl_path(k).map_err(|e| format!("linux.sysctl[{k:?}]: {e}"))?;
            proc_root
                .write(&p, v.as_bytes())
                .map_err(|e| format!("linux.sysctl[{k:?}]: write /proc/{p}: {}", os_error(&e)))?;
        }
        if !plan.sysctl.is_empty() {
            kakuri_timings::mark("sysctl");
        }
    }
    rootfs::finalize(plan, proc_root.as_ref())?;
    let proc = &plan.process;
    let slave = match console {
        Some((master, slave)) => {
            if let Some(sock) = &plan.console_socket {
                send_fd(sock, &master, "/dev/ptmx")
                    .map_err(|e| format!("send the console to --console-socket: {e}"))?;
            }
            drop(master);
            Some(slave)
        }
        None => None,
    };
    let setgroups_ok =
        !plan.in_new_userns || (!plan.gid_mappings.is_empty() && !setgroups_denied());
    let fin = finish_process(proc, slave, plan.preserve_fds, setgroups_ok, steps, ch)?;
    // Ready is sent: `create` returns and its runtime exits. What fails from here on is told to
    // `start` through the exec status fifo (and, as runc does, on the container's stderr).
    let err = match after_start(plan, &fin, steps) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    if let Some(Ok(status)) = plan.exec_status.as_ref().map(OwnedFd::try_clone) {
        use std::io::Write;
        let _ = std::fs::File::from(status).write_all(err.as_bytes());
    }
    eprintln!("kakuri: container init: {err}");
    sys::exit_now(1);
}

/// The init once `create` is done: wait for `start`, then (as runc) the filter when it comes
/// last, the startContainer hooks under it, and the execve. Returns only with an error.
fn after_start(
    plan: &InitPlan,
    fin: &Finished,
    steps: &dyn InitSteps,
) -> Result<std::convert::Infallible, String> {
    if let Some(fifo) = &plan.exec_fifo {
        let mut f = std::fs::File::from(fifo.try_clone().map_err(|e| e.to_string())?);
        let mut b = [0u8; 1];
        loop {
            match f.read(&mut b) {
                Ok(1) => break,
                Ok(_) => sys::exit_now(0),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("wait for start: {e}")),
            }
        }
    }
    kakuri_timings::mark("wait: start");
    // The init's last phases reach `start` ahead of anything else in the exec status fifo;
    // before the filter, which could forbid the write (and so, with it, what comes after the
    // filter shows as the runtime's wait for the execve).
    let flush_timeline = || {
        if let (Some(frame), Some(status)) = (kakuri_timings::unsent_frame(), &plan.exec_status) {
            let _ = nix::unistd::write(status, &frame);
        }
    };
    if fin.seccomp_last {
        flush_timeline();
        steps.load_seccomp()?;
    }
    steps.start_container()?;
    if !fin.seccomp_last {
        flush_timeline();
    }
    Err(fin.exec.exec())
}

/// What [`finish_process`] leaves for the last steps.
pub(crate) struct Finished {
    /// The prepared execve (argv, env with HOME: nothing left to read or look up).
    pub(crate) exec: process::Execve,
    /// The seccomp filter is still to be loaded, as the last step before execve (the
    /// startContainer hooks of an init run under it).
    pub(crate) seccomp_last: bool,
}

/// The steps every container process takes after its namespaces and root are set up, shared by
/// a container's init and by `exec`: umask, rlimits, scheduling, the executable lookup,
/// no_new_privs, LSM labels, seccomp (before the credential change unless no_new_privs allows
/// it later), user and capabilities, cwd (checked to be inside the root), the console as stdio,
/// close-on-exec for every inherited descriptor, signal dispositions, a session of its own, then
/// Ready to the runtime. With noNewPrivileges the filter is left for the very end (see
/// [`Finished`]): after it only execve (and, for an init, the startContainer hooks) run, so a
/// profile needs to allow nothing of kakuri's own (prctl, close_range, ...).
fn finish_process(
    proc: &ProcessPlan,
    slave: Option<OwnedFd>,
    preserve_fds: u32,
    setgroups_ok: bool,
    steps: &dyn InitSteps,
    ch: &Channel,
) -> Result<Finished, String> {
    if let Some(u) = proc.umask {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(u as libc::mode_t) };
    }
    proc.apply_rlimits()?;
    proc.apply_scheduling()?;
    proc.apply_personality_and_mempolicy()?;
    kakuri_timings::mark("umask, rlimits, scheduling, personality, memory policy");
    let exe = proc.resolve_executable()?;
    let exec = proc.prepare_exec(&exe)?;
    kakuri_timings::mark("executable lookup, exec arguments");
    if proc.no_new_privileges {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(|e| format!("no_new_privs: {e}"))?;
    }
    lsm::apply_exec_labels(
        proc.apparmor_profile.as_deref(),
        proc.selinux_label.as_deref(),
    )?;
    // Before any seccomp filter: the config's profile may not allow close_range(2).
    sys::cloexec_from(3 + preserve_fds).map_err(|e| format!("close_range: {e}"))?;
    // The program starts with every signal at its default action and none blocked, as with
    // runc: nothing of what the runtime (Rust ignores SIGPIPE) or its caller ignored or blocked.
    // Before any filter too: it takes one rt_sigaction per signal.
    sys::reset_signals().map_err(|e| format!("reset signal dispositions: {e}"))?;
    kakuri_timings::mark("no_new_privs, LSM, close-on-exec, signals");
    if !proc.no_new_privileges {
        load_seccomp(steps, ch)?;
        kakuri_timings::mark("seccomp load");
    }
    proc.give_stdio_to_user(slave.as_ref().map(|s| s.as_fd()))?;
    // The cwd is entered before the user changes, as runc does, so a directory only root may
    // enter (/root, mode 0700) works for any user; on EACCES/EPERM it is tried again as the
    // process user (a directory its owner may enter but the runtime's root may not, on NFS).
    let chdir = || {
        nix::unistd::chdir(&proc.cwd).map_err(|e| {
            let msg = format!(
                "chdir to cwd ({:?}) set in config.json failed: {}",
                proc.cwd,
                os_error(&std::io::Error::from(e))
            );
            (e, msg)
        })
    };
    let retry_cwd = match chdir() {
        Ok(()) => false,
        Err((nix::errno::Errno::EACCES | nix::errno::Errno::EPERM, _)) => true,
        Err((_, msg)) => return Err(msg),
    };
    kakuri_timings::mark("stdio owner, chdir");
    proc.apply_credentials(setgroups_ok)?;
    kakuri_timings::mark("user, groups, capabilities");
    if retry_cwd {
        chdir().map_err(|(_, msg)| msg)?;
    }
    check_cwd_inside_root(&proc.cwd)?;
    // Every container process leads a session (and process group) of its own, as with runc
    // (its nsexec calls setsid for the init and for exec'd processes): signals to the caller's
    // process group or session do not reach the container.
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    if let Some(s) = slave {
        for fd in 0..3 {
            nix::unistd::dup2(s.as_raw_fd(), fd).map_err(|e| format!("dup2 console: {e}"))?;
        }
        sys::set_controlling_tty(s.as_fd()).map_err(|e| format!("set controlling tty: {e}"))?;
    }
    // The process outlives the runtime from here on (a detached exec, a created container).
    sys::prctl(libc::PR_SET_PDEATHSIG, 0).map_err(|e| format!("clear parent death signal: {e}"))?;
    let seccomp_last = proc.no_new_privileges && !steps.seccomp_needs_listener();
    if proc.no_new_privileges && !seccomp_last {
        // The listener must reach the agent while the runtime is still there.
        load_seccomp(steps, ch)?;
        kakuri_timings::mark("seccomp load");
    }
    kakuri_timings::mark("setsid, console, ready");
    send_timeline(ch);
    ch.send(&Msg::Ready)
        .map_err(|e| format!("sync with runtime: {e}"))?;
    Ok(Finished { exec, seccomp_last })
}

/// Send `fd` over a connected unix socket as one SCM_RIGHTS message with `name` as payload.
pub fn send_fd(sock: &OwnedFd, fd: &OwnedFd, name: &str) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(name.as_bytes())];
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}
