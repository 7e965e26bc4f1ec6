//! The runtime binary a container can reach is never writable (CVE-2019-5736 class).
//!
//! kakuri never re-execs to become a container process: the init of `create`/`run` and the
//! process of `exec` are forks of the runtime, so until their final `execve` their
//! `/proc/<pid>/exe` is the runtime's own binary. They are non-dumpable, but a container process
//! with `CAP_SYS_PTRACE` in the runtime's user namespace (a container without a user namespace
//! of its own that was given that capability) passes that check, opens `/proc/<pid>/exe` (or
//! keeps an `O_PATH`/read-only handle and reopens it through `/proc/self/fd` once nothing
//! executes the file any more) and overwrites the host's binary.
//!
//! [`protect`] runs at the start of `create`, `run` and `exec` (the command line calls it even
//! earlier, before it parses its arguments, so that they are parsed once). Unless the binary it
//! runs from is already on a read-only mount or a sealed memfd, it re-executes itself once, with
//! the same arguments and environment, from a *detached read-only bind mount of its own file*
//! (`open_tree(OPEN_TREE_CLONE)` + `mount_setattr(MOUNT_ATTR_RDONLY)` + `execveat(AT_EMPTY_PATH)`):
//! no copy, nothing mounted anywhere a process can see, and the mount goes away with the last
//! process that runs from it. Every later `/proc/<pid>/exe` of the runtime, the init and exec's
//! child then names a file on a read-only mount: opening it for writing fails with `EROFS` (with
//! `ETXTBSY` first while a process still executes it), through any handle. Where the new mount API
//! is missing or refused, a sealed memfd copy of the binary is executed instead (what runc 1.1
//! falls back to). Which one is used is decided by the kernel, never by the caller's environment:
//! the marker variable set for the re-exec only stops a second attempt and is removed from the
//! environment at once.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use kakuri_spec::os_error;

use crate::sys;

/// Set in the environment of the re-executed runtime; removed by it at once.
const MARKER: &str = "_KAKURI_EXE_PROTECTED";

/// Set once [`protect`] has seen this process run from a protected binary: a process never
/// changes its executable without an `execve`, so later calls need not look again.
static PROTECTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How the running binary is protected from being written through `/proc/<pid>/exe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// It lives on a read-only mount.
    ReadOnlyMount,
    /// It is a memfd sealed against writes.
    SealedMemfd,
}

/// Whether the binary open at `fd` cannot be written through any reopening of it.
pub fn protection_of(fd: BorrowedFd) -> io::Result<Option<Protection>> {
    // SAFETY: statvfs is plain data; all-zero is a valid value for fstatvfs to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a pointer to a statvfs the call fills.
    if unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The flags are the mount's (statfs' f_flags): a read-only bind of a writable filesystem
    // reports ST_RDONLY too.
    if st.f_flag & libc::ST_RDONLY != 0 {
        return Ok(Some(Protection::ReadOnlyMount));
    }
    // SAFETY: fcntl F_GET_SEALS on a valid descriptor; EINVAL for anything not a memfd.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 && seals & libc::F_SEAL_SEAL != 0 {
        return Ok(Some(Protection::SealedMemfd));
    }
    Ok(None)
}

/// Make sure the running binary cannot be written through `/proc/<pid>/exe`: return if it
/// cannot, otherwise re-execute this process from a read-only view of it (does not return on
/// success). Must be called while single-threaded, before anything is created or read from the
/// caller's descriptors.
pub fn protect() -> Result<(), String> {
    if PROTECTED.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let again = std::env::var_os(MARKER).is_some();
    if again {
        // Never seen by hooks, containers or exec'd processes.
        std::env::remove_var(MARKER);
        // execveat of a descriptor names the process after the descriptor's number on older
        // kernels (and "memfd:..." for the copy): give `ps` the name it had.
        if let Some(name) = std::env::args_os().next() {
            let base = Path::new(&name).file_name().map(|n| n.as_bytes().to_vec());
            if let Ok(c) = CString::new(base.unwrap_or_default()) {
                // SAFETY: PR_SET_NAME reads at most 16 bytes of a NUL-terminated string.
                unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
            }
        }
    }
    let exe = std::fs::File::open("/proc/self/exe")
        .map_err(|e| format!("open /proc/self/exe: {}", os_error(&e)))?;
    let protection = protection_of(exe.as_fd());
    kakuri_timings::mark("check the binary is read-only");
    match protection {
        Ok(Some(p)) => {
            log::debug!("runtime binary protected: {p:?}");
            PROTECTED.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        Ok(None) => {}
        Err(e) => return Err(format!("statfs /proc/self/exe: {}", os_error(&e))),
    }
    if again {
        return Err(
            "re-executed from a read-only view of the runtime binary, but /proc/self/exe is still writable"
                .into(),
        );
    }
    let argv = cstrings(std::env::args_os())?;
    let mut envp: Vec<OsString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })
        .collect();
    envp.push(format!("{MARKER}=1").into());
    // With timings on, the re-executed runtime takes the timeline over (and removes this).
    envp.extend(kakuri_timings::carry().map(OsString::from));
    let envp = cstrings(envp)?;
    let ro = read_only_bind(Path::new("/proc/self/exe"));
    let err = match ro {
        Ok(fd) => {
            let e = sys::execveat_empty(fd.as_fd(), &argv, &envp);
            format!(
                "execute a read-only bind of the runtime binary: {}",
                os_error(&e)
            )
        }
        Err(e) => format!("read-only bind of the runtime binary: {}", os_error(&e)),
    };
    log::debug!("{err}; falling back to a sealed copy");
    let memfd = sealed_copy(&exe).map_err(|e| {
        format!(
            "{err}; and a sealed copy of the runtime binary: {}",
            os_error(&e)
        )
    })?;
    let e = sys::execveat_empty(memfd.as_fd(), &argv, &envp);
    Err(format!(
        "{err}; and executing a sealed copy of it: {}",
        os_error(&e)
    ))
}

fn cstrings<I: IntoIterator<Item = OsString>>(items: I) -> Result<Vec<CString>, String> {
    items
        .into_iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| "argument or environment with a NUL byte".into())
        })
        .collect()
}

/// A detached, read-only bind mount of the file `path` resolves to.
fn read_only_bind(path: &Path) -> io::Result<OwnedFd> {
    let tree = sys::open_tree_clone(path, false)?;
    sys::mount_setattr(tree.as_fd(), false, libc::MOUNT_ATTR_RDONLY, 0, 0)?;
    Ok(tree)
}

/// A memfd holding a copy of `exe`, sealed against any change.
fn sealed_copy(exe: &std::fs::File) -> io::Result<OwnedFd> {
    const MFD_EXEC: libc::c_uint = 0x10;
    let name = c"kakuri";
    let create = |flags: libc::c_uint| {
        // SAFETY: a NUL-terminated name and integer flags.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    };
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3) keeps the copy executable under vm.memfd_noexec; older kernels
    // refuse the flag and make every memfd executable.
    let memfd = match create(base | MFD_EXEC) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => create(base)?,
        r => r?,
    };
    let mut src = exe.try_clone()?;
    let mut dst = std::fs::File::from(memfd);
    std::io::Seek::rewind(&mut src)?;
    std::io::copy(&mut src, &mut dst)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl F_ADD_SEALS on a valid memfd with integer seals.
    if unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd::from(dst))
}
