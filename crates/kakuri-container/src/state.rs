//! A container's on-disk state under `--root`: `<root>/<id>/state.json`, the exec fifo, and the
//! lock that serializes commands on one container.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use kakuri_cgroups::{CgroupManager, Manager};
use kakuri_spec::oci;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The lifecycle status, as `state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kakuri keeps about a container between commands. Written once by `create`; everything
/// later commands need is here, so they never parse `config.json` again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub pid: i32,
    /// Start time of the init in clock ticks since boot: tells the init from a process that
    /// reused its pid.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    pub cgroup: Manager,
    #[serde(default)]
    pub hooks: Option<oci::Hooks>,
    /// Namespace paths of the init (`/proc/<pid>/ns/*`) by spec type name, for `exec`.
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub use_systemd: bool,
    /// The uid that created the container (the owner `list` shows), recorded so that `list`
    /// need not stat every state directory.
    #[serde(default)]
    pub owner_uid: Option<u32>,
    /// The container's process spec: the base of an `exec` without `--process`.
    #[serde(default)]
    pub process: Option<oci::Process>,
    /// The container's seccomp profile, applied to exec'd processes too.
    #[serde(default)]
    pub seccomp: Option<oci::LinuxSeccomp>,
    /// A container without a mount namespace of its own: the id of the mount that held the
    /// rootfs before kakuri bound it onto itself; `delete` detaches that bind
    /// (kakuri_isolate::hostmount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_mount_holder: Option<u64>,
    /// The cgroup already held other processes when the container was created (runc 1.1
    /// allows that with a warning) and the container has its own pid namespace: `delete` then
    /// kills only the init (the kernel kills the rest of the namespace) and leaves the cgroup
    /// to its other processes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_cgroup: bool,
    /// `linux.personality`, applied to exec'd processes too (as runc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personality: Option<oci::LinuxPersonality>,
    /// The resctrl groups `create` made for `linux.intelRdt`, removed by `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intel_rdt: Option<crate::resctrl::Made>,
    /// `linux.memoryPolicy`, applied to exec'd processes too (as runc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_policy: Option<oci::LinuxMemoryPolicy>,
}

pub const STATE_FILE: &str = "state.json";
pub const FIFO: &str = "exec.fifo";
/// Where a started init reports why it could not exec the program (see `start`).
pub const EXEC_STATUS: &str = "exec.status";

/// Container ids: what runc accepts (letters, digits, `_ + - .`, not `.` or `..`).
pub fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::msg(format!("invalid container id format: {id:?}")))
    }
}

/// The state directory of one container, locked while a command works on it.
pub struct ContainerDir {
    pub path: PathBuf,
    _lock: File,
}

/// Write `data` to `dst` atomically: aside first, then exchanged with the old file (see
/// [`ContainerDir::save`] for why not a rename over it), or renamed when there is none.
fn replace_file(dst: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dst.with_file_name(format!(".{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    drop(f);
    let exchange = nix::fcntl::RenameFlags::RENAME_EXCHANGE;
    match nix::fcntl::renameat2(None, &tmp, None, dst, exchange) {
        // The old file is now at `tmp`.
        Ok(()) => std::fs::remove_file(&tmp),
        // ENOENT: nothing to replace yet; EINVAL: no exchange on this filesystem.
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL) => std::fs::rename(&tmp, dst),
        Err(e) => Err(e.into()),
    }
}

fn lock(path: &Path, exclusive: bool) -> std::io::Result<File> {
    let f = File::open(path)?;
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    loop {
        // SAFETY: flock on a valid fd.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(f);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl ContainerDir {
    /// Make the directory of a new container: exactly one of two concurrent creates wins.
    pub fn create(root: &Path, id: &str) -> Result<ContainerDir, Error> {
        check_id(id)?;
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("create root directory {}", root.display()), e))?;
        let path = root.join(id);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::msg(format!("container with id exists: {id}")));
            }
            Err(e) => return Err(Error::io(format!("create {}", path.display()), e)),
        }
        let l = lock(&path, true).map_err(|e| Error::io(format!("lock {}", path.display()), e))?;
        Ok(ContainerDir { path, _lock: l })
    }

    /// Open and lock an existing container's directory.
    pub fn open(root: &Path, id: &str) -> Result<ContainerDir, Error> {
        check_id(id)?;
        let path = root.join(id);
        match lock(&path, true) {
            Ok(l) => Ok(ContainerDir { path, _lock: l }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotExist(id.into())),
            Err(e) => Err(Error::io(format!("lock {}", path.display()), e)),
        }
    }

    /// The descriptor holding the lock (a forked init must close it).
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        self._lock.as_raw_fd()
    }

    pub fn load(&self) -> Result<State, Error> {
        load_state(&self.path)
    }

    /// Write the state atomically (temp file, then exchange or rename).
    ///
    /// Atomic for readers (`list` reads without the lock): the new file is written aside and
    /// takes the old one's place in one step. Replacing it is an exchange
    /// (`renameat2(RENAME_EXCHANGE)`) followed by an unlink of the old file, not a rename over
    /// it: on ext4 a rename over an existing file forces the new file's blocks to be allocated
    /// and written at once (`auto_da_alloc`), and the `delete` that unlinks it a moment later
    /// then waits for that I/O (0.5 ms median, tens of ms under I/O load, measured on this
    /// project's build machine); exchanged, a short-lived container's state never reaches the
    /// disk. Where the exchange is not supported, a plain rename.
    pub fn save(&self, s: &State) -> Result<(), Error> {
        let data = serde_json::to_vec(s).map_err(|e| Error::msg(format!("encode state: {e}")))?;
        replace_file(&self.path.join(STATE_FILE), &data)
            .map_err(|e| Error::io(format!("write state of {}", s.id), e))
    }

    /// Remove the directory (the lock goes with it).
    pub fn remove(self) -> Result<(), Error> {
        std::fs::remove_dir_all(&self.path)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| Error::io(format!("remove {}", self.path.display()), e))
    }
}

/// The part of a state `list` shows: parsed without the cgroup, process and seccomp parts.
#[derive(Debug, Deserialize)]
pub struct Summary {
    pub id: String,
    pub pid: i32,
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub owner_uid: Option<u32>,
}

impl Summary {
    /// Is the init still the process the container started?
    pub fn init_alive(&self) -> bool {
        pid_is(self.pid, self.start_time)
    }
}

/// Read a whole small file into `buf` (one open, reads, close: no stat).
pub fn read_into(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Read;
    buf.clear();
    File::open(path)?.read_to_end(buf).map(|_| ())
}

pub fn load_state(dir: &Path) -> Result<State, Error> {
    let p = dir.join(STATE_FILE);
    let data = match kakuri_spec::input::read_file_bounded(&p) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Err(Error::NotExist(id));
        }
        Err(e) => return Err(Error::io(format!("read {}", p.display()), e)),
    };
    serde_json::from_slice(&data).map_err(|e| Error::msg(format!("{}: {e}", p.display())))
}

/// Is the init still the process we started (same pid, same start time, not a zombie)?
pub fn init_alive(s: &State) -> bool {
    pid_is(s.pid, s.start_time)
}

/// Is `pid` alive (not a zombie) and started at `start_time`?
fn pid_is(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match kakuri_isolate::sys::proc_start_time(pid) {
        Ok((start, st)) => start == start_time && st != 'Z' && st != 'X',
        Err(_) => false,
    }
}

/// The current status of a container, derived from its init, its exec fifo and its cgroup.
pub fn status(dir: &Path, s: &State) -> Status {
    if s.pid == 0 {
        // Written by a `create` that has not finished (or was killed before it did).
        return Status::Creating;
    }
    if !init_alive(s) {
        return Status::Stopped;
    }
    if dir.join(FIFO).exists() {
        return Status::Created;
    }
    if s.cgroup.is_frozen().unwrap_or(false) {
        return Status::Paused;
    }
    Status::Running
}

/// RFC 3339 time with nanoseconds in UTC, as runc writes `created`.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(check_id("abc-1_2.3+x").is_ok());
        assert!(check_id("a/b").is_err());
        assert!(check_id("..").is_err());
        assert!(check_id(".").is_err());
        assert!(check_id("").is_err());
        assert!(check_id("a b").is_err());
    }

    #[test]
    fn replace_file_is_whole_and_leaves_no_temp() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("kakuri-replace-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let dst = dir.join(STATE_FILE);
        replace_file(&dst, b"first").unwrap();
        let first = std::fs::metadata(&dst).unwrap().ino();
        replace_file(&dst, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), b"second, longer");
        // A new file took the old one's place (readers never see a half-written one).
        assert_ne!(std::fs::metadata(&dst).unwrap().ino(), first);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [STATE_FILE], "only the state file is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn time_shape() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
        assert!(t.starts_with("20"), "{t}");
    }
}
