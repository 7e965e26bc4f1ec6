//! A container's on-disk state under `--root`: `<root>/<id>/state.json`, the exec fifo, and the
//! lock that serializes commands on one container.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use kakuri_cgroups::{CgroupManager, Manager};
use kakuri_spec::oci;
use serde::de::DeserializeOwned;
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
    /// The uid that created the container (the owner `list` shows), recorded so that `list`
    /// need not stat every state directory. Written before the cgroup and the process, with
    /// the other fields `list` shows, so that its scan stops there ([`Summary::scan`]).
    #[serde(default)]
    pub owner_uid: Option<u32>,
    pub cgroup: Manager,
    #[serde(default)]
    pub hooks: Option<oci::Hooks>,
    /// Namespace paths of the init (`/proc/<pid>/ns/*`) by spec type name, for `exec`.
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub use_systemd: bool,
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
const STATE_FILE_C: &CStr = c"state.json";
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
        load_state_at(&self.path, self._lock.as_fd())
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
        // Usually state.json is all that is left: unlink it through the lock's descriptor and
        // rmdir, without listing the directory; anything else there, the general removal.
        let _ = nix::unistd::unlinkat(
            Some(self._lock.as_raw_fd()),
            STATE_FILE,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        match std::fs::remove_dir(&self.path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => {}
        }
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
    /// The summary of a state file: [`Summary::scan`], or serde's parse of the whole file
    /// where the scan gives up.
    pub fn parse(json: &[u8]) -> Option<Summary> {
        Summary::scan(json).or_else(|| serde_json::from_slice(json).ok())
    }

    /// Read `list`'s fields out of a state file without building (or validating) the parts
    /// it does not show: the top-level object's members are walked, each value `list` needs
    /// is parsed by serde on its own bytes, the others (the cgroup, the process, the
    /// seccomp profile: most of the file) are skipped by matching brackets and quotes. `None`
    /// for anything unexpected (an escaped key, a repeated or missing field, a malformed
    /// member), for which [`Summary::parse`] falls back to serde's parse of the whole file.
    /// The walk stops as soon as all of `list`'s fields are read: [`State`] writes them first,
    /// so the cgroup and the process (most of the file) are not walked at all; an older file
    /// with `owner_uid` after them is walked to its end. Valid state files give what serde
    /// gives (tested).
    fn scan(b: &[u8]) -> Option<Summary> {
        fn field<T: DeserializeOwned>(slot: &mut Option<T>, v: &[u8]) -> Option<()> {
            if slot.is_some() {
                return None;
            }
            *slot = Some(serde_json::from_slice(v).ok()?);
            Some(())
        }
        let (mut id, mut pid, mut start_time) = (None, None, None);
        let (mut bundle, mut rootfs, mut created) = (None, None, None);
        let (mut annotations, mut owner_uid) = (None, None::<Option<u32>>);
        let mut i = ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i = ws(b, i + 1);
        if b.get(i) == Some(&b'}') {
            return None;
        }
        loop {
            let key_end = skip_string(b, i)?;
            let key = b.get(i + 1..key_end - 1)?;
            if key.contains(&b'\\') {
                return None;
            }
            i = ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            let start = ws(b, i + 1);
            let end = skip_value(b, start)?;
            let v = &b[start..end];
            match key {
                b"id" => field(&mut id, v)?,
                b"pid" => field(&mut pid, v)?,
                b"start_time" => field(&mut start_time, v)?,
                b"bundle" => field(&mut bundle, v)?,
                b"rootfs" => field(&mut rootfs, v)?,
                b"created" => field(&mut created, v)?,
                b"annotations" => field(&mut annotations, v)?,
                b"owner_uid" => field(&mut owner_uid, v)?,
                _ => {}
            }
            if id.is_some()
                && pid.is_some()
                && start_time.is_some()
                && bundle.is_some()
                && rootfs.is_some()
                && created.is_some()
                && annotations.is_some()
                && owner_uid.is_some()
            {
                // Everything `list` shows is read: the rest of the file (the cgroup, the
                // process, most of its bytes) is not walked.
                break;
            }
            i = ws(b, end);
            match b.get(i) {
                Some(b',') => i = ws(b, i + 1),
                Some(b'}') if ws(b, i + 1) == b.len() => break,
                _ => return None,
            }
        }
        Some(Summary {
            id: id?,
            pid: pid?,
            start_time: start_time?,
            bundle: bundle?,
            rootfs: rootfs?,
            created: created?,
            annotations: annotations.unwrap_or_default(),
            owner_uid: owner_uid.flatten(),
        })
    }

    /// Is the init still the process the container started?
    pub fn init_alive(&self) -> bool {
        pid_is(self.pid, self.start_time)
    }
}

