//! `create` and `run`: from a bundle to a container init waiting for `start`.

use std::cell::Cell;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use kakuri_cgroups::{CgroupManager, Manager};
use kakuri_isolate::{
    rootfs, CgroupMountSource, DevicePlan, InitPlan, InitSteps, NamespacePlan, ParentSteps,
    ProcessPlan,
};
use kakuri_spec::oci::{self, LinuxNamespaceType};
use kakuri_spec::os_error;

use crate::hooks::{self, HookContext};
use crate::state::{self, ContainerDir, State};
use crate::{Error, HookState, Runtime};

/// Options of `create` (and `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
}

pub(crate) fn spec_ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Whether the namespace file `path` is the one of kind `kind` this process is in.
fn same_ns(path: &Path, kind: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        std::fs::metadata(format!("/proc/self/ns/{kind}")),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn propagation(s: &str) -> Result<libc::c_ulong, Error> {
    Ok(match s {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        other => {
            return Err(Error::msg(format!(
                "linux.rootfsPropagation: unknown propagation {other:?}"
            )))
        }
    })
}

/// runc's built-in device cgroup rules (runc 1.1's `specconv.AllowedDevices`), appended to
/// the config's. A rule that comes with a device node (`/dev/null` ...) is left out when
/// `linux.devices` lists a device at that path, as runc leaves it out: the config's device
/// then replaces the default one, and only `linux.resources.devices` decides its access.
pub(crate) fn default_device_rules(config_paths: &[&Path]) -> Vec<oci::LinuxDeviceCgroup> {
    use oci::LinuxDeviceType::{B, C};
    let rule = |t: oci::LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut b = oci::LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(t)
            .access(access.to_string());
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().expect("static device rule")
    };
    let node = |path: &'static str, major: i64, minor: i64| {
        (Some(path), rule(C, Some(major), Some(minor), "rwm"))
    };
    [
        (None, rule(C, None, None, "m")),
        (None, rule(B, None, None, "m")),
        node("/dev/null", 1, 3),
        node("/dev/random", 1, 8),
        node("/dev/full", 1, 7),
        node("/dev/tty", 5, 0),
        node("/dev/zero", 1, 5),
        node("/dev/urandom", 1, 9),
        (None, rule(C, Some(136), None, "rwm")),
        (None, rule(C, Some(5), Some(2), "rwm")),
        (None, rule(C, Some(10), Some(200), "rwm")),
    ]
    .into_iter()
    .filter(|(path, _)| !path.is_some_and(|p| config_paths.contains(&Path::new(p))))
    .map(|(_, r)| r)
    .collect()
}

/// `--preserve-fds n`: descriptors 3 .. 3+n must be open, as runc checks them (with runc's
/// text), before anything is made.
pub(crate) fn check_preserve_fds(n: u32) -> Result<(), Error> {
    for i in 0..n {
        let fd = 3 + u64::from(i);
        let p = format!("/proc/self/fd/{fd}");
        if let Err(e) = std::fs::metadata(&p) {
            return Err(Error::msg(format!(
                "unable to stat preserved-fd {i} (of {n}): stat {p}: {}",
                os_error(&e)
            )));
        }
    }
    Ok(())
}

/// Fields of runtime-spec 1.3 that kakuri does not apply, refused by name with the reason
/// rather than ignored. Checked before anything is made.
pub(crate) fn refuse_unsupported(spec: &oci::Spec) -> Result<(), String> {
    for (field, present) in [
        ("windows", spec.windows().is_some()),
        ("solaris", spec.solaris().is_some()),
        ("vm", spec.vm().is_some()),
        ("zos", spec.zos().is_some()),
    ] {
        if present {
            return Err(format!(
                "{field}: a section for another platform; kakuri runs Linux containers only"
            ));
        }
    }
    if let Some(p) = spec.process() {
        if p.user()
            .username()
            .as_deref()
            .is_some_and(|u| !u.is_empty())
        {
            return Err(
                "process.user.username: Windows only; give process.user.uid and gid".into(),
            );
        }
        if p.command_line().as_deref().is_some_and(|c| !c.is_empty()) {
            return Err("process.commandLine: Windows only; give process.args".into());
        }
    }
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    if let Some(l) = linux.mount_label().as_deref().filter(|l| !l.is_empty()) {
        if !kakuri_isolate::lsm::selinux_enabled() {
            return Err(format!(
                "linux.mountLabel: SELinux is disabled or not supported on this host, the label {l:?} cannot be applied"
            ));
        }
    }
    Ok(())
}

