//! cgroup management for kakuri: runc's two cgroup drivers for cgroup v1, hybrid and v2 hosts.
//!
//! [`CgroupManager`] is what the container crate does with a container's cgroup. Two drivers
//! implement it: [`FsManager`] (cgroupfs: the directories are made and configured by writing
//! the cgroup files) and [`SystemdManager`] (`--systemd-cgroup`: a transient systemd unit over
//! D-Bus, the files written through the `FsManager` it wraps). [`Manager`] is the one of the two
//! a container uses: resolved once from `linux.cgroupsPath` ([`Manager::new`]), stored in the
//! container's state.json, and reloaded by later commands without looking at the host again.

mod bpf;
mod devices;
mod error;
mod fs;
mod fsutil;
mod stats;
mod system;
mod systemd;
mod v1;
mod v2;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use error::CgroupError;
pub use fs::FsManager;
pub use kakuri_spec::oci::LinuxResources;
pub use stats::*;
pub use system::Mode;
pub use systemd::manager::SystemdManager;

use fs::Hierarchy;

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

/// What kakuri does with a container's cgroup, whichever driver makes it. Resolving the cgroup
/// is the driver's own constructor ([`Manager::new`] picks one); everything after goes through
/// this trait.
pub trait CgroupManager {
    /// The host's cgroup layout.
    fn mode(&self) -> Mode;

    /// The container's directory in the v1 hierarchy holding `controller` ("memory",
    /// "name=systemd"), or in the cgroup2 hierarchy on a v2 host (any controller name).
    fn path(&self, controller: &str) -> Option<&Path>;

    /// The container's directory in the cgroup2 hierarchy (V2, or the unified hierarchy of a
    /// hybrid host).
    fn unified_path(&self) -> Option<&Path>;

    /// Every directory of the container cgroup (one per hierarchy).
    fn all_paths(&self) -> Vec<&Path>;

    /// The container's directory in every hierarchy, with the v1 controllers of that hierarchy
    /// (`cpu`, `cpuacct`, `name=systemd`; none for cgroup2).
    fn dirs(&self) -> Vec<(&[String], &Path)>;

    /// The cgroup filesystems to mount inside the container, one per hierarchy.
    fn mounts(&self) -> Vec<CgroupMount>;

    /// `create`: take the `org.systemd.property.*` annotations (the systemd driver makes them
    /// unit properties; the cgroupfs driver has no use for them).
    fn set_unit_annotations(
        &mut self,
        _annotations: &HashMap<String, String>,
    ) -> Result<(), CgroupError> {
        Ok(())
    }

    /// `create`: refuse resources the driver cannot express, before anything exists.
    fn check_resources(&self, _res: &LinuxResources) -> Result<(), CgroupError> {
        Ok(())
    }

    /// Create the container cgroup (and missing parents) in every hierarchy, where the driver
    /// makes it before the init exists. On v2 the controllers the root offers are enabled in
    /// cgroup.subtree_control of every ancestor. A new v1 cpuset cgroup gets the parent's cpus
    /// and mems (it could hold no task otherwise). Fails if the cgroup already exists with
    /// processes in it; on failure everything created here is removed again.
    fn create(&self) -> Result<(), CgroupError>;

    /// [`CgroupManager::create`] for runc's rootless cgroup manager: a hierarchy whose
    /// directory cannot be made for lack of permission (EACCES, EPERM, EROFS) is left out of
    /// this manager when `may_skip()` agrees (it is asked on the first such error only; runc:
    /// rootless and no `linux.cgroupsPath`); with `allow_processes` a cgroup that already holds
    /// processes is used as it is. Limits for a controller left out then fail in
    /// [`CgroupManager::apply`] with runc's "container could not join or create cgroup".
    /// Returns the directories left out.
    fn create_rootless(
        &mut self,
        allow_processes: bool,
        may_skip: &dyn Fn() -> bool,
    ) -> Result<Vec<PathBuf>, CgroupError>;

    /// Write linux.resources into the container cgroup. Only the resources present are
    /// touched. On error the cgroup may be partly configured; the caller destroys it.
    fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError>;

    /// `create`, before the init exists: [`CgroupManager::apply`] where the cgroup exists by
    /// now; a driver whose cgroup is made with the init sets the limits in
    /// [`CgroupManager::place_init`] instead.
    fn apply_before_init(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        self.apply(res)
    }

    /// The cgroup2 directory the init can be cloned into (`CLONE_INTO_CGROUP`), if it exists
    /// before the init does.
    fn clone_into_dir(&self) -> Option<&Path>;

