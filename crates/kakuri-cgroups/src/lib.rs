//! cgroup management for kakuri: the cgroupfs driver of runc for cgroup v1, hybrid and v2 hosts.
//!
//! A [`Manager`] is resolved once from `linux.cgroupsPath` ([`Manager::new`]), stored in the container's
//! state.json (it is `Serialize`), and reloaded by later commands without looking at the host again.

mod bpf;
mod devices;
mod error;
mod fsutil;
mod stats;
mod system;
mod systemd;
mod v1;
mod v2;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use error::CgroupError;
pub use kakuri_spec::oci::LinuxResources;
pub use stats::*;
pub use system::Mode;

use system::SystemInfo;

/// A cgroup filesystem to mount inside the container (type "cgroup"/"cgroup2" mount), one per hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    /// Directory name under the container's /sys/fs/cgroup: "memory", "cpu,cpuacct", "systemd", "unified",
    /// or "" on a v2 host (mount directly on /sys/fs/cgroup).
    pub mount_point_name: String,
    /// "cgroup" or "cgroup2".
    pub fs_type: &'static str,
    /// Mount data: the v1 controller list ("cpu,cpuacct"), "none,name=systemd", or "" for cgroup2.
    pub options: String,
    /// The container's cgroup directory on the host (what a bind mount of the hierarchy would use).
    pub host_path: PathBuf,
}

/// The container cgroup in one hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hierarchy {
    /// v1 controllers of the hierarchy ("cpu", "cpuacct", "name=systemd"); empty for cgroup2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controllers: Vec<String>,
    /// Where the hierarchy is mounted on the host.
    pub mount_point: PathBuf,
    /// The container's cgroup directory.
    pub path: PathBuf,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// The hierarchy's mount point name ("memory", "cpu,cpuacct", "unified"), for timings.
    fn label(&self) -> &str {
        self.mount_point
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
    }
}

/// The cgroup of one container, in every hierarchy of the host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manager {
    mode: Mode,
    /// v1 hierarchies (V1 and Hybrid modes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    v1: Vec<Hierarchy>,
    /// The cgroup2 directory (V2: the only one; Hybrid: the controller-less unified hierarchy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unified: Option<Hierarchy>,
    /// Rootless: the controllers of the hierarchies left out because their directory could not
    /// be made for lack of permission (`"unified"` for the cgroup2 one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<String>,
    /// Rootless on v2: why the cgroup2 directory was left out (`mkdir <dir>: permission
    /// denied`), for the error of limits that then cannot be set (runc wraps that error too).
    /// Only `create` needs it: not stored.
    #[serde(skip)]
    skip_cause: Option<String>,
    /// The systemd driver (`--systemd-cgroup`): the container's unit. The cgroup directories
    /// above are then the unit's, and everything but the unit itself is done through them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    systemd: Option<systemd::Unit>,
}

/// How long destroy() retries rmdir while the last processes of a killed container leave.
const DESTROY_RETRY: Duration = Duration::from_millis(2000);
/// How long freeze() waits for the cgroup to report it is frozen.
const FREEZE_TIMEOUT: Duration = Duration::from_millis(5000);

/// Go's filepath.Dir for '/'-separated absolute paths.
fn dir_of(p: &str) -> String {
    let c = system::clean(p);
    match c.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => c[..i].to_string(),
    }
}

impl Manager {
    /// Resolve the container's cgroup from `linux.cgroupsPath` as runc's cgroupfs driver does: an absolute
    /// path is taken from the root of every hierarchy; a relative one is placed under the runtime's own cgroup
    /// (from /proc/self/cgroup; on a v2 host under its parent, as runc); `None` (or "") means the relative
    /// path `<container_id>`. With `systemd` (--systemd-cgroup) the path is `slice:prefix:name` and
    /// the container gets a systemd scope (see [`Manager::start_unit`]).
    pub fn new(
        cgroups_path: Option<&str>,
        container_id: &str,
        systemd: bool,
    ) -> Result<Manager, CgroupError> {
        let sys = system::system()?;
        if systemd {
            // A rootless caller: the user's own systemd instance (systemd/mod.rs).
            let user = systemd::user_manager_cgroup(sys.mode)?;
            let proc1 = if sys.mode == Mode::V2 {
                String::new()
            } else {
                std::fs::read_to_string("/proc/1/cgroup").map_err(|e| CgroupError::System {
                    path: PathBuf::from("/proc/1/cgroup"),
                    reason: e.to_string(),
                })?
            };
            return Self::with_systemd(sys, &proc1, cgroups_path, container_id, user.as_deref());
        }
        Self::with_system(sys, cgroups_path, container_id)
    }