/// Resources with no cgroup v2 interface: runc leaves them unapplied on v2 without a word;
/// kakuri leaves them unapplied too (refusing would break configs runc runs) but says so,
/// naming each field.
fn warn_v1_only(r: &oci::LinuxResources) {
    let mut fields = Vec::new();
    if let Some(m) = r.memory() {
        for (name, set) in [
            ("memory.kernel", m.kernel().is_some()),
            ("memory.kernelTCP", m.kernel_tcp().is_some()),
            ("memory.swappiness", m.swappiness().is_some()),
            ("memory.disableOOMKiller", m.disable_oom_killer().is_some()),
            ("memory.useHierarchy", m.use_hierarchy().is_some()),
        ] {
            if set {
                fields.push(name);
            }
        }
    }
    if let Some(n) = r.network() {
        if n.class_id().is_some() {
            fields.push("network.classID");
        }
        if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            fields.push("network.priorities");
        }
    }
    for f in fields {
        log::warn!("linux.resources.{f}: cgroup v2 has no interface for it; not applied");
    }
}

/// The container's cgroup2 directory opened `O_PATH|O_DIRECTORY`, for the init (or an exec'd
/// process) to be cloned into; a directory that cannot be opened is only a debug note: the
/// process is then placed through `cgroup.procs`, which reports the real error.
pub(crate) fn open_cgroup2_dir(dir: &Path) -> Option<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
    {
        Ok(f) => Some(OwnedFd::from(f)),
        Err(e) => {
            log::debug!("open {} for CLONE_INTO_CGROUP: {e}", dir.display());
            None
        }
    }
}

/// The v1 directories among `dirs` ([`Manager::dirs`]: the cgroup2 one has no controllers).
pub(crate) fn v1_dirs<'a>(dirs: &[(&[String], &'a Path)]) -> Vec<&'a Path> {
    dirs.iter()
        .filter(|(c, _)| !c.is_empty())
        .map(|(_, d)| *d)
        .collect()
}

/// Whether prestart or createRuntime hooks are configured (the runtime runs them while the init
/// waits before pivot_root).
fn hooks_for_runtime(hooks: Option<&oci::Hooks>) -> bool {
    hooks.is_some_and(|h| h.prestart().is_some() || h.create_runtime().is_some())
}

/// A create in progress: what to undo if it fails.
struct Undo<'a> {
    dir: Option<ContainerDir>,
    cgroup: Option<&'a Manager>,
    /// The cgroup held other processes before: remove only what is empty.
    shared_cgroup: bool,
    /// The rootfs bound onto itself in the runtime's mount namespace, and the id of the mount
    /// under it (a container without a mount namespace).
    host_root: Option<(&'a Path, u64)>,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Some((rootfs, holder)) = self.host_root {
            if let Err(e) = kakuri_isolate::hostmount::release(rootfs, holder) {
                log::warn!("clean up the rootfs bind after a failed create: {e}");
            }
        }
        if let Some(cg) = self.cgroup {
            let r = if self.shared_cgroup {
                cg.destroy_leaving_busy().map(drop)
            } else {
                cg.destroy()
            };
            if let Err(e) = r {
                log::warn!("clean up cgroups after a failed create: {e}");
            }
        }
        if let Some(d) = self.dir.take() {
            if let Err(e) = d.remove() {
                log::warn!("clean up state after a failed create: {e}");
            }
        }
    }
}

/// Hand a seccomp notify listener to the agent at `linux.seccomp.listenerPath`, with the
/// containerProcessState of runtime-spec (`fds: ["seccompFd"]`), as runc does.
pub(crate) fn send_seccomp_listener(
    st: &State,
    status: &str,
    process_pid: i32,
    init_pid: i32,
    listener: OwnedFd,
) -> Result<(), String> {
    let Some(sc) = st.seccomp.as_ref() else {
        return Err("linux.seccomp: a notify listener without a seccomp config".into());
    };
    let Some(path) = sc.listener_path().as_ref() else {
        return Err("linux.seccomp.listenerPath: not set, but SCMP_ACT_NOTIFY is used".into());
    };
    let mut state = serde_json::json!({
        "ociVersion": kakuri_spec::OCI_VERSION,
        "id": st.id,
        "status": status,
        "pid": init_pid,
        "bundle": st.bundle,
    });
    if !st.annotations.is_empty() {
        state["annotations"] = serde_json::json!(st.annotations);
    }
    let mut msg = serde_json::json!({
        "ociVersion": kakuri_spec::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": process_pid,
        "state": state,
    });
    if let Some(m) = sc.listener_metadata().as_ref().filter(|m| !m.is_empty()) {
        msg["metadata"] = serde_json::json!(m);
    }
    let bytes = serde_json::to_vec(&msg).map_err(|e| e.to_string())?;
    kakuri_seccomp::send_listener_fd(path, &bytes, std::os::fd::AsFd::as_fd(&listener))
        .map_err(|e| e.to_string())
}