    /// Put the new init `pid` in the container cgroup, with `res` (the limits with the device
    /// rules), once it is forked; `in_cgroup2`: it was cloned into
    /// [`CgroupManager::clone_into_dir`] already. `restore` places the CRIU process here the
    /// same way (after [`CgroupManager::create`] and [`CgroupManager::apply_before_init`]),
    /// and CRIU restores the container's processes into the cgroup it is in.
    fn place_init(
        &self,
        pid: i32,
        in_cgroup2: bool,
        res: &LinuxResources,
    ) -> Result<(), CgroupError>;

    /// Move `pid` into the container cgroup of every hierarchy.
    fn add_task(&self, pid: i32) -> Result<(), CgroupError>;

    /// `kakuri update`: like apply(), but unset and zero values leave the current setting
    /// alone, and the device rules are not touched (runc's update does not change them).
    fn update(&self, res: &LinuxResources) -> Result<(), CgroupError>;

    /// `exec`: move `pid` into `dir` (one of [`CgroupManager::dirs`], or a cgroup below one).
    fn add_exec_task(&self, pid: i32, dir: &Path) -> Result<(), CgroupError> {
        add_task_to(pid, dir)
    }

    /// Every process in the container cgroup and its descendants (host pids). A cgroup that
    /// does not exist (anymore) has no processes.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;

    /// Freeze every process of the container and wait until the kernel reports the cgroup
    /// frozen.
    fn freeze(&self) -> Result<(), CgroupError>;

    /// Thaw the container's processes.
    fn thaw(&self) -> Result<(), CgroupError>;

    /// Whether the container cgroup is frozen. A cgroup that does not exist is not frozen.
    fn is_frozen(&self) -> Result<bool, CgroupError>;

    /// Whether a process put in the container cgroup now would stop at once (the cgroup or an
    /// ancestor is frozen). A cgroup that does not exist is not frozen.
    fn frozen_for_new_tasks(&self) -> Result<bool, CgroupError>;

    /// Send `signal` to every process of the container.
    fn kill_all(&self, signal: i32) -> Result<(), CgroupError>;

    /// Remove the container cgroup (and cgroups created below it) from every hierarchy.
    /// Missing directories are fine; EBUSY (processes still leaving) is retried for a while.
    fn destroy(&self) -> Result<(), CgroupError>;

    /// Like [`CgroupManager::destroy`] without waiting: a directory still busy (processes
    /// that are not the container's, in a cgroup it shared with them) is left in place and
    /// returned.
    fn destroy_leaving_busy(&self) -> Result<Vec<PathBuf>, CgroupError>;

    /// Resource usage, in the shape of runc's `events --stats` data.
    fn stats(&self) -> Result<Stats, CgroupError>;
}

/// Move `pid` into the cgroup directory `dir` (one of [`CgroupManager::dirs`], or a cgroup
/// below one: `exec --cgroup`).
pub fn add_task_to(pid: i32, dir: &Path) -> Result<(), CgroupError> {
    FsManager::add_task_to(pid, dir)
}

/// The cgroup driver of one container. An enum, not a `Box<dyn CgroupManager>`: there are two
/// drivers, both known here, and every kakuri command loads one from state.json on its start
/// path; the enum is (de)serialized without a type tag or a heap allocation and its calls are
/// direct.
#[derive(Clone, Debug)]
pub enum Manager {
    /// The cgroupfs driver.
    Fs(FsManager),
    /// The systemd driver (`--systemd-cgroup`).
    Systemd(SystemdManager),
}

impl Manager {
    /// Resolve the container's cgroup from `linux.cgroupsPath` with the driver the runtime was
    /// given: the cgroupfs one ([`FsManager::new`]), or with `systemd` (--systemd-cgroup) the
    /// systemd one, for which the path is `slice:prefix:name` and the container gets a
    /// systemd scope.
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
            return SystemdManager::with_system(
                sys,
                &proc1,
                cgroups_path,
                container_id,
                user.as_deref(),
            )
            .map(Manager::Systemd);
        }
        FsManager::with_system(sys, cgroups_path, container_id).map(Manager::Fs)
    }

    /// Whether this is the systemd driver.
    pub fn is_systemd(&self) -> bool {
        matches!(self, Manager::Systemd(_))
    }

    /// The systemd unit's name (systemd driver).
    pub fn unit_name(&self) -> Option<&str> {
        match self {
            Manager::Fs(_) => None,
            Manager::Systemd(m) => Some(m.unit_name()),
        }
    }
}

/// Call a method of whichever driver `$self` holds (static dispatch).
macro_rules! each {
    ($self:ident, $m:ident => $e:expr) => {
        match $self {
            Manager::Fs($m) => $e,
            Manager::Systemd($m) => $e,
        }
    };
}