    /// The systemd driver's directories: `<slice path>/<unit>` in every hierarchy, under the
    /// cgroup of systemd itself (`/proc/1/cgroup`, without init.scope) on v1 hierarchies, as runc;
    /// in user mode under the cgroup of the user's systemd instance (`user_manager`, v2 only).
    pub(crate) fn with_systemd(
        sys: &SystemInfo,
        proc1_cgroup: &str,
        cgroups_path: Option<&str>,
        container_id: &str,
        user_manager: Option<&str>,
    ) -> Result<Manager, CgroupError> {
        let (unit, slice_path) = systemd::Unit::resolve(cgroups_path, container_id, user_manager)?;
        let v1 = sys
            .v1
            .iter()
            .map(|m| {
                let base = systemd::init_cgroup_base(proc1_cgroup, Some(&m.controllers[0]));
                let rel = system::relative_to_root(&base, &m.root);
                Hierarchy {
                    controllers: m.controllers.clone(),
                    mount_point: m.mount_point.clone(),
                    path: systemd::join(&m.mount_point, &[rel, &slice_path, &unit.name]),
                }
            })
            .collect();
        let unified = sys.unified.as_ref().map(|u| {
            let base = if let Some(u) = user_manager {
                u.to_string()
            } else if sys.mode == Mode::V2 {
                String::new()
            } else {
                systemd::init_cgroup_base(proc1_cgroup, None)
            };
            let rel = system::relative_to_root(&base, &u.root);
            Hierarchy {
                controllers: Vec::new(),
                mount_point: u.mount_point.clone(),
                path: systemd::join(&u.mount_point, &[rel, &slice_path, &unit.name]),
            }
        });
        Ok(Manager {
            mode: sys.mode,
            v1,
            unified,
            skipped: Vec::new(),
            skip_cause: None,
            systemd: Some(unit),
        })
    }

    /// Whether this is the systemd driver (the cgroup is made by [`Manager::start_unit`], with
    /// the init's pid, instead of [`Manager::create`]).
    pub fn is_systemd(&self) -> bool {
        self.systemd.is_some()
    }

    /// The systemd unit's name (systemd driver).
    pub fn unit_name(&self) -> Option<&str> {
        self.systemd.as_ref().map(|u| u.name.as_str())
    }

    /// Systemd driver: take the `org.systemd.property.*` annotations as extra unit properties
    /// (refusing bad names and values, as runc). Nothing to do for the cgroupfs driver.
    pub fn set_unit_annotations(
        &mut self,
        annotations: &std::collections::HashMap<String, String>,
    ) -> Result<(), CgroupError> {
        if let Some(u) = &mut self.systemd {
            u.extra = systemd::annotation_properties(annotations)?;
        }
        Ok(())
    }

    /// Systemd driver, `create`: check that `res` converts to unit properties, before anything
    /// exists.
    pub fn check_unit_resources(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(unit) = &self.systemd {
            systemd::resource_properties(res, self.mode, false)?;
            self.check_user_delegation(unit, res)?;
        }
        Ok(())
    }

    /// Systemd user mode: the controllers `res` needs are delegated to the user manager.
    fn check_user_delegation(
        &self,
        unit: &systemd::Unit,
        res: &LinuxResources,
    ) -> Result<(), CgroupError> {
        let (Some(cg), Some(h)) = (&unit.user_manager, &self.unified) else {
            return Ok(());
        };
        let dir = systemd::join(&h.mount_point, &[cg]);
        let available = fsutil::read(&dir, "cgroup.controllers", "systemd user manager")?;
        systemd::check_delegated(res, &available, &dir.join("cgroup.controllers"))
    }

