//! Writes to procfs (sysctl, oom_score_adj) through a verified procfs handle.
//!
//! A path such as `/proc/sys/kernel/hostname` is only as trustworthy as the mounts on the way:
//! a container config (or a process that got into the container early) can mount something
//! over it, and a write meant for a sysctl would land in a file of its choosing
//! (CVE-2025-52881 class). So every write starts from a handle on the root of a real procfs —
//! preferably a private, detached instance made with `fsopen`/`fsmount` that nothing can be
//! mounted over, else the `/proc` of the process, opened before the container has mounted
//! anything — checked with `fstatfs` (PROC_SUPER_MAGIC) and by its inode (the procfs root is
//! inode 1), and then resolves beneath it with `openat2` refusing symlinks, magic links and
//! mount crossings. The opened file is checked to be on procfs again before it is written.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use kakuri_spec::os_error;

use crate::sys;

/// `PROC_SUPER_MAGIC` of `<linux/magic.h>`.
pub const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// The inode number of the root directory of every procfs instance (`PROC_ROOT_INO`).
const PROC_ROOT_INO: u64 = 1;

/// A verified handle on the root of a procfs instance.
#[derive(Debug)]
pub struct ProcRoot(OwnedFd);

fn verify_root(fd: OwnedFd, what: &str) -> Result<ProcRoot, String> {
    let magic =
        sys::fs_magic(fd.as_fd()).map_err(|e| format!("fstatfs {what}: {}", os_error(&e)))?;
    if magic != PROC_SUPER_MAGIC {
        return Err(format!(
            "{what} is not procfs (filesystem magic {magic:#x}): refusing to write through it"
        ));
    }
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| format!("fstat {what}: {e}"))?;
    if st.st_ino != PROC_ROOT_INO {
        return Err(format!(
            "{what} is not the root of a procfs (inode {}): refusing to write through it",
            st.st_ino
        ));
    }
    Ok(ProcRoot(fd))
}

impl ProcRoot {
    /// A private procfs instance, or (where the kernel refuses one, e.g. in a user namespace
    /// whose /proc is partly covered) the process's `/proc`, verified either way.
    pub fn open() -> Result<ProcRoot, String> {
        match sys::fsmount_proc() {
            Ok(fd) => verify_root(fd, "a new procfs instance"),
            Err(e) => {
                log::debug!("private procfs instance unavailable ({e}); using /proc");
                let fd = nix::fcntl::open(
                    "/proc",
                    nix::fcntl::OFlag::O_PATH
                        | nix::fcntl::OFlag::O_DIRECTORY
                        | nix::fcntl::OFlag::O_CLOEXEC
                        | nix::fcntl::OFlag::O_NOFOLLOW,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| format!("open /proc: {e}"))?;
                // SAFETY: nix returned a fresh descriptor that we now own.
                let fd: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
                verify_root(fd, "/proc")
            }
        }
    }

    /// The root descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    /// Write `value` to the procfs file `rel` (relative to the procfs root, e.g.
    /// `sys/kernel/hostname` or `1234/oom_score_adj`).
    pub fn write(&self, rel: &str, value: &[u8]) -> std::io::Result<()> {
        let fd = sys::openat_beneath(self.0.as_fd(), Path::new(rel), libc::O_WRONLY)?;
        if sys::fs_magic(fd.as_fd())? != PROC_SUPER_MAGIC {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "not a procfs file",
            ));
        }
        let mut f = std::fs::File::from(fd);
        f.write_all(value)
    }
}

/// The procfs path of a sysctl key: `net.ipv4.ip_forward` → `sys/net/ipv4/ip_forward`. Keys
/// with `/` separators (as sysctl(8) accepts) are kept; `..` components are refused.
pub fn sysctl_path(key: &str) -> Result<String, String> {
    let p = if key.contains('/') {
        key.trim_start_matches('/').to_string()
    } else {
        key.replace('.', "/")
    };
    if p.is_empty() || p.split('/').any(|c| c.is_empty() || c == "..") {
        return Err(format!("invalid sysctl key {key:?}"));
    }
    Ok(format!("sys/{p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys_map_to_proc_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            "sys/net/ipv4/ip_forward"
        );
        assert_eq!(
            sysctl_path("kernel/hostname").unwrap(),
            "sys/kernel/hostname"
        );
        assert!(sysctl_path("kernel/../../1/environ").is_err());
        assert!(sysctl_path("").is_err());
    }

    #[test]
    fn writes_refuse_escapes_and_non_procfs_roots() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: fsopen(proc) needs root");
            return;
        }
        let root = ProcRoot::open().expect("procfs root");
        // `self` is a symlink: refused by RESOLVE_NO_SYMLINKS.
        let e = root.write("self/oom_score_adj", b"0").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        let e = root.write("../etc/hostname", b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "{e}");
        // Our own oom_score_adj, through the handle, set to its current value.
        let me = std::process::id();
        let cur = std::fs::read_to_string(format!("/proc/{me}/oom_score_adj")).unwrap();
        root.write(&format!("{me}/oom_score_adj"), cur.trim().as_bytes())
            .expect("write own oom_score_adj");
        let tmp = nix::fcntl::open(
            "/tmp",
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        // SAFETY: fresh descriptor from nix.
        let tmp: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(tmp) };
        let e = verify_root(tmp, "/tmp").unwrap_err();
        assert!(e.contains("is not procfs"), "{e}");
    }
}