/// The index of the first byte at or after `i` that is not JSON white space.
fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// The index just after the JSON string that starts at `i`.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut i = i + 1;
    loop {
        match b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The index just after the JSON value that starts at `i` (strings, objects and arrays by
/// their quotes and brackets; numbers, true, false and null up to the next delimiter).
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = i;
            loop {
                match b.get(i)? {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let end = b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .map_or(b.len(), |n| i + n);
            (end > i).then_some(end)
        }
    }
}

/// Open `name` under the directory `dir` (`openat`: no walk of the directory's own path) for
/// reading.
pub fn open_at(dir: BorrowedFd, name: &CStr) -> std::io::Result<OwnedFd> {
    // SAFETY: `name` is a NUL-terminated string valid for the call; the flags make no file.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One `read(2)` into the spare capacity of `buf`; the bytes read are appended. 0 at the end.
fn read_more(fd: BorrowedFd, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    loop {
        let spare = buf.spare_capacity_mut();
        // SAFETY: the kernel writes at most `spare.len()` bytes into the vector's spare
        // capacity, which is valid for writes of that length.
        let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        // SAFETY: the first `n` bytes of the spare capacity were just initialised by read(2).
        unsafe { buf.set_len(buf.len() + n) };
        return Ok(n);
    }
}

/// Read the JSON file `name` under `dir` into `buf` (cleared first) and parse it, in as few
/// system calls as the file allows: `openat`, one `read` for a file that fits in `buf`'s
/// capacity, `close`; no `fstat` for a size hint, no `lseek`, and no `read` of the end of the
/// file when the bytes read already make a whole document (a short read of a regular file is
/// its end). A document that does not parse is read on to the end of the file and parsed
/// again, so a read cut short for another reason costs time, never a wrong result. At most
/// [`kakuri_spec::input::MAX_JSON_BYTES`] are read.
pub fn read_json_at<T: DeserializeOwned>(
    dir: BorrowedFd,
    name: &CStr,
    buf: &mut Vec<u8>,
) -> std::io::Result<T> {
    match read_parsed_at(dir, name, buf, |b| serde_json::from_slice(b).ok())? {
        Some(v) => Ok(v),
        None => serde_json::from_slice(buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
    }
}

/// [`read_json_at`] with a parser of one's own: `None` when it refuses the whole file.
pub fn read_parsed_at<T>(
    dir: BorrowedFd,
    name: &CStr,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Option<T>,
) -> std::io::Result<Option<T>> {
    const FIRST: usize = 16 << 10;
    let max = kakuri_spec::input::MAX_JSON_BYTES as usize;
    let fd = open_at(dir, name)?;
    buf.clear();
    buf.reserve(FIRST);
    let mut tried = false;
    loop {
        let room = buf.capacity() - buf.len();
        let n = read_more(fd.as_fd(), buf)?;
        if n == 0 {
            break;
        }
        if n < room && !tried {
            tried = true;
            if let Some(v) = parse(buf) {
                return Ok(Some(v));
            }
        }
        if buf.len() > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "larger than {} MiB, the most kakuri reads of a JSON file",
                    max >> 20
                ),
            ));
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len());
        }
    }
    Ok(parse(buf))
}

pub fn load_state(dir: &Path) -> Result<State, Error> {
    let d = File::open(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotExist(id_of(dir))
        } else {
            Error::io(format!("open {}", dir.display()), e)
        }
    })?;
    load_state_at(dir, d.as_fd())
}

fn id_of(dir: &Path) -> String {
    dir.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// [`load_state`] through a descriptor of the directory `dir` (the lock's).
fn load_state_at(dir: &Path, fd: BorrowedFd) -> Result<State, Error> {
    let mut buf = Vec::new();
    read_json_at(fd, STATE_FILE_C, &mut buf).map_err(|e| {
        let p = dir.join(STATE_FILE);
        match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotExist(id_of(dir)),
            std::io::ErrorKind::InvalidData => Error::msg(format!("{}: {e}", p.display())),
            _ => Error::io(format!("read {}", p.display()), e),
        }
    })
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
    // A pid nobody has (the usual case for a stopped container) is told by one kill(2) with
    // no signal, without a walk into /proc. EPERM: it exists.
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    {
        return false;
    }
    match proc_start_time(pid) {
        Some((start, st)) => start == start_time && st != b'Z' && st != b'X',
        None => false,
    }
}

/// The processes alive in this pid namespace at one instant, read from one walk of `/proc`, so
/// that `list` tells its stopped containers (the bulk of a long list) from live ones without a
/// system call each. Taken only where `/proc` shows this process every process of its pid
/// namespace: uid 0 in the initial user namespace with `CAP_SYS_PTRACE` (`hidepid` hides
/// nothing from it) and `/proc` of its own pid namespace (`/proc/self` names this process).
pub struct ProcSnapshot {
    /// Sorted.
    pids: Vec<i32>,
    /// Clock ticks after boot (the unit of a process's start time) when the walk began.
    ticks: u64,
}