impl CgroupManager for Manager {
    fn mode(&self) -> Mode {
        each!(self, m => m.mode())
    }
    fn path(&self, controller: &str) -> Option<&Path> {
        each!(self, m => m.path(controller))
    }
    fn unified_path(&self) -> Option<&Path> {
        each!(self, m => m.unified_path())
    }
    fn all_paths(&self) -> Vec<&Path> {
        each!(self, m => m.all_paths())
    }
    fn dirs(&self) -> Vec<(&[String], &Path)> {
        each!(self, m => m.dirs())
    }
    fn mounts(&self) -> Vec<CgroupMount> {
        each!(self, m => m.mounts())
    }
    fn set_unit_annotations(
        &mut self,
        annotations: &HashMap<String, String>,
    ) -> Result<(), CgroupError> {
        each!(self, m => m.set_unit_annotations(annotations))
    }
    fn check_resources(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        each!(self, m => m.check_resources(res))
    }
    fn create(&self) -> Result<(), CgroupError> {
        each!(self, m => m.create())
    }
    fn create_rootless(
        &mut self,
        allow_processes: bool,
        may_skip: &dyn Fn() -> bool,
    ) -> Result<Vec<PathBuf>, CgroupError> {
        each!(self, m => m.create_rootless(allow_processes, may_skip))
    }
    fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        each!(self, m => m.apply(res))
    }
    fn apply_before_init(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        each!(self, m => m.apply_before_init(res))
    }
    fn clone_into_dir(&self) -> Option<&Path> {
        each!(self, m => m.clone_into_dir())
    }
    fn place_init(
        &self,
        pid: i32,
        in_cgroup2: bool,
        res: &LinuxResources,
    ) -> Result<(), CgroupError> {
        each!(self, m => m.place_init(pid, in_cgroup2, res))
    }
    fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        each!(self, m => m.add_task(pid))
    }
    fn update(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        each!(self, m => m.update(res))
    }
    fn add_exec_task(&self, pid: i32, dir: &Path) -> Result<(), CgroupError> {
        each!(self, m => m.add_exec_task(pid, dir))
    }
    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        each!(self, m => m.pids())
    }
    fn freeze(&self) -> Result<(), CgroupError> {
        each!(self, m => m.freeze())
    }
    fn thaw(&self) -> Result<(), CgroupError> {
        each!(self, m => m.thaw())
    }
    fn is_frozen(&self) -> Result<bool, CgroupError> {
        each!(self, m => m.is_frozen())
    }
    fn frozen_for_new_tasks(&self) -> Result<bool, CgroupError> {
        each!(self, m => m.frozen_for_new_tasks())
    }
    fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        each!(self, m => m.kill_all(signal))
    }
    fn destroy(&self) -> Result<(), CgroupError> {
        each!(self, m => m.destroy())
    }
    fn destroy_leaving_busy(&self) -> Result<Vec<PathBuf>, CgroupError> {
        each!(self, m => m.destroy_leaving_busy())
    }
    fn stats(&self) -> Result<Stats, CgroupError> {
        each!(self, m => m.stats())
    }
}

/// The manager in state.json: the cgroupfs driver's fields, with the unit for the systemd
/// driver. The same object kakuri wrote before the drivers were two types (one `Manager`
/// struct with an optional `systemd` field), so state written by either version loads in the
/// other.
#[derive(Serialize)]
struct StoredRef<'a> {
    mode: Mode,
    #[serde(skip_serializing_if = "<[Hierarchy]>::is_empty")]
    v1: &'a [Hierarchy],
    #[serde(skip_serializing_if = "Option::is_none")]
    unified: Option<&'a Hierarchy>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    skipped: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    systemd: Option<&'a systemd::Unit>,
}

/// [`StoredRef`], read back.
#[derive(Deserialize)]
struct Stored {
    mode: Mode,
    #[serde(default)]
    v1: Vec<Hierarchy>,
    #[serde(default)]
    unified: Option<Hierarchy>,
    #[serde(default)]
    skipped: Vec<String>,
    #[serde(default)]
    systemd: Option<systemd::Unit>,
}

impl Serialize for Manager {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (fs, unit) = match self {
            Manager::Fs(m) => (m, None),
            Manager::Systemd(m) => (&m.fs, Some(&m.unit)),
        };
        StoredRef {
            mode: fs.mode,
            v1: &fs.v1,
            unified: fs.unified.as_ref(),
            skipped: &fs.skipped,
            systemd: unit,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Manager {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let st = Stored::deserialize(d)?;
        let fs = FsManager {
            mode: st.mode,
            v1: st.v1,
            unified: st.unified,
            skipped: st.skipped,
            skip_cause: None,
        };
        Ok(match st.systemd {
            None => Manager::Fs(fs),
            Some(unit) => Manager::Systemd(SystemdManager { unit, fs }),
        })
    }
}

#[cfg(test)]
mod tests;