    /// Systemd driver: start the transient unit with `pid` in it (StartTransientUnit, waiting for
    /// the job) and the resources systemd can express as properties, then join and configure the
    /// cgroup directories systemd does not manage and write `res` to the files, as runc does.
    /// For the cgroupfs driver this is [`Manager::add_task`] (the directories exist and are
    /// configured already).
    pub fn start_unit(&self, pid: i32, res: &LinuxResources) -> Result<(), CgroupError> {
        let Some(unit) = &self.systemd else {
            return self.add_task(pid);
        };
        // User mode: no device rules (the user manager cannot apply them; runc's rootless
        // manager ignores them too).
        let mut no_devices;
        let res = if unit.is_user() {
            no_devices = res.clone();
            no_devices.set_devices(None);
            &no_devices
        } else {
            res
        };
        let mut props = unit.base_properties(pid as u32, self.mode);
        props.extend(systemd::resource_properties(res, self.mode, true)?);
        props.extend(unit.extra.iter().cloned());
        let conn = unit.connect()?;
        conn.start_unit(&unit.name, &props)?;
        let mut created = Vec::new();
        for h in self.hierarchies() {
            if h.has("name=systemd") || (h.controllers.is_empty() && self.mode != Mode::V2) {
                // systemd's own hierarchies: it made the directory and put the pid there.
                continue;
            }
            self.create_one(h, &mut created, true)?;
            Self::add_task_to(pid, &h.path)?;
        }
        self.set(res, false)
    }

    pub(crate) fn with_system(
        sys: &SystemInfo,
        cgroups_path: Option<&str>,
        container_id: &str,
    ) -> Result<Manager, CgroupError> {
        let inner = match cgroups_path {
            Some(p) if !p.is_empty() => system::clean_path(p),
            _ => system::clean_path(container_id),
        };
        if inner.is_empty() {
            return Err(CgroupError::invalid(
                "linux.cgroupsPath",
                "neither a cgroups path nor a container id was given",
            ));
        }
        let absolute = inner.starts_with('/');
        let mut v1 = Vec::with_capacity(sys.v1.len());
        for m in &sys.v1 {
            let path = if absolute {
                system::join_inner(&m.mount_point, &inner)
            } else {
                let Some(own) = sys.own_v1(&m.controllers[0]) else {
                    // runc skips hierarchies it is not a member of, except devices (security).
                    if m.controllers.iter().any(|c| c == "devices") {
                        return Err(CgroupError::System {
                            path: PathBuf::from("/proc/self/cgroup"),
                            reason: "the runtime is not in any cgroup of the devices hierarchy"
                                .into(),
                        });
                    }
                    log::debug!(
                        "skipping cgroup hierarchy {:?}: not listed in /proc/self/cgroup",
                        m.controllers
                    );
                    continue;
                };
                let base =
                    system::join_inner(&m.mount_point, system::relative_to_root(own, &m.root));
                system::join_inner(&base, &inner)
            };
            v1.push(Hierarchy {
                controllers: m.controllers.clone(),
                mount_point: m.mount_point.clone(),
                path,
            });
        }
        let unified = match &sys.unified {
            None => None,
            Some(u) => {
                let path = if absolute {
                    Some(system::join_inner(&u.mount_point, &inner))
                } else {
                    match sys.own_v2() {
                        Some(own) => {
                            // On a v2 host runc uses the parent of its own cgroup: the own one usually has
                            // processes, so controllers could not be enabled below it.
                            let own = if sys.mode == Mode::V2 {
                                dir_of(own)
                            } else {
                                own.to_string()
                            };
                            let base = system::join_inner(
                                &u.mount_point,
                                system::relative_to_root(&own, &u.root),
                            );
                            Some(system::join_inner(&base, &inner))
                        }
                        None if sys.mode == Mode::V2 => {
                            return Err(CgroupError::System {
                                path: PathBuf::from("/proc/self/cgroup"),
                                reason: "no cgroup v2 entry (0::/...) for the runtime".into(),
                            })
                        }
                        None => None,
                    }
                };
                path.map(|path| Hierarchy {
                    controllers: Vec::new(),
                    mount_point: u.mount_point.clone(),
                    path,
                })
            }
        };
        Ok(Manager {
            mode: sys.mode,
            v1,
            unified,
            skipped: Vec::new(),
            skip_cause: None,
            systemd: None,
        })
    }