struct Parent<'a> {
    state: &'a State,
    cgroup: &'a Manager,
    /// linux.resources with the default device rules: the systemd driver applies them once the
    /// unit exists (the cgroupfs driver did before the clone).
    resources: &'a oci::LinuxResources,
    hooks: Option<&'a oci::Hooks>,
    net_devices: &'a [kakuri_isolate::netdev::NetDevice],
    rdt: Option<&'a crate::resctrl::Plan>,
    /// What `rdt` made, for the state (or to undo).
    rdt_made: crate::resctrl::Made,
}

impl ParentSteps for Parent<'_> {
    fn placed(&mut self, pid: i32, in_cgroup2: bool, v1_joined: bool) -> Result<(), String> {
        if v1_joined {
            // The init joined its v1 cgroups itself (cgroupfs driver only): the cgroup2 one of
            // a hybrid host is left unless it was cloned into it.
            if let Some(dir) = self.cgroup.unified_path().filter(|_| !in_cgroup2) {
                kakuri_cgroups::add_task_to(pid, dir).map_err(|e| e.to_string())?;
            }
        } else {
            // Cloned into its cgroup2 directory (in_cgroup2): only the v1 hierarchies are left.
            // The systemd driver makes the unit here: systemd needs a pid to start a scope.
            self.cgroup
                .place_init(pid, in_cgroup2, self.resources)
                .map_err(|e| e.to_string())?;
        }
        if let Some(p) = self.rdt {
            crate::resctrl::apply(p, pid, &mut self.rdt_made)?;
        }
        kakuri_isolate::netdev::move_into(pid, self.net_devices)
    }

    fn create_runtime(&mut self, pid: i32) -> Result<(), String> {
        let Some(h) = self.hooks else { return Ok(()) };
        // runtime-spec's lifecycle: the environment is created (step 2, after which the status
        // is "created") before the prestart, createRuntime and createContainer hooks (steps
        // 3-5). runc passes "creating"; runtime-tools' hooks_stdin checks for "created".
        let json = HookState::of(self.state, "created", Some(pid)).json();
        // runc runs these in the bundle directory (it changes into it for create and run).
        let ctx = HookContext {
            default_env: None,
            cwd: Some(&self.state.bundle),
        };
        if let Some(p) = h.prestart() {
            hooks::run("prestart", p, &json, ctx)?;
        }
        if let Some(c) = h.create_runtime() {
            hooks::run("createRuntime", c, &json, ctx)?;
        }
        Ok(())
    }

    fn seccomp_listener(&mut self, pid: i32, listener: OwnedFd) -> Result<(), String> {
        send_seccomp_listener(self.state, "creating", pid, pid, listener)
    }
}

pub(crate) struct Init<'a> {
    pub(crate) state: &'a State,
    pub(crate) hooks: Option<&'a oci::Hooks>,
    pub(crate) seccomp: Option<kakuri_seccomp::Filter>,
    /// The init's host pid, read from the host /proc before pivot_root.
    pub(crate) host_pid: Cell<i32>,
}

impl Init<'_> {
    /// The container process's `env`: what an in-container hook without `env` gets.
    fn process_env(&self) -> &[String] {
        self.state
            .process
            .as_ref()
            .and_then(|p| p.env().as_deref())
            .unwrap_or(&[])
    }
}

impl InitSteps for Init<'_> {
    fn create_container(&self) -> Result<(), String> {
        let pid = std::fs::read_link("/proc/self")
            .ok()
            .and_then(|p| p.to_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0);
        self.host_pid.set(pid);
        let Some(c) = self.hooks.and_then(|h| h.create_container().as_ref()) else {
            return Ok(());
        };
        let json = HookState::of(self.state, "created", Some(pid)).json();
        // As runc: in the rootfs directory (the init's cwd there), before pivot_root.
        let ctx = HookContext {
            default_env: Some(self.process_env()),
            cwd: Some(&self.state.rootfs),
        };
        hooks::run("createContainer", c, &json, ctx)
    }

    fn start_container(&self) -> Result<(), String> {
        let Some(c) = self.hooks.and_then(|h| h.start_container().as_ref()) else {
            return Ok(());
        };
        // The user process has not started yet: the state is still "created".
        let json = HookState::of(self.state, "created", Some(self.host_pid.get())).json();
        // In the process's cwd, where the init already is.
        let ctx = HookContext {
            default_env: Some(self.process_env()),
            cwd: None,
        };
        hooks::run("startContainer", c, &json, ctx)
    }

    fn seccomp_needs_listener(&self) -> bool {
        self.seccomp.as_ref().is_some_and(|f| f.needs_notify())
    }

    fn load_seccomp(&self) -> Result<Option<OwnedFd>, String> {
        match &self.seccomp {
            Some(f) => f.load().map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }
}

impl Runtime {
    /// `create`: returns the init's pid once it is fully set up and waiting for `start`.
    pub fn create(&self, o: &CreateOptions) -> Result<i32, Error> {
        self.create_inner(o, false).map(|c| c.pid)
    }

