//! The cgroupfs driver: the container's cgroup directories in every hierarchy of a cgroup v1,
//! hybrid or v2 host, made and configured by writing the cgroup files directly (runc's fs and
//! fs2 managers). The systemd driver wraps it for everything but the unit.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::system::{self, Mode, SystemInfo};
use crate::{
    fsutil, stats, v1, v2, CgroupError, CgroupManager, CgroupMount, LinuxResources, Stats,
};

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
    pub(crate) fn has(&self, controller: &str) -> bool {
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

/// The cgroupfs driver: the cgroup of one container, in every hierarchy of the host. Stored in
/// state.json through [`crate::Manager`] (its fields are the stored ones).
#[derive(Clone, Debug)]
pub struct FsManager {
    pub(crate) mode: Mode,
    /// v1 hierarchies (V1 and Hybrid modes).
    pub(crate) v1: Vec<Hierarchy>,
    /// The cgroup2 directory (V2: the only one; Hybrid: the controller-less unified hierarchy).
    pub(crate) unified: Option<Hierarchy>,
    /// Rootless: the controllers of the hierarchies left out because their directory could not
    /// be made for lack of permission (`"unified"` for the cgroup2 one).
    pub(crate) skipped: Vec<String>,
    /// Rootless on v2: why the cgroup2 directory was left out (`mkdir <dir>: permission
    /// denied`), for the error of limits that then cannot be set (runc wraps that error too).
    /// Only `create` needs it: not stored.
    pub(crate) skip_cause: Option<String>,
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

impl FsManager {
    /// Resolve the container's cgroup from `linux.cgroupsPath` as runc's cgroupfs driver does: an absolute
    /// path is taken from the root of every hierarchy; a relative one is placed under the runtime's own cgroup
    /// (from /proc/self/cgroup; on a v2 host under its parent, as runc); `None` (or "") means the relative
    /// path `<container_id>`.
    pub fn new(cgroups_path: Option<&str>, container_id: &str) -> Result<FsManager, CgroupError> {
        Self::with_system(system::system()?, cgroups_path, container_id)
    }

    pub(crate) fn with_system(
        sys: &SystemInfo,
        cgroups_path: Option<&str>,
        container_id: &str,
    ) -> Result<FsManager, CgroupError> {
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
        Ok(FsManager {
            mode: sys.mode,
            v1,
            unified,
            skipped: Vec::new(),
            skip_cause: None,
        })
    }

    pub(crate) fn hierarchies(&self) -> impl Iterator<Item = &Hierarchy> {
        self.v1.iter().chain(self.unified.iter())
    }

    pub(crate) fn v1_hierarchy(&self, controller: &str) -> Option<&Hierarchy> {
        self.v1.iter().find(|h| h.has(controller))
    }

    /// [`CgroupManager::create`]; with `allow_processes` a cgroup that already holds processes is
    /// used as it is (runc 1.1 only warns about that; the caller does).
    pub fn create_with(&self, allow_processes: bool) -> Result<(), CgroupError> {
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

    pub(crate) fn create_one(
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

    /// The error for a limit on `controller` whose hierarchy was left out (rootless), if so.
    pub(crate) fn skipped_error(&self, controller: &str, what: &str) -> Option<CgroupError> {
        self.skipped.iter().any(|c| c == controller).then(|| {
            CgroupError::invalid(
                what,
                format!("cannot set {controller} limit: container could not join or create cgroup"),
            )
        })
    }

    pub(crate) fn set(&self, res: &LinuxResources, update: bool) -> Result<(), CgroupError> {
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

    /// [`CgroupManager::add_task`] for a process that already is in the cgroup2 directory (cloned
    /// there with `CLONE_INTO_CGROUP`): only the v1 hierarchies are left (none on a v2 host).
    pub fn add_task_except_unified(&self, pid: i32) -> Result<(), CgroupError> {
        for h in &self.v1 {
            Self::add_task_to(pid, &h.path)?;
            kakuri_timings::mark_parts(&["cgroup.procs ", h.label()]);
        }
        Ok(())
    }

    /// Move `pid` into the cgroup directory `dir` (one of [`CgroupManager::dirs`], or a cgroup below
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
}

impl CgroupManager for FsManager {
    /// The host's cgroup layout.
    fn mode(&self) -> Mode {
        self.mode
    }

    /// The container's directory in the v1 hierarchy holding `controller` ("memory", "name=systemd"), or
    /// in the cgroup2 hierarchy on a v2 host (any controller name).
    fn path(&self, controller: &str) -> Option<&Path> {
        if self.mode == Mode::V2 {
            return self.unified.as_ref().map(|h| h.path.as_path());
        }
        self.v1
            .iter()
            .find(|h| h.has(controller))
            .map(|h| h.path.as_path())
    }

    /// The container's directory in the cgroup2 hierarchy (V2, or the unified hierarchy of a hybrid host).
    fn unified_path(&self) -> Option<&Path> {
        self.unified.as_ref().map(|h| h.path.as_path())
    }

    /// Every directory of the container cgroup (one per hierarchy).
    fn all_paths(&self) -> Vec<&Path> {
        self.v1
            .iter()
            .chain(self.unified.iter())
            .map(|h| h.path.as_path())
            .collect()
    }

    /// The container's directory in every hierarchy, with the v1 controllers of that hierarchy
    /// (`cpu`, `cpuacct`, `name=systemd`; none for cgroup2).
    fn dirs(&self) -> Vec<(&[String], &Path)> {
        self.hierarchies()
            .map(|h| (h.controllers.as_slice(), h.path.as_path()))
            .collect()
    }

    /// Create the container cgroup (and missing parents) in every hierarchy. On v2 the controllers the root
    /// offers are enabled in cgroup.subtree_control of every ancestor. A new v1 cpuset cgroup gets the
    /// parent's cpus and mems (it could hold no task otherwise). Fails if the cgroup already exists with
    /// processes in it; on failure everything created here is removed again.
    fn create(&self) -> Result<(), CgroupError> {
        self.create_with(false)
    }

    /// [`FsManager::create_with`] for runc's rootless cgroup manager: a hierarchy whose directory
    /// cannot be made for lack of permission (EACCES, EPERM, EROFS) is left out of this manager
    /// when `may_skip()` agrees (it is asked on the first such error only; runc: rootless and no
    /// `linux.cgroupsPath`). Limits for a controller left out then fail in [`CgroupManager::apply`]
    /// with runc's "container could not join or create cgroup". Returns the directories left out.
    fn create_rootless(
        &mut self,
        allow_processes: bool,
        may_skip: &dyn Fn() -> bool,
    ) -> Result<Vec<PathBuf>, CgroupError> {
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

    /// Write linux.resources into the container cgroup. Only the resources present are touched. On error
    /// the cgroup may be partly configured; the caller destroys it.
    fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        self.set(res, false)
    }

    /// The cgroup2 directory exists before the init: it can be cloned into it.
    fn clone_into_dir(&self) -> Option<&Path> {
        self.unified_path()
    }

    /// The directories exist and are configured already: only the pid is written, to the v1
    /// hierarchies alone when the init was cloned into its cgroup2 directory.
    fn place_init(
        &self,
        pid: i32,
        in_cgroup2: bool,
        _res: &LinuxResources,
    ) -> Result<(), CgroupError> {
        if in_cgroup2 {
            self.add_task_except_unified(pid)
        } else {
            self.add_task(pid)
        }
    }

    /// `kakuri update`: like apply(), but unset and zero values leave the current setting alone, and the
    /// device rules are not touched (runc's update does not change them).
    fn update(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        self.set(res, true)
    }

    /// Move `pid` into the container cgroup of every hierarchy.
    fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        for h in self.hierarchies() {
            Self::add_task_to(pid, &h.path)?;
            kakuri_timings::mark_parts(&["cgroup.procs ", h.label()]);
        }
        Ok(())
    }

    /// Every process in the container cgroup and its descendants (host pids). A cgroup that does not exist
    /// (anymore) has no processes.
    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
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
    fn freeze(&self) -> Result<(), CgroupError> {
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
    fn thaw(&self) -> Result<(), CgroupError> {
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

    /// Whether the container cgroup is frozen. A cgroup that does not exist is not frozen.
    fn is_frozen(&self) -> Result<bool, CgroupError> {
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
    fn frozen_for_new_tasks(&self) -> Result<bool, CgroupError> {
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
    fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
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
    fn destroy(&self) -> Result<(), CgroupError> {
        self.destroy_dirs()
    }

    /// Like [`CgroupManager::destroy`] without waiting: a directory still busy (processes that are
    /// not the container's, in a cgroup it shared with them) is left in place and returned.
    fn destroy_leaving_busy(&self) -> Result<Vec<PathBuf>, CgroupError> {
        self.destroy_dirs_leaving_busy()
    }

    /// Resource usage, in the shape of runc's `events --stats` data.
    fn stats(&self) -> Result<Stats, CgroupError> {
        match self.mode {
            Mode::V2 => match &self.unified {
                Some(h) => stats::v2_stats(&h.path),
                None => Ok(Stats::default()),
            },
            Mode::V1 | Mode::Hybrid => stats::v1_stats(self),
        }
    }

    /// The cgroup filesystems to mount inside the container, one per hierarchy.
    fn mounts(&self) -> Vec<CgroupMount> {
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
