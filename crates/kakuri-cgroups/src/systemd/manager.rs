//! The systemd driver as a [`CgroupManager`]: the container's transient unit is started (with
//! the init's pid), changed and stopped over D-Bus ([`super::bus`]); every cgroup file is
//! written, and frozen, listed, killed and removed, through the cgroupfs driver it wraps, whose
//! directories are the unit's (runc's systemd managers wrap its fs managers the same way).

use std::path::{Path, PathBuf};

use super::Unit;
use crate::fs::{FsManager, Hierarchy};
use crate::system::{self, Mode, SystemInfo};
use crate::{CgroupError, CgroupManager, CgroupMount, LinuxResources, Stats};

/// The systemd driver (`--systemd-cgroup`): the container's unit, and its cgroup directories.
#[derive(Clone, Debug)]
pub struct SystemdManager {
    pub(crate) unit: Unit,
    /// The unit's directories in every hierarchy; everything but the unit is done through them.
    pub(crate) fs: FsManager,
}

impl SystemdManager {
    /// The systemd driver's directories: `<slice path>/<unit>` in every hierarchy, under the
    /// cgroup of systemd itself (`/proc/1/cgroup`, without init.scope) on v1 hierarchies, as runc;
    /// in user mode under the cgroup of the user's systemd instance (`user_manager`, v2 only).
    pub(crate) fn with_system(
        sys: &SystemInfo,
        proc1_cgroup: &str,
        cgroups_path: Option<&str>,
        container_id: &str,
        user_manager: Option<&str>,
    ) -> Result<SystemdManager, CgroupError> {
        let (unit, slice_path) = Unit::resolve(cgroups_path, container_id, user_manager)?;
        let v1 = sys
            .v1
            .iter()
            .map(|m| {
                let base = super::init_cgroup_base(proc1_cgroup, Some(&m.controllers[0]));
                let rel = system::relative_to_root(&base, &m.root);
                Hierarchy {
                    controllers: m.controllers.clone(),
                    mount_point: m.mount_point.clone(),
                    path: super::join(&m.mount_point, &[rel, &slice_path, &unit.name]),
                }
            })
            .collect();
        let unified = sys.unified.as_ref().map(|u| {
            let base = if let Some(u) = user_manager {
                u.to_string()
            } else if sys.mode == Mode::V2 {
                String::new()
            } else {
                super::init_cgroup_base(proc1_cgroup, None)
            };
            let rel = system::relative_to_root(&base, &u.root);
            Hierarchy {
                controllers: Vec::new(),
                mount_point: u.mount_point.clone(),
                path: super::join(&u.mount_point, &[rel, &slice_path, &unit.name]),
            }
        });
        Ok(SystemdManager {
            unit,
            fs: FsManager {
                mode: sys.mode,
                v1,
                unified,
                skipped: Vec::new(),
                skip_cause: None,
            },
        })
    }

    /// The unit's name (`<prefix>-<name>.scope`).
    pub fn unit_name(&self) -> &str {
        &self.unit.name
    }

    /// Stop the unit (systemd removes its directories); a unit systemd does not know any more
    /// is fine. The directories made by kakuri are removed by the caller.
    fn stop_unit(&self) -> Result<(), CgroupError> {
        self.unit.connect()?.stop_unit(&self.unit.name)
    }

    /// Systemd user mode: the controllers `res` needs are delegated to the user manager.
    fn check_user_delegation(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        let (Some(cg), Some(h)) = (&self.unit.user_manager, &self.fs.unified) else {
            return Ok(());
        };
        let dir = super::join(&h.mount_point, &[cg]);
        let available = crate::fsutil::read(&dir, "cgroup.controllers", "systemd user manager")?;
        super::check_delegated(res, &available, &dir.join("cgroup.controllers"))
    }
}

impl CgroupManager for SystemdManager {
    fn mode(&self) -> Mode {
        self.fs.mode()
    }

    fn path(&self, controller: &str) -> Option<&Path> {
        self.fs.path(controller)
    }

    fn unified_path(&self) -> Option<&Path> {
        self.fs.unified_path()
    }

    fn all_paths(&self) -> Vec<&Path> {
        self.fs.all_paths()
    }

    fn dirs(&self) -> Vec<(&[String], &Path)> {
        self.fs.dirs()
    }

    fn mounts(&self) -> Vec<CgroupMount> {
        self.fs.mounts()
    }

    /// The `org.systemd.property.*` annotations become extra unit properties (bad names and
    /// values refused, as runc).
    fn set_unit_annotations(
        &mut self,
        annotations: &std::collections::HashMap<String, String>,
    ) -> Result<(), CgroupError> {
        self.unit.extra = super::annotation_properties(annotations)?;
        Ok(())
    }