    /// Create; with `proxy_tty` (foreground `run` of a terminal container without
    /// `--console-socket`) this process receives the pty master on the returned socket.
    pub(crate) fn create_inner(
        &self,
        o: &CreateOptions,
        proxy_tty: bool,
    ) -> Result<Created, Error> {
        // First, before anything is read or made: from here on the binary this process (and
        // the init it forks) runs from is read-only (may re-execute this process once).
        kakuri_isolate::selfexe::protect().map_err(Error::msg)?;
        state::check_id(&o.id)?;
        check_preserve_fds(o.preserve_fds)?;
        let bundle = kakuri_spec::load_bundle(&o.bundle).map_err(|e| Error::msg(e.to_string()))?;
        kakuri_timings::mark("config parse");
        let spec = &bundle.spec;
        match std::fs::metadata(&bundle.rootfs) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::msg(format!(
                    "root.path: rootfs ({:?}) is not a directory",
                    bundle.rootfs
                )))
            }
            Err(e) => {
                return Err(Error::msg(format!(
                    "root.path: rootfs ({:?}): {}",
                    bundle.rootfs,
                    os_error(&e)
                )))
            }
        }
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::msg("process: a container needs a process to run"))?;
        refuse_unsupported(spec).map_err(Error::msg)?;
        let mut proc_plan = ProcessPlan::from_spec(process).map_err(Error::msg)?;
        kakuri_isolate::lsm::check_available(
            proc_plan.apparmor_profile.as_deref(),
            proc_plan.selinux_label.as_deref(),
        )
        .map_err(Error::msg)?;
        if proc_plan.terminal && o.console_socket.is_none() && !proxy_tty {
            return Err(Error::msg(
                "cannot allocate tty if kakuri will detach without setting console socket",
            ));
        }
        if !proc_plan.terminal && o.console_socket.is_some() {
            return Err(Error::msg(
                "cannot use console socket if kakuri will not detach or allocate tty",
            ));
        }
        let empty = oci::Linux::default();
        let linux = spec.linux().as_ref().unwrap_or(&empty);
        proc_plan
            .set_linux(linux.personality().as_ref(), linux.memory_policy().as_ref())
            .map_err(Error::msg)?;
        kakuri_timings::mark("process plan");
        let seccomp = match linux.seccomp() {
            Some(s) => Some(kakuri_seccomp::compile(s).map_err(|e| Error::msg(e.to_string()))?),
            None => None,
        };
        if seccomp.is_some() {
            kakuri_timings::mark("seccomp compile");
        }

        // Namespaces.
        let mut ns = NamespacePlan::default();
        let mut new_cgroupns = false;
        let mut new_mountns = false;
        let mut in_new_userns = false;
        let mut joins: Vec<(i32, libc::c_int, PathBuf)> = Vec::new();
        for n in linux.namespaces().iter().flatten() {
            let flag = kakuri_isolate::ns_flag(n.typ());
            match (n.typ(), n.path()) {
                (LinuxNamespaceType::Pid, Some(p)) => ns.join_pid = Some(p.clone()),
                (LinuxNamespaceType::Time, Some(p)) => ns.join_time = Some(p.clone()),
                (LinuxNamespaceType::Time, None) => {
                    let offs = linux
                        .time_offsets()
                        .iter()
                        .flatten()
                        .map(|(clock, off)| {
                            (
                                clock.clone(),
                                off.secs().unwrap_or(0),
                                off.nanosecs().unwrap_or(0),
                            )
                        })
                        .collect();
                    ns.new_time = Some(offs);
                }
                // Joining the mount namespace kakuri runs in is sharing it.
                (LinuxNamespaceType::Mount, Some(p)) if same_ns(p, "mnt") => {}
                (t, Some(p)) => {
                    // The user namespace is joined first, the mount namespace last.
                    let order = match t {
                        LinuxNamespaceType::User => 0,
                        LinuxNamespaceType::Mount => 2,
                        _ => 1,
                    };
                    if t == LinuxNamespaceType::User {
                        in_new_userns = true;
                    }
                    joins.push((order, flag, p.clone()));
                }
                (LinuxNamespaceType::Cgroup, None) => new_cgroupns = true,
                (t, None) => {
                    ns.clone_flags |= flag;
                    if t == LinuxNamespaceType::Mount {
                        new_mountns = true;
                    }
                    if t == LinuxNamespaceType::User {
                        in_new_userns = true;
                    }
                }
            }
        }
        if !in_new_userns {
            if let Some(c) = proc_plan.caps.as_mut() {
                self.settle_caps(c)
                    .map_err(|e| Error::msg(format!("unable to start container process: {e}")))?;
            }
        }
        // runc's rule: mappings with a user namespace joined by path are refused unless they
        // are that namespace's own (containerd and CRI-O pass both), which gets a warning.
        if let Some((_, _, path)) = joins.iter().find(|j| j.1 == libc::CLONE_NEWUSER) {
            let uid = linux.uid_mappings().as_deref().unwrap_or(&[]);
            let gid = linux.gid_mappings().as_deref().unwrap_or(&[]);
            if !uid.is_empty() || !gid.is_empty() {
                let (ns_uid, ns_gid) = kakuri_isolate::userns_mappings(path).map_err(Error::msg)?;
                let lines = |m: &[oci::LinuxIdMapping]| {
                    let mut v: Vec<[u32; 3]> = m
                        .iter()
                        .map(|x| [x.container_id(), x.host_id(), x.size()])
                        .collect();
                    v.sort_unstable();
                    v
                };
                if lines(uid) != ns_uid || lines(gid) != ns_gid {
                    return Err(Error::msg(
                        "linux.uidMappings: user namespaces enabled, but both namespace path and non-matching mapping specified -- you may only provide one",
                    ));
                }
                log::warn!("config.json has both a userns path to join and a matching userns mapping specified -- you may only provide one");
            }
        }
        let has_netns = ns.clone_flags & libc::CLONE_NEWNET != 0
            || joins
                .iter()
                .any(|j| j.1 == libc::CLONE_NEWNET && !same_ns(&j.2, "net"));
        // SAFETY: geteuid cannot fail.
        let rootless_euid = unsafe { libc::geteuid() } != 0;
        let net_devices = kakuri_isolate::netdev::plan(
            linux.net_devices().as_ref().unwrap_or(&HashMap::new()),
            has_netns,
            rootless_euid,
        )
        .map_err(Error::msg)?;
        let rdt_plan = linux
            .intel_rdt()
            .as_ref()
            .map(|r| crate::resctrl::plan(r, &o.id, crate::resctrl::mount_point().as_deref()))
            .transpose()
            .map_err(Error::msg)?;
        joins.sort_by_key(|j| j.0);
        ns.join = joins.into_iter().map(|(_, f, p)| (f, p)).collect();
        // Without a mount namespace of its own the container's mounts are made in kakuri's
        // (see kakuri_isolate::hostmount), which a process in a user namespace cannot do.
        let shared_mountns = !new_mountns && !ns.join.iter().any(|(f, _)| *f == libc::CLONE_NEWNS);
        if shared_mountns && in_new_userns {
            return Err(Error::msg(
                "linux.namespaces: a container in a user namespace needs a mount namespace of its own (without one its mounts would be made in the runtime's mount namespace, which a user namespace does not own)",
            ));
        }

        let mut mounts = rootfs::mount_plans(spec.mounts().as_deref().unwrap_or(&[]), &bundle.dir)
            .map_err(Error::msg)?;
        {
            use kakuri_isolate::idmap::{self, ContainerUserns};
            let joined = ns.join.iter().find(|(f, _)| *f == libc::CLONE_NEWUSER);
            let ctr = match (joined, in_new_userns) {
                (Some((_, p)), _) => ContainerUserns::Joined(p),
                (None, true) => ContainerUserns::New {
                    uid: linux.uid_mappings().as_deref().unwrap_or(&[]),
                    gid: linux.gid_mappings().as_deref().unwrap_or(&[]),
                },
                (None, false) => ContainerUserns::None,
            };
            idmap::resolve(&mut mounts, &ctr).map_err(Error::msg)?;
        }
        if shared_mountns {
            rootfs::refuse_root_mounts(&mounts).map_err(Error::msg)?;
        }
        // linux.mountLabel (refused above where SELinux is off): the SELinux context of the
        // filesystems mounted for the container, as runc gives it (tmpfs, devpts, mqueue).
        if let Some(l) = linux.mount_label().as_deref().filter(|l| !l.is_empty()) {
            for m in mounts.iter_mut().filter(|m| {
                !m.options.is_bind() && matches!(m.fstype.as_str(), "tmpfs" | "devpts" | "mqueue")
            }) {
                let ctx = format!("context=\"{l}\"");
                m.options.data = if m.options.data.is_empty() {
                    ctx
                } else {
                    format!("{},{ctx}", m.options.data)
                };
            }
        }
        let dev_is_bind = mounts
            .iter()
            .any(|m| m.destination == Path::new("/dev") && m.options.is_bind());
        let mut devices = Vec::new();
        for (i, d) in linux.devices().iter().flatten().enumerate() {
            let kind = match d.typ() {
                oci::LinuxDeviceType::C | oci::LinuxDeviceType::U => libc::S_IFCHR,
                oci::LinuxDeviceType::B => libc::S_IFBLK,
                oci::LinuxDeviceType::P => libc::S_IFIFO,
                oci::LinuxDeviceType::A => {
                    return Err(Error::msg(format!(
                        "linux.devices[{i}].type: \"a\" is not a device type"
                    )))
                }
            };
            if !d.path().is_absolute() {
                return Err(Error::msg(format!(
                    "linux.devices[{i}].path: {:?} is not an absolute path",
                    d.path()
                )));
            }
            devices.push(DevicePlan {
                path: d.path().clone(),
                kind,
                major: d.major(),
                minor: d.minor(),
                mode: d.file_mode().unwrap_or(0o666),
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            });
        }
        let root_propagation = linux
            .rootfs_propagation()
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(propagation)
            .transpose()?;
        let mut sysctl: Vec<(String, String)> = linux
            .sysctl()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        sysctl.sort();

        kakuri_timings::mark("namespace, mount and device plans");
        // Cgroups: resolved and checked before anything exists.
        let mut cgroup = Manager::new(
            linux.cgroups_path().as_ref().and_then(|p| p.to_str()),
            &o.id,
            self.systemd_cgroup,
        )
        .map_err(|e| Error::msg(e.to_string()))?;

        if cgroup.mode() == kakuri_cgroups::Mode::V2 {
            if let Some(r) = linux.resources() {
                warn_v1_only(r);
            }
        }

        let owner = String::new();
        let annotations: HashMap<String, String> = spec.annotations().clone().unwrap_or_default();
        cgroup
            .set_unit_annotations(&annotations)
            .map_err(|e| Error::msg(e.to_string()))?;
        if let Some(r) = linux.resources() {
            cgroup
                .check_resources(r)
                .map_err(|e| Error::msg(e.to_string()))?;
        }
        let mut st = State {
            id: o.id.clone(),
            pid: 0,
            start_time: 0,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: String::new(),
            owner,
            annotations,
            cgroup: cgroup.clone(),
            hooks: spec.hooks().clone(),
            namespaces: Vec::new(),
            use_systemd: self.systemd_cgroup,
            // SAFETY: geteuid cannot fail.
            owner_uid: Some(unsafe { libc::geteuid() }),
            process: spec.process().clone(),
            seccomp: linux.seccomp().clone(),
            rootfs_mount_holder: None,
            shared_cgroup: false,
            intel_rdt: None,
            personality: linux.personality().clone(),
            memory_policy: linux.memory_policy().clone(),
        };
        // As runc: a frozen cgroup would stop the init the moment it joins, and create would
        // wait for it for ever.
        let frozen = |cgroup: &Manager| {
            cgroup
                .frozen_for_new_tasks()
                .map_err(|e| Error::msg(format!("unable to get cgroup freezer state: {e}")))
        };
        if frozen(&cgroup)? {
            return Err(Error::msg("container's cgroup unexpectedly frozen"));
        }
        // runc 1.1 warns about a cgroup that already holds processes and goes on (1.2 refuses).
        let occupants = cgroup.pids().map(|p| p.len()).unwrap_or(0);
        if occupants > 0 {
            log::warn!("container's cgroup is not empty: {occupants} process(es) found");
            log::warn!("DEPRECATED: running a container in a non-empty cgroup (runc 1.2 refuses it; https://github.com/opencontainers/runc/issues/3132)");
            st.shared_cgroup = ns.clone_flags & libc::CLONE_NEWPID != 0;
        }
        if shared_mountns {
            st.rootfs_mount_holder =
                Some(kakuri_isolate::hostmount::holder(&bundle.rootfs).map_err(Error::msg)?);
        }
        kakuri_timings::mark("cgroup paths and checks");

        // From here on, everything made is undone on failure.
        let dir = ContainerDir::create(&self.root, &o.id)?;
        // A first state (pid 0: "creating") names the cgroups before any exist, so that if this
        // process is killed half-way, `delete --force` still finds and removes everything.
        let first = dir.save(&st);
        let mut undo = Undo {
            dir: Some(dir),
            cgroup: None,
            shared_cgroup: st.shared_cgroup,
            host_root: None,
        };
        first?;
        if self.notify_socket.is_some() {
            // runc's sd_notify pass-through: the state's notify directory is bound read-only
            // at /run/notify, after the config's mounts, and the process is told so.
            let dir = &undo.dir.as_ref().expect("state dir").path;
            crate::notify::make_dir(dir)?;
            mounts.extend(
                rootfs::mount_plans(&[crate::notify::mount(dir)], &bundle.dir)
                    .map_err(Error::msg)?,
            );
            crate::notify::set_env(&mut proc_plan.env);
        }
        kakuri_timings::mark("state dir, lock, first state.json");
        if let Some(holder) = st.rootfs_mount_holder {
            kakuri_isolate::hostmount::bind(&bundle.rootfs, root_propagation)
                .map_err(Error::msg)?;
            undo.host_root = Some((&bundle.rootfs, holder));
        }
        let mut ours = None;
        let console_socket = match &o.console_socket {
            Some(p) if proc_plan.terminal => {
                Some(OwnedFd::from(UnixStream::connect(p).map_err(|e| {
                    Error::io(format!("connect to --console-socket {}", p.display()), e)
                })?))
            }
            None if proc_plan.terminal => {
                let (a, b) = UnixStream::pair().map_err(|e| Error::io("socketpair", e))?;
                ours = Some(a);
                Some(OwnedFd::from(b))
            }
            _ => None,
        };
        // runc's rootless cgroup manager: without linux.cgroupsPath, a hierarchy the caller
        // may not write to is left out (asked lazily: a root caller reads nothing more).
        let no_path = linux
            .cgroups_path()
            .as_ref()
            .is_none_or(|p| p.as_os_str().is_empty());
        let may_skip = || no_path && self.rootless.cgroups();
        let left_out = cgroup
            .create_rootless(occupants > 0, &may_skip)
            .map_err(|e| Error::msg(e.to_string()))?;
        if !left_out.is_empty() {
            st.cgroup = cgroup.clone();
        }
        undo.cgroup = Some(&cgroup);
        // A cgroup made just now under a frozen parent is frozen too.
        if frozen(&cgroup)? {
            return Err(Error::msg("container's cgroup unexpectedly frozen"));
        }
        let mut resources = linux.resources().clone().unwrap_or_default();
        {
            // The config's rules in order, then runc's defaults. linux.devices adds no rule: a
            // device node the rules do not allow is there, and opening it fails (EPERM).
            let mut rules = resources.devices().clone().unwrap_or_default();
            let paths: Vec<&Path> = devices.iter().map(|d| d.path.as_path()).collect();
            rules.extend(default_device_rules(&paths));
            resources.set_devices(Some(rules));
        }
        // The systemd driver applies them once the unit exists (Parent::placed).
        match cgroup.apply_before_init(&resources) {
            // runc's rootless manager ignores the devices controller: the user namespace
            // already forbids mknod, and its rules need privileges the caller does not have.
            Err(e) if e.is_devices() && self.rootless.cgroups() => {
                log::debug!("rootless: device rules not applied: {e}");
                resources.set_devices(None);
                cgroup
                    .apply_before_init(&resources)
                    .map_err(|e| Error::msg(e.to_string()))?;
            }
            r => r.map_err(|e| Error::msg(e.to_string()))?,
        }
        kakuri_timings::mark("cgroup limits");

        let dir_path = undo
            .dir
            .as_ref()
            .map(|d| d.path.clone())
            .unwrap_or_default();
        let fifo_path = dir_path.join(state::FIFO);
        nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o622))
            .map_err(|e| Error::msg(format!("create exec fifo {}: {e}", fifo_path.display())))?;
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo_path)
            .map_err(|e| Error::io(format!("open exec fifo {}", fifo_path.display()), e))?;
        let status_path = dir_path.join(state::EXEC_STATUS);
        nix::unistd::mkfifo(
            &status_path,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| Error::msg(format!("create {}: {e}", status_path.display())))?;
        // Read-write: the open does not wait for a reader (and the init's writes never fail
        // for want of one); close-on-exec, so `start` sees end-of-file at the execve.
        let exec_status = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&status_path)
            .map_err(|e| Error::io(format!("open {}", status_path.display()), e))?;
        kakuri_timings::mark("exec fifos");

        let plan = InitPlan {
            id: o.id.clone(),
            rootfs: bundle.rootfs.clone(),
            root_readonly: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            root_propagation,
            no_pivot: o.no_pivot,
            namespaces: ns,
            new_mountns,
            shared_mountns,
            new_cgroupns,
            in_new_userns,
            uid_mappings: linux.uid_mappings().clone().unwrap_or_default(),
            gid_mappings: linux.gid_mappings().clone().unwrap_or_default(),
            hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
            domainname: spec.domainname().clone().filter(|h| !h.is_empty()),
            bind_sources: {
                let trees =
                    rootfs::open_bind_sources(&mounts, in_new_userns).map_err(Error::msg)?;
                kakuri_isolate::idmap::apply_before_clone(&mounts, &trees).map_err(Error::msg)?;
                trees
            },
            mounts,
            cgroup_mounts: cgroup
                .mounts()
                .into_iter()
                .map(|m| CgroupMountSource {
                    name: m.mount_point_name,
                    fs_type: m.fs_type,
                    options: m.options,
                    host_path: m.host_path,
                })
                .collect(),
            default_devices: !dev_is_bind,
            devices,
            masked_paths: linux
                .masked_paths()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            readonly_paths: linux
                .readonly_paths()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            sysctl,
            process: proc_plan,
            no_new_keyring: o.no_new_keyring,
            console_socket,
            preserve_fds: o.preserve_fds,
            exec_fifo: Some(OwnedFd::from(fifo)),
            exec_status: Some(OwnedFd::from(exec_status)),
            close_in_child: undo.dir.iter().map(|d| d.lock_fd()).collect(),
            // None for the systemd driver: the unit's directory exists only once systemd has
            // started the scope.
            cgroup2_dir: cgroup.clone_into_dir().and_then(open_cgroup2_dir),
            // The systemd driver places the init through systemd (a scope needs a pid).
            cgroup_v1_tasks: if cgroup.is_systemd() {
                Vec::new()
            } else {
                kakuri_isolate::open_v1_tasks(v1_dirs(&cgroup.dirs()))
            },
            runtime_hooks: hooks_for_runtime(st.hooks.as_ref()),
        };
        let hooks = st.hooks.clone();
        let init = Init {
            state: &st,
            hooks: hooks.as_ref(),
            seccomp,
            host_pid: Cell::new(0),
        };
        let mut parent = Parent {
            state: &st,
            cgroup: &cgroup,
            resources: &resources,
            hooks: hooks.as_ref(),
            net_devices: &net_devices,
            rdt: rdt_plan.as_ref(),
            rdt_made: Default::default(),
        };
        // Nothing in the container may open this process's /proc/<pid>/exe (the kakuri binary)
        // or its fds (it is visible there when the container shares the host pid namespace).
        kakuri_isolate::make_non_dumpable().map_err(Error::msg)?;
        let mut oom = crate::events::OomWatch::new(&cgroup);
        kakuri_timings::mark("init plan, bind sources, OOM watch");
        let spawned = kakuri_isolate::spawn(&plan, &init, &mut parent);
        let rdt_made = std::mem::take(&mut parent.rdt_made);
        let undo_rdt = |e: Error| {
            if let Err(r) = rdt_made.remove() {
                log::warn!("clean up the resctrl group after a failed create: {r}");
            }
            e
        };
        let spawned = spawned.map_err(|e| {
            // An OOM kill in the new cgroup meanwhile is most probably why the init died,
            // whatever the error says: runc's text (with --debug, and the error, as runc).
            let oom_killed = oom.as_mut().is_some_and(|w| w.poll() > 0);
            let e = if !oom_killed {
                e.to_string()
            } else if log::log_enabled!(log::Level::Debug) {
                format!("{OOM_INIT}: {e}")
            } else {
                OOM_INIT.to_string()
            };
            Error::msg(format!("unable to start container process: {e}"))
        });
        let spawned = spawned.map_err(undo_rdt)?;
        drop(plan);
        st.intel_rdt = (rdt_made != crate::resctrl::Made::default()).then(|| rdt_made.clone());
        let pid = spawned.pid;
        let (start_time, _) = kakuri_isolate::sys::proc_start_time(pid)
            .map_err(|e| Error::io(format!("read /proc/{pid}/stat"), e))?;
        st.pid = pid;
        st.start_time = start_time;
        st.created = state::now_rfc3339();
        st.namespaces = linux
            .namespaces()
            .iter()
            .flatten()
            .filter(|n| !(shared_mountns && n.typ() == LinuxNamespaceType::Mount))
            .map(|n| spec_ns_name(n.typ()).to_string())
            .collect();
        let result = (|| {
            let dir = undo.dir.as_ref().expect("state dir");
            dir.save(&st)?;
            if let Some(pf) = &o.pid_file {
                write_pid_file(pf, pid)?;
            }
            Ok::<(), Error>(())
        })();
        if let Err(e) = result {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            return Err(undo_rdt(e));
        }
        kakuri_timings::mark("state.json and pid file written");
        // Success: keep the state, the cgroups and the rootfs bind.
        undo.cgroup = None;
        undo.host_root = None;
        let dir = undo.dir.take().expect("state dir");
        drop(undo);
        Ok(Created {
            pid,
            console: ours,
            dir,
            state: st,
        })
    }
}

/// A container just created: its state directory (still locked) and state, so that `run` can
/// start it without reading back what it has just written.
pub(crate) struct Created {
    pub(crate) pid: i32,
    /// The socket the pty master arrives on (`create_inner`'s `proxy_tty`).
    pub(crate) console: Option<UnixStream>,
    pub(crate) dir: ContainerDir,
    pub(crate) state: State,
}

/// runc's text for an init killed by the OOM killer during `create`.
const OOM_INIT: &str = "container init was OOM-killed (memory limit too low?)";

/// Write the pid file atomically, as runc does (clients read it the moment create returns).
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<(), Error> {
    let abs = std::path::absolute(path).map_err(|e| Error::io(path.display(), e))?;
    let tmp = abs.with_file_name(format!(
        ".{}.kakuri-tmp",
        abs.file_name()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string())
        .map_err(|e| Error::io(format!("write pid file {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &abs)
        .map_err(|e| Error::io(format!("write pid file {}", abs.display()), e))
}