    /// The host's cgroup layout.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The container's directory in the v1 hierarchy holding `controller` ("memory", "name=systemd"), or
    /// in the cgroup2 hierarchy on a v2 host (any controller name).
    pub fn path(&self, controller: &str) -> Option<&Path> {
        if self.mode == Mode::V2 {
            return self.unified.as_ref().map(|h| h.path.as_path());
        }
        self.v1
            .iter()
            .find(|h| h.has(controller))
            .map(|h| h.path.as_path())
    }

    /// The container's directory in the cgroup2 hierarchy (V2, or the unified hierarchy of a hybrid host).
    pub fn unified_path(&self) -> Option<&Path> {
        self.unified.as_ref().map(|h| h.path.as_path())
    }

    /// Every directory of the container cgroup (one per hierarchy).
    pub fn all_paths(&self) -> Vec<&Path> {
        self.v1
            .iter()
            .chain(self.unified.iter())
            .map(|h| h.path.as_path())
            .collect()
    }

    fn hierarchies(&self) -> impl Iterator<Item = &Hierarchy> {
        self.v1.iter().chain(self.unified.iter())
    }

    pub(crate) fn v1_hierarchy(&self, controller: &str) -> Option<&Hierarchy> {
        self.v1.iter().find(|h| h.has(controller))
    }

    /// Create the container cgroup (and missing parents) in every hierarchy. On v2 the controllers the root
    /// offers are enabled in cgroup.subtree_control of every ancestor. A new v1 cpuset cgroup gets the
    /// parent's cpus and mems (it could hold no task otherwise). Fails if the cgroup already exists with
    /// processes in it; on failure everything created here is removed again.
    pub fn create(&self) -> Result<(), CgroupError> {
        self.create_with(false)
    }