    /// `res` must convert to unit properties, checked before anything exists.
    fn check_resources(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        super::resource_properties(res, self.fs.mode, false)?;
        self.check_user_delegation(res)
    }

    /// Nothing: the unit makes the directories, with the init's pid ([`Self::place_init`]).
    fn create(&self) -> Result<(), CgroupError> {
        Ok(())
    }

    /// Nothing: the unit makes the directories (in user mode too).
    fn create_rootless(
        &mut self,
        _allow_processes: bool,
        _may_skip: &dyn Fn() -> bool,
    ) -> Result<Vec<PathBuf>, CgroupError> {
        Ok(Vec::new())
    }

    fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        self.fs.apply(res)
    }

    /// Nothing yet: the unit's directories exist only once the init is placed, which sets the
    /// limits.
    fn apply_before_init(&self, _res: &LinuxResources) -> Result<(), CgroupError> {
        Ok(())
    }

    /// None: the unit's directory exists only once systemd has started the scope.
    fn clone_into_dir(&self) -> Option<&Path> {
        None
    }

    /// Start the transient unit with `pid` in it (StartTransientUnit, waiting for the job) and
    /// the resources systemd can express as properties, then join and configure the cgroup
    /// directories systemd does not manage and write `res` to the files, as runc does.
    fn place_init(
        &self,
        pid: i32,
        _in_cgroup2: bool,
        res: &LinuxResources,
    ) -> Result<(), CgroupError> {
        let mode = self.fs.mode;
        // User mode: no device rules (the user manager cannot apply them; runc's rootless
        // manager ignores them too).
        let no_devices;
        let res = if self.unit.is_user() {
            let mut r = res.clone();
            r.set_devices(None);
            no_devices = r;
            &no_devices
        } else {
            res
        };
        let mut props = self.unit.base_properties(pid as u32, mode);
        props.extend(super::resource_properties(res, mode, true)?);
        props.extend(self.unit.extra.iter().cloned());
        let conn = self.unit.connect()?;
        conn.start_unit(&self.unit.name, &props)?;
        let mut created = Vec::new();
        for h in self.fs.hierarchies() {
            if h.has("name=systemd") || (h.controllers.is_empty() && mode != Mode::V2) {
                // systemd's own hierarchies: it made the directory and put the pid there.
                continue;
            }
            self.fs.create_one(h, &mut created, true)?;
            FsManager::add_task_to(pid, &h.path)?;
        }
        self.fs.set(res, false)
    }

    fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        self.fs.add_task(pid)
    }

    /// As runc: the unit's properties first (systemd would put them back otherwise), then the
    /// files.
    fn update(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        let props = super::resource_properties(res, self.fs.mode, false)?;
        self.check_user_delegation(res)?;
        if !props.is_empty() {
            self.unit
                .connect()?
                .set_properties(&self.unit.name, &props)?;
        }
        self.fs.update(res)
    }

    /// With the user driver a refused write (the caller's own cgroup is outside the user
    /// manager's subtree, so the delegation containment rule forbids the move) is done by the
    /// user manager instead (AttachProcessesToUnit, as runc's systemd driver joins exec'd
    /// processes).
    fn add_exec_task(&self, pid: i32, dir: &Path) -> Result<(), CgroupError> {
        let direct = FsManager::add_task_to(pid, dir);
        let (Some(h), Err(e)) = (&self.fs.unified, &direct) else {
            return direct;
        };
        let Ok(sub) = dir.strip_prefix(&h.path) else {
            return direct;
        };
        if !self.unit.is_user() || !e.is_permission() {
            return direct;
        }
        log::debug!("{e}: asking the user manager to move process {pid}");
        let sub = format!("/{}", sub.display());
        self.unit
            .connect()?
            .attach(&self.unit.name, &sub, pid as u32)
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.fs.pids()
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.fs.freeze()
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.fs.thaw()
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        self.fs.is_frozen()
    }

    fn frozen_for_new_tasks(&self) -> Result<bool, CgroupError> {
        self.fs.frozen_for_new_tasks()
    }

    fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        self.fs.kill_all(signal)
    }

    /// Stop the unit, then remove the directories whatever systemd said (runc too): some were
    /// made by kakuri.
    fn destroy(&self) -> Result<(), CgroupError> {
        let stopped = self.stop_unit();
        self.fs.destroy()?;
        stopped
    }

    fn destroy_leaving_busy(&self) -> Result<Vec<PathBuf>, CgroupError> {
        let stopped = self.stop_unit();
        let kept = self.fs.destroy_leaving_busy()?;
        stopped.map(|()| kept)
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        self.fs.stats()
    }
}