impl ProcSnapshot {
    /// `None` where `/proc` cannot be trusted to show every process (see the type).
    pub fn take() -> Option<ProcSnapshot> {
        if !nix::unistd::geteuid().is_root()
            || !caps::has_cap(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_SYS_PTRACE,
            )
            .unwrap_or(false)
            || crate::rootless::in_user_namespace()
        {
            return None;
        }
        let me = std::fs::read_link("/proc/self").ok()?;
        if me.to_str()?.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
        // SAFETY: sysconf has no memory effects.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid clock id and a pointer to a timespec the call fills (a vDSO call).
        if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } != 0 {
            return None;
        }
        let ns =
            u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?;
        let ticks = ns / (1_000_000_000 / hz.max(1));
        use nix::fcntl::OFlag;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = nix::dir::Dir::open("/proc", flags, nix::sys::stat::Mode::empty()).ok()?;
        let mut pids = Vec::with_capacity(512);
        for ent in dir.iter() {
            let ent = ent.ok()?;
            if let Some(pid) = std::str::from_utf8(ent.file_name().to_bytes())
                .ok()
                .and_then(|n| n.parse::<i32>().ok())
            {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        Some(ProcSnapshot { pids, ticks })
    }

    /// Whether the process `pid` started at `start_time` is surely gone: it started before the
    /// walk (with two ticks to spare for the rounding of both clocks) and the walk did not see
    /// it. A process started after the walk, or one the walk saw, is left to the usual check
    /// ([`Summary::init_alive`]: a pid seen may be another process's by now).
    pub fn surely_dead(&self, pid: i32, start_time: u64) -> bool {
        pid > 0
            && start_time.saturating_add(2) < self.ticks
            && self.pids.binary_search(&pid).is_err()
    }
}

/// Start time (field 22) and state (field 3) of `/proc/<pid>/stat`, read with one `read(2)`
/// into a buffer on the stack; `None` when the process is gone.
fn proc_start_time(pid: i32) -> Option<(u64, u8)> {
    use std::io::Write as _;
    let mut path = [0u8; 32];
    let mut w = &mut path[..];
    write!(w, "/proc/{pid}/stat\0").ok()?;
    let path = CStr::from_bytes_until_nul(&path).ok()?;
    // SAFETY: a NUL-terminated path valid for the call.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A stat line is well under 2 KiB (52 numbers and a name of at most 64 bytes); procfs
    // makes it whole on the first read.
    let mut buf = [0u8; 2048];
    // SAFETY: the kernel writes at most buf.len() bytes into the buffer.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    drop(fd);
    parse_stat(buf.get(..usize::try_from(n).ok()?)?)
}

/// Field 3 (state) and field 22 (start time) of a /proc/<pid>/stat line. The name (field 2)
/// may hold spaces and parentheses: the fields after it start after the last `)`.
fn parse_stat(line: &[u8]) -> Option<(u64, u8)> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let mut fields = line
        .get(close + 1..)?
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    let start = fields.nth(18)?;
    let start = std::str::from_utf8(start).ok()?.trim_end().parse().ok()?;
    Some((start, state))
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
    fn summary_scan_is_serde() {
        let full = serde_json::json!({
            "id": "a\"b\\u00e9",
            "pid": 42,
            "start_time": 123456789,
            "bundle": "/b/u n}dle",
            "rootfs": "/r{[",
            "created": "2026-12-07T19:58:32.930500660Z",
            "owner": "",
            "annotations": {"k": "v", "x\"y": "[z]"},
            "cgroup": {"mode": "Hybrid", "v1": [{"controllers": ["cpu"], "path": "/s/\"}"}]},
            "hooks": null,
            "namespaces": ["a", "b"],
            "use_systemd": false,
            "owner_uid": 0,
            "process": {"args": ["sh", "-c", "echo '}]'"], "env": [], "cwd": "/", "x": 1.5e3},
            "seccomp": null
        });
        let mut cases = vec![
            serde_json::to_vec(&full).unwrap(),
            serde_json::to_vec_pretty(&full).unwrap(),
        ];
        let mut v = full.clone();
        v["owner_uid"] = serde_json::Value::Null;
        v.as_object_mut().unwrap().remove("annotations");
        cases.push(serde_json::to_vec(&v).unwrap());
        v.as_object_mut().unwrap().remove("owner_uid");
        cases.push(serde_json::to_vec(&v).unwrap());
        for c in &cases {
            let scanned = Summary::scan(c).expect("scanned");
            let serde: Summary = serde_json::from_slice(c).unwrap();
            let key = |s: &Summary| {
                let a: std::collections::BTreeMap<_, _> = s.annotations.iter().collect();
                format!(
                    "{} {} {} {:?} {:?} {} {a:?} {:?}",
                    s.id, s.pid, s.start_time, s.bundle, s.rootfs, s.created, s.owner_uid
                )
            };
            assert_eq!(key(&scanned), key(&serde));
        }
        // Given up on (serde decides): truncated, trailing bytes (in a file without
        // owner_uid, walked to its end), a repeated or missing field, an escaped key, a wrong
        // type.
        let one = &cases[3];
        for bad in [
            &one[..one.len() - 1],
            &[one.as_slice(), b"x"].concat()[..],
            br#"{"id":"a","id":"b","pid":1,"start_time":1,"bundle":"/","rootfs":"/","created":""}"#,
            br#"{"pid":1,"start_time":1,"bundle":"/","rootfs":"/","created":""}"#,
            br#"{"i\u0064":"a","pid":1,"start_time":1,"bundle":"/","rootfs":"/","created":""}"#,
            br#"{"id":"a","pid":"1","start_time":1,"bundle":"/","rootfs":"/","created":""}"#,
            b"{}",
            b"[]",
            b"",
        ] {
            assert!(
                Summary::scan(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // An escaped key is still read, by serde.
        let esc =
            br#"{"i\u0064":"a","pid":1,"start_time":1,"bundle":"/","rootfs":"/","created":""}"#;
        assert_eq!(Summary::parse(esc).unwrap().id, "a");
    }

    #[test]
    fn state_writes_the_list_fields_first() {
        let mut v = serde_json::json!({
            "id": "a", "pid": 42, "start_time": 7, "bundle": "/b", "rootfs": "/r",
            "created": "2026-12-08T03:00:00.000000000Z", "owner": "",
            "annotations": {"k": "v"}, "owner_uid": 1000,
            "cgroup": {"mode": "Hybrid", "v1": [{"controllers": ["cpu"], "mount_point": "/m", "path": "/s"}]},
        });
        let st: State = serde_json::from_value(v.clone()).unwrap();
        let written = serde_json::to_vec(&st).unwrap();
        let at = |k: &str| {
            let k = format!("\"{k}\":");
            written
                .windows(k.len())
                .position(|w| w == k.as_bytes())
                .unwrap()
        };
        for k in [
            "id",
            "pid",
            "start_time",
            "bundle",
            "rootfs",
            "created",
            "annotations",
        ] {
            assert!(at(k) < at("cgroup"), "{k} after the cgroup");
        }
        assert!(at("owner_uid") < at("cgroup"), "owner_uid after the cgroup");
        // The scan stops there: what follows is not read (here it is not even JSON).
        let cut = [
            &written[..at("cgroup")],
            b"\"cgroup\": {{[ not json".as_slice(),
        ]
        .concat();
        let s = Summary::scan(&cut).expect("scanned");
        assert_eq!((s.id.as_str(), s.pid, s.owner_uid), ("a", 42, Some(1000)));
        assert!(serde_json::from_slice::<Summary>(&cut).is_err());
        // An older file with owner_uid last is still read whole.
        v.as_object_mut().unwrap().remove("owner_uid");
        let mut old = serde_json::to_vec(&v).unwrap();
        old.pop();
        old.extend_from_slice(b",\"owner_uid\":5}");
        assert_eq!(Summary::scan(&old).unwrap().owner_uid, Some(5));
    }

    #[test]
    fn stat_fields() {
        let line = b"6874 (a) b) c) S 1 6874 6874 0 -1 4194560 81 0 0 0 0 0 0 0 20 0 1 0 2151214 2322432 332\n";
        assert_eq!(parse_stat(line), Some((2151214, b'S')));
        assert_eq!(parse_stat(b"12 (x) Z 1 2"), None);
        let me = std::process::id() as i32;
        let (start, st) = proc_start_time(me).expect("own stat");
        assert!(pid_is(me, start), "{start} {st}");
        assert!(!pid_is(me, start + 1));
        assert!(!pid_is(0, 0));
    }

    #[test]
    fn json_at_reads_whole_files() {
        let dir = std::env::temp_dir().join(format!("kakuri-json-at-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let d = File::open(&dir).unwrap();
        let mut buf = Vec::new();
        // Larger than the first read, so that it takes several.
        let big: Vec<String> = (0..20_000).map(|i| format!("v{i}")).collect();
        std::fs::write(dir.join("a.json"), serde_json::to_vec(&big).unwrap()).unwrap();
        let got: Vec<String> = read_json_at(d.as_fd(), c"a.json", &mut buf).unwrap();
        assert_eq!(got, big);
        std::fs::write(dir.join("b.json"), b"{\"id\": 1").unwrap();
        let e = read_json_at::<serde_json::Value>(d.as_fd(), c"b.json", &mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let e = read_json_at::<serde_json::Value>(d.as_fd(), c"none.json", &mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
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