    /// [`Manager::create`]; with `allow_processes` a cgroup that already holds processes is
    /// used as it is (runc 1.1 only warns about that; the caller does).
    pub fn create_with(&self, allow_processes: bool) -> Result<(), CgroupError> {
        if self.systemd.is_some() {
            // The unit makes them, with the init's pid: start_unit().
            return Ok(());
        }
        let mut created: Vec<PathBuf> = Vec::new();
        let r = self.create_inner(&mut created, allow_processes);
        if r.is_err() {
            for dir in created.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        r
    }

    fn create_inner(
        &self,
        created: &mut Vec<PathBuf>,
        allow_processes: bool,
    ) -> Result<(), CgroupError> {
        for h in self.hierarchies() {
            self.create_one(h, created, allow_processes)?;
        }
        Ok(())
    }

    fn create_one(
        &self,
        h: &Hierarchy,
        created: &mut Vec<PathBuf>,
        allow_processes: bool,
    ) -> Result<(), CgroupError> {
        let first_new = created.len();
        let made = fsutil::mkdir_p(&h.path, created)
            .map_err(|e| CgroupError::file("create cgroup", "mkdir", h.path.clone(), e))?;
        if !made && !allow_processes {
            let mut pids = Vec::new();
            fsutil::collect_pids(&h.path, &mut pids)?;
            if !pids.is_empty() {
                return Err(CgroupError::Occupied(h.path.clone()));
            }
        }
        if h.has("cpuset") {
            // The leaf, and through it any ancestor still empty, even one another
            // create made a moment ago.
            v1::init_cpuset_dir(&h.path)?;
        }
        if self.mode == Mode::V2 {
            v2::enable_controllers(&h.mount_point, &h.path)?;
            for dir in &created[first_new..] {
                v2::fix_invalid_domain(dir)?;
            }
        }
        kakuri_timings::mark_parts(&["cgroup mkdir ", h.label()]);
        Ok(())
    }

    /// [`Manager::create_with`] for runc's rootless cgroup manager: a hierarchy whose directory
    /// cannot be made for lack of permission (EACCES, EPERM, EROFS) is left out of this manager
    /// when `may_skip()` agrees (it is asked on the first such error only; runc: rootless and no
    /// `linux.cgroupsPath`). Limits for a controller left out then fail in [`Manager::apply`]
    /// with runc's "container could not join or create cgroup". Returns the directories left out.
    pub fn create_rootless(
        &mut self,
        allow_processes: bool,
        may_skip: &dyn Fn() -> bool,
    ) -> Result<Vec<PathBuf>, CgroupError> {
        if self.systemd.is_some() {
            // The unit makes them, with the init's pid: start_unit().
            return Ok(Vec::new());
        }
        let mut created: Vec<PathBuf> = Vec::new();
        let mut left_out: Vec<PathBuf> = Vec::new();
        let mut r = Ok(());
        let mut unified_cause = None;
        for h in self.hierarchies() {
            match self.create_one(h, &mut created, allow_processes) {
                Ok(()) => {}
                Err(e) if e.is_permission() && may_skip() => {
                    log::debug!("rootless: leaving out cgroup {}: {e}", h.path.display());
                    left_out.push(h.path.clone());
                    if h.controllers.is_empty() {
                        unified_cause = Some(e.os_cause());
                    }
                }
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = r {
            for dir in created.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(e);
        }
        for h in self.v1.iter().filter(|h| left_out.contains(&h.path)) {
            self.skipped.extend(h.controllers.iter().cloned());
        }
        self.v1.retain(|h| !left_out.contains(&h.path));
        if self
            .unified
            .as_ref()
            .is_some_and(|h| left_out.contains(&h.path))
        {
            self.unified = None;
            self.skipped.push("unified".to_string());
            self.skip_cause = unified_cause;
        }
        Ok(left_out)
    }

    /// The error for a limit on `controller` whose hierarchy was left out (rootless), if so.
    pub(crate) fn skipped_error(&self, controller: &str, what: &str) -> Option<CgroupError> {
        self.skipped.iter().any(|c| c == controller).then(|| {
            CgroupError::invalid(
                what,
                format!("cannot set {controller} limit: container could not join or create cgroup"),
            )
        })
    }

    /// Write linux.resources into the container cgroup. Only the resources present are touched. On error
    /// the cgroup may be partly configured; the caller destroys it.
    pub fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        self.set(res, false)
    }

    /// `kakuri update`: like apply(), but unset and zero values leave the current setting alone, and the
    /// device rules are not touched (runc's update does not change them).
    pub fn update(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(unit) = &self.systemd {
            // As runc: the unit's properties first (systemd would put them back otherwise).
            let props = systemd::resource_properties(res, self.mode, false)?;
            self.check_user_delegation(unit, res)?;
            if !props.is_empty() {
                unit.connect()?.set_properties(&unit.name, &props)?;
            }
        }
        self.set(res, true)
    }

    fn set(&self, res: &LinuxResources, update: bool) -> Result<(), CgroupError> {
        match self.mode {
            Mode::V2 => {
                if self.unified.is_none() && !self.skipped.is_empty() {
                    // Rootless without a cgroup: only "no limits" can be honoured.
                    let mut asked = res.clone();
                    asked.set_devices(None);
                    if asked == LinuxResources::default() {
                        return Ok(());
                    }
                    // runc's fs2 words, with the refusal behind them as runc adds it.
                    let mut reason = "rootless needs no limits + no cgrouppath when no permission is granted for cgroups".to_string();
                    if let Some(cause) = &self.skip_cause {
                        reason.push_str(": ");
                        reason.push_str(cause);
                    }
                    return Err(CgroupError::invalid("linux.resources", reason));
                }
                let h = self.unified.as_ref().ok_or_else(|| CgroupError::System {
                    path: PathBuf::from("/proc/self/cgroup"),
                    reason: "no cgroup2 directory for the container".into(),
                })?;
                v2::set(&h.path, res, update)
            }
            Mode::V1 | Mode::Hybrid => v1::set(self, res, update),
        }
    }

    /// Move `pid` into the container cgroup of every hierarchy.
    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        for h in self.hierarchies() {
            Self::add_task_to(pid, &h.path)?;
            kakuri_timings::mark_parts(&["cgroup.procs ", h.label()]);
        }
        Ok(())
    }

    /// [`Manager::add_task`] for a process that already is in the cgroup2 directory (cloned
    /// there with `CLONE_INTO_CGROUP`): only the v1 hierarchies are left (none on a v2 host).
    pub fn add_task_except_unified(&self, pid: i32) -> Result<(), CgroupError> {
        for h in &self.v1 {
            Self::add_task_to(pid, &h.path)?;
            kakuri_timings::mark_parts(&["cgroup.procs ", h.label()]);
        }
        Ok(())
    }

    /// Move `pid` into the cgroup directory `dir` (one of [`Manager::dirs`], or a cgroup below
    /// one: `exec --cgroup`).
    pub fn add_task_to(pid: i32, dir: &Path) -> Result<(), CgroupError> {
        let value = pid.to_string();
        let file = dir.join("cgroup.procs");
        let mut tries = 0;
        loop {
            match fsutil::write_raw(&file, &value) {
                Ok(()) => return Ok(()),
                // EINVAL: the task may still be TASK_NEW (just forked); runc retries too.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && tries < 5 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(CgroupError::file(
                        format!("add process {pid} to cgroup"),
                        "write",
                        file,
                        e,
                    ))
                }
            }
        }
    }

    /// `exec`: move `pid` into `dir` (one of [`Manager::dirs`], or a cgroup below one). With
    /// the systemd user driver a refused write (the caller's own cgroup is outside the user
    /// manager's subtree, so the delegation containment rule forbids the move) is done by the
    /// user manager instead (AttachProcessesToUnit, as runc's systemd driver joins exec'd
    /// processes).
    pub fn add_exec_task(&self, pid: i32, dir: &Path) -> Result<(), CgroupError> {
        let direct = Self::add_task_to(pid, dir);
        let (Some(unit), Some(h), Err(e)) = (&self.systemd, &self.unified, &direct) else {
            return direct;
        };
        let Ok(sub) = dir.strip_prefix(&h.path) else {
            return direct;
        };
        if !unit.is_user() || !e.is_permission() {
            return direct;
        }
        log::debug!("{e}: asking the user manager to move process {pid}");
        let sub = format!("/{}", sub.display());
        unit.connect()?.attach(&unit.name, &sub, pid as u32)
    }

    /// The container's directory in every hierarchy, with the v1 controllers of that hierarchy
    /// (`cpu`, `cpuacct`, `name=systemd`; none for cgroup2).
    pub fn dirs(&self) -> Vec<(&[String], &Path)> {
        self.hierarchies()
            .map(|h| (h.controllers.as_slice(), h.path.as_path()))
            .collect()
    }

    /// The directory used to list processes and to freeze.
    fn procs_dir(&self) -> Option<&Path> {
        if self.mode == Mode::V2 {
            return self.unified.as_ref().map(|h| h.path.as_path());
        }
        ["freezer", "pids", "devices", "memory"]
            .iter()
            .find_map(|c| self.v1_hierarchy(c))
            .or_else(|| self.v1.first())
            .or(self.unified.as_ref())
            .map(|h| h.path.as_path())
    }

    /// Every process in the container cgroup and its descendants (host pids). A cgroup that does not exist
    /// (anymore) has no processes.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut out = Vec::new();
        let Some(dir) = self.procs_dir() else {
            return Ok(out);
        };
        match fsutil::collect_pids(dir, &mut out) {
            Ok(()) => Ok(out),
            Err(CgroupError::File { source, .. })
                if source.kind() == io::ErrorKind::NotFound && out.is_empty() =>
            {
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }

    /// Freeze every process of the container and wait until the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        if let Some(h) = self.v1_hierarchy("freezer") {
            return v1::freeze(&h.path, FREEZE_TIMEOUT);
        }
        match &self.unified {
            Some(h) if self.mode == Mode::V2 || h.path.join("cgroup.freeze").exists() => {
                v2::freeze(&h.path, FREEZE_TIMEOUT)
            }
            _ => Err(self.no_freezer()),
        }
    }

    /// Thaw the container's processes.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        if let Some(h) = self.v1_hierarchy("freezer") {
            return fsutil::write(&h.path, "freezer.state", "THAWED", "thaw cgroup");
        }
        match &self.unified {
            Some(h) if self.mode == Mode::V2 || h.path.join("cgroup.freeze").exists() => {
                fsutil::write(&h.path, "cgroup.freeze", "0", "thaw cgroup")
            }
            _ => Err(self.no_freezer()),
        }
    }

    fn no_freezer(&self) -> CgroupError {
        if self
            .skipped
            .iter()
            .any(|c| c == "freezer" || (c == "unified" && self.mode == Mode::V2))
        {
            // Rootless without that cgroup: runc's words.
            return CgroupError::invalid(
                "freeze cgroup",
                "cannot toggle freezer: cgroups not configured for container",
            );
        }
        CgroupError::ControllerMissing {
            what: "freeze cgroup".into(),
            controller: "freezer".into(),
            detail: "is not mounted".into(),
        }
    }

    /// Whether the container cgroup is frozen. A cgroup that does not exist is not frozen.
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        if let Some(h) = self.v1_hierarchy("freezer") {
            return v1::is_frozen(&h.path);
        }
        match &self.unified {
            Some(h) => {
                let v = fsutil::read_opt(&h.path, "cgroup.freeze", "read freezer state")?;
                Ok(v.is_some_and(|s| s.trim() == "1"))
            }
            None => Ok(false),
        }
    }

    /// Whether a process put in the container cgroup now would stop at once: the v1 freezer
    /// says FROZEN (also when an ancestor is frozen), or the cgroup2 directory (v2, or the
    /// unified hierarchy of a hybrid host) is frozen, itself or through an ancestor. A cgroup
    /// that does not exist is not frozen.
    pub fn frozen_for_new_tasks(&self) -> Result<bool, CgroupError> {
        if let Some(h) = self.v1_hierarchy("freezer") {
            if v1::is_frozen(&h.path)? {
                return Ok(true);
            }
        }
        if let Some(h) = &self.unified {
            let what = "read freezer state";
            if let Some(events) = fsutil::read_opt(&h.path, "cgroup.events", what)? {
                if events.lines().any(|l| l.trim() == "frozen 1") {
                    return Ok(true);
                }
            }
            if let Some(f) = fsutil::read_opt(&h.path, "cgroup.freeze", what)? {
                if f.trim() == "1" {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Send `signal` to every process of the container. SIGKILL goes through cgroup.kill where the kernel
    /// has it (v2, or the unified hierarchy of a hybrid host); otherwise the cgroup is frozen, every process
    /// signalled, and thawed again (so no process can fork past the signal), as runc does.
    pub fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        if signal == libc::SIGKILL {
            if let Some(h) = &self.unified {
                let file = h.path.join("cgroup.kill");
                match fsutil::write_raw(&file, "1") {
                    Ok(()) => return Ok(()),
                    // No cgroup.kill (kernel < 5.14, or no unified directory): signal each process.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(CgroupError::file("kill all processes", "write", file, e))
                    }
                }
            }
        }
        // Signal 0 checks that the processes exist, as kill(2) does.
        let sig = match signal {
            0 => None,
            n => Some(nix::sys::signal::Signal::try_from(n).map_err(|_| {
                CgroupError::invalid("kill all processes", format!("invalid signal {n}"))
            })?),
        };
        let was_frozen = self.is_frozen().unwrap_or(false);
        let froze = if was_frozen {
            false
        } else {
            match self.freeze() {
                Ok(()) => true,
                Err(e) => {
                    log::warn!("kill all processes: freezing the cgroup first failed: {e}");
                    false
                }
            }
        };
        let result = self.pids().map(|pids| {
            for pid in pids {
                match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                    Err(e) => log::warn!("kill all processes: signal {signal} to pid {pid}: {e}"),
                }
            }
        });
        // Thaw what we froze; a paused container that is SIGKILLed must be thawed for its processes to die.
        if froze || (was_frozen && signal == libc::SIGKILL) {
            self.thaw()?;
        }
        result
    }

    /// Remove the container cgroup (and cgroups created below it) from every hierarchy, deepest first.
    /// Missing directories are fine; EBUSY (processes still leaving) is retried for a short while.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        // The directories go whatever systemd said (runc too): some were made by kakuri.
        let stopped = self.stop_unit();
        self.destroy_dirs()?;
        stopped
    }

    fn destroy_dirs(&self) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(1);
        for h in self.hierarchies() {
            loop {
                match fsutil::remove_tree(&h.path) {
                    Ok(()) => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY)
                            && start.elapsed() < DESTROY_RETRY =>
                    {
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_millis(100));
                    }
                    Err(e) => {
                        return Err(CgroupError::file(
                            "remove cgroup",
                            "rmdir",
                            h.path.clone(),
                            e,
                        ))
                    }
                }
            }
            kakuri_timings::mark_parts(&["cgroup rmdir ", h.label()]);
        }
        Ok(())
    }

    /// Like [`Manager::destroy`] without waiting: a directory still busy (processes that are
    /// not the container's, in a cgroup it shared with them) is left in place and returned.
    pub fn destroy_leaving_busy(&self) -> Result<Vec<PathBuf>, CgroupError> {
        let stopped = self.stop_unit();
        let kept = self.destroy_dirs_leaving_busy()?;
        stopped.map(|()| kept)
    }

    fn destroy_dirs_leaving_busy(&self) -> Result<Vec<PathBuf>, CgroupError> {
        let mut kept = Vec::new();
        for h in self.hierarchies() {
            match fsutil::remove_tree(&h.path) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => kept.push(h.path.clone()),
                Err(e) => {
                    return Err(CgroupError::file(
                        "remove cgroup",
                        "rmdir",
                        h.path.clone(),
                        e,
                    ))
                }
            }
        }
        Ok(kept)
    }

    /// Systemd driver: stop the unit (systemd removes its directories); a unit systemd does not
    /// know any more is fine. The directories made by kakuri are removed by the caller.
    fn stop_unit(&self) -> Result<(), CgroupError> {
        let Some(unit) = &self.systemd else {
            return Ok(());
        };
        unit.connect()?.stop_unit(&unit.name)
    }

    /// Resource usage, in the shape of runc's `events --stats` data.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match self.mode {
            Mode::V2 => match &self.unified {
                Some(h) => stats::v2_stats(&h.path),
                None => Ok(Stats::default()),
            },
            Mode::V1 | Mode::Hybrid => stats::v1_stats(self),
        }
    }

    /// The cgroup filesystems to mount inside the container, one per hierarchy.
    pub fn mounts(&self) -> Vec<CgroupMount> {
        let mut out = Vec::with_capacity(self.v1.len() + 1);
        for h in &self.v1 {
            let name = h
                .mount_point
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let joined = h.controllers.join(",");
            let options = if h.controllers.iter().all(|c| c.starts_with("name=")) {
                format!("none,{joined}")
            } else {
                joined
            };
            out.push(CgroupMount {
                mount_point_name: name,
                fs_type: "cgroup",
                options,
                host_path: h.path.clone(),
            });
        }
        if let Some(h) = &self.unified {
            let name = if self.mode == Mode::V2 {
                String::new()
            } else {
                h.mount_point
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            out.push(CgroupMount {
                mount_point_name: name,
                fs_type: "cgroup2",
                options: String::new(),
                host_path: h.path.clone(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests;
